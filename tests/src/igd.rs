//! A home router's UPnP Internet Gateway Device, as far as port forwarding goes: it answers
//! the SSDP search on a loopback UDP port, serves its device and service descriptions, and
//! handles the SOAP actions GetExternalIPAddress and AddPortMapping (refusing the ports it
//! is told to refuse, with UPnP error 718, as a router does for a port already taken).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    http::{HeaderMap, StatusCode},
    routing::{get, post},
};

/// The public address the fake router reports.
pub const EXTERNAL_IP: &str = "198.51.100.42";

/// A running fake router.
pub struct FakeRouter {
    /// Where its SSDP search answers come from (Kith's `network.upnp_search_address`).
    pub ssdp_addr: SocketAddr,
    /// `(external port, internal client, internal port)` of each mapping made.
    pub mappings: Arc<Mutex<Vec<(u16, String, u16)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeRouter {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

const ROOT: &str = r#"<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0">
 <specVersion><major>1</major><minor>0</minor></specVersion>
 <device>
  <deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>
  <friendlyName>Fake router</friendlyName>
  <deviceList>
   <device>
    <deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType>
    <deviceList>
     <device>
      <deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType>
      <serviceList>
       <service>
        <serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>
        <serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>
        <controlURL>/ctl/IPConn</controlURL>
        <eventSubURL>/evt/IPConn</eventSubURL>
        <SCPDURL>/WANIPCn.xml</SCPDURL>
       </service>
      </serviceList>
     </device>
    </deviceList>
   </device>
  </deviceList>
 </device>
</root>"#;

fn action(name: &str, inputs: &[&str]) -> String {
    let arguments: String = inputs
        .iter()
        .map(|i| format!("<argument><name>{i}</name><direction>in</direction></argument>"))
        .collect();
    format!("<action><name>{name}</name><argumentList>{arguments}</argumentList></action>")
}

fn scpd() -> String {
    format!(
        r#"<?xml version="1.0"?><scpd xmlns="urn:schemas-upnp-org:service-1-0"><actionList>{}{}{}</actionList></scpd>"#,
        action("GetExternalIPAddress", &[]),
        action(
            "AddPortMapping",
            &[
                "NewRemoteHost",
                "NewExternalPort",
                "NewProtocol",
                "NewInternalPort",
                "NewInternalClient",
                "NewEnabled",
                "NewPortMappingDescription",
                "NewLeaseDuration",
            ],
        ),
        action(
            "DeletePortMapping",
            &["NewRemoteHost", "NewExternalPort", "NewProtocol"]
        ),
    )
}

fn envelope(body: &str) -> String {
    format!(
        r#"<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>{body}</s:Body></s:Envelope>"#
    )
}

/// The text of `<name>...</name>` in `xml`.
fn field(xml: &str, name: &str) -> String {
    xml.split_once(&format!("<{name}>"))
        .and_then(|(_, rest)| rest.split_once(&format!("</{name}>")))
        .map(|(value, _)| value.to_owned())
        .unwrap_or_default()
}

impl FakeRouter {
    /// Starts it; `refuse` are the external ports it will not forward.
    pub async fn start(refuse: Vec<u16>) -> FakeRouter {
        let http = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let http_addr = http.local_addr().expect("its address");
        let mappings: Arc<Mutex<Vec<(u16, String, u16)>>> = Arc::default();
        let made = mappings.clone();
        let app = Router::new()
            .route("/rootDesc.xml", get(|| async { ROOT }))
            .route("/WANIPCn.xml", get(|| async { scpd() }))
            .route(
                "/ctl/IPConn",
                post(move |headers: HeaderMap, body: String| {
                    let made = made.clone();
                    let refuse = refuse.clone();
                    async move {
                        let soap_action = headers
                            .get("SOAPAction")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let service = "urn:schemas-upnp-org:service:WANIPConnection:1";
                        if soap_action.contains("GetExternalIPAddress") {
                            return (
                                StatusCode::OK,
                                envelope(&format!(
                                    r#"<u:GetExternalIPAddressResponse xmlns:u="{service}"><NewExternalIPAddress>{EXTERNAL_IP}</NewExternalIPAddress></u:GetExternalIPAddressResponse>"#
                                )),
                            );
                        }
                        if soap_action.contains("AddPortMapping") {
                            let external: u16 = field(&body, "NewExternalPort").parse().unwrap_or(0);
                            if refuse.contains(&external) {
                                return (
                                    StatusCode::INTERNAL_SERVER_ERROR,
                                    envelope(
                                        r#"<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>718</errorCode><errorDescription>ConflictInMappingEntry</errorDescription></UPnPError></detail></s:Fault>"#,
                                    ),
                                );
                            }
                            made.lock().expect("mappings").push((
                                external,
                                field(&body, "NewInternalClient"),
                                field(&body, "NewInternalPort").parse().unwrap_or(0),
                            ));
                            return (
                                StatusCode::OK,
                                envelope(&format!(
                                    r#"<u:AddPortMappingResponse xmlns:u="{service}"></u:AddPortMappingResponse>"#
                                )),
                            );
                        }
                        (StatusCode::INTERNAL_SERVER_ERROR, envelope("<s:Fault/>"))
                    }
                }),
            );
        let web = tokio::spawn(async move {
            let _ = axum::serve(http, app).await;
        });
        let ssdp = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("a UDP port");
        let ssdp_addr = ssdp.local_addr().expect("its address");
        let answer = format!(
            "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nUSN: uuid:fake-router::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nEXT:\r\nSERVER: Fake/1.0 UPnP/1.1\r\nLOCATION: http://{http_addr}/rootDesc.xml\r\n\r\n"
        );
        let search = tokio::spawn(async move {
            let mut buffer = [0u8; 2048];
            while let Ok((len, peer)) = ssdp.recv_from(&mut buffer).await {
                if buffer[..len].starts_with(b"M-SEARCH") {
                    let _ = ssdp.send_to(answer.as_bytes(), peer).await;
                }
            }
        });
        FakeRouter {
            ssdp_addr,
            mappings,
            tasks: vec![web, search],
        }
    }
}
