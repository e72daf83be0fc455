//! What the federation checker's tests need around a server: a DNS server of their own on
//! loopback, a test certificate authority, addresses of their own (each test takes random
//! `127.x.y.z` addresses, so real ports 443 and 8448 can be used side by side), and fake
//! federation servers that get one thing wrong on purpose.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
};

use axum::{Router, http::header, response::IntoResponse, routing::get};
use base64::Engine;
use hickory_resolver::proto::{
    op::{Message, OpCode, ResponseCode},
    rr::{
        Name, RData, Record, RecordType,
        rdata::{A, AAAA, CNAME, SRV},
    },
};
use ruma::{
    CanonicalJsonValue,
    signatures::{Ed25519KeyPair, sign_json},
};
use serde_json::{Value, json};

/// A fresh loopback address for this test (Linux routes all of 127.0.0.0/8 to `lo`).
pub fn loopback_ip() -> IpAddr {
    let bytes: [u8; 3] = rand_bytes();
    IpAddr::V4(Ipv4Addr::new(
        127,
        bytes[0].max(2),
        bytes[1],
        bytes[2].clamp(1, 254),
    ))
}

fn rand_bytes() -> [u8; 3] {
    let text = kith::crypto::random_string(12);
    let hash = text
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(131).wrapping_add(u64::from(b)));
    let [a, b, c, ..] = hash.to_le_bytes();
    [a, b, c]
}

/// A DNS server on `127.0.0.1:PORT` (UDP) answering from a table, as an authoritative
/// server with a resolver in front would: an alias is answered with its CNAME and the
/// target's records; an unknown name is NXDOMAIN.
pub struct TestDns {
    /// Where it listens.
    pub addr: SocketAddr,
    records: Arc<Mutex<Vec<Record>>>,
    task: tokio::task::JoinHandle<()>,
}

fn name(text: &str) -> Name {
    Name::from_ascii(format!("{}.", text.trim_end_matches('.'))).expect("a DNS name")
}

impl TestDns {
    /// Starts an empty server.
    pub async fn start() -> TestDns {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("a UDP socket");
        let addr = socket.local_addr().expect("its address");
        let records: Arc<Mutex<Vec<Record>>> = Arc::default();
        let table = records.clone();
        let task = tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            loop {
                let Ok((len, peer)) = socket.recv_from(&mut buffer).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buffer[..len]) else {
                    continue;
                };
                let answer = answer(&query, &table.lock().expect("the table").clone());
                if let Ok(bytes) = answer.to_vec() {
                    let _ = socket.send_to(&bytes, peer).await;
                }
            }
        });
        TestDns {
            addr,
            records,
            task,
        }
    }

    fn add(&self, owner: &str, data: RData) {
        self.records
            .lock()
            .expect("the table")
            .push(Record::from_rdata(name(owner), 60, data));
    }

    /// An A or AAAA record.
    pub fn address(&self, owner: &str, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => self.add(owner, RData::A(A(v4))),
            IpAddr::V6(v6) => self.add(owner, RData::AAAA(AAAA(v6))),
        }
    }

    /// A CNAME record.
    pub fn alias(&self, owner: &str, target: &str) {
        self.add(owner, RData::CNAME(CNAME(name(target))));
    }

    /// An SRV record.
    pub fn srv(&self, owner: &str, target: &str, port: u16) {
        self.add(owner, RData::SRV(SRV::new(10, 5, port, name(target))));
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(query: &Message, table: &[Record]) -> Message {
    let mut response = Message::response(query.metadata.id, OpCode::Query);
    response.metadata.recursion_desired = query.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.authoritative = true;
    let Some(question) = query.queries.first() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response;
    };
    response.add_query(question.clone());
    let mut owner = question.name().clone();
    let wanted = question.query_type();
    // Follow aliases, as a recursive resolver would, answering with the chain.
    for _ in 0..8 {
        let here: Vec<&Record> = table.iter().filter(|r| r.name == owner).collect();
        if here.is_empty() {
            if response.answers.is_empty() {
                response.metadata.response_code = ResponseCode::NXDomain;
            }
            return response;
        }
        let alias = here.iter().find_map(|r| match &r.data {
            RData::CNAME(target) if wanted != RecordType::CNAME => Some(target.0.clone()),
            _ => None,
        });
        if let Some(target) = alias {
            response.add_answer(
                here.iter()
                    .find(|r| matches!(r.data, RData::CNAME(_)))
                    .map(|r| (*r).clone())
                    .expect("the CNAME record"),
            );
            owner = target;
            continue;
        }
        for record in here {
            if record.record_type() == wanted {
                response.add_answer(record.clone());
            }
        }
        return response;
    }
    response
}

/// A certificate authority for tests, trusted through `kith check --ca-file`.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// Its certificate, PEM.
    pub pem: String,
}

/// A certificate and its key, PEM.
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// The private key.
    pub key_pem: String,
}

impl TestCa {
    /// A new CA.
    pub fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().expect("a CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Kith test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).expect("the CA certificate");
        TestCa {
            issuer: rcgen::Issuer::new(params, key),
            pem: cert.pem(),
        }
    }

    /// A certificate for `names`, valid from a day ago until `days_left` days from now
    /// (negative: already expired).
    pub fn issue(&self, names: &[&str], days_left: i64) -> Issued {
        let key = rcgen::KeyPair::generate().expect("a key");
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .expect("params");
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            names.first().copied().unwrap_or("none"),
        );
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(30);
        params.not_after = now + time::Duration::days(days_left) + time::Duration::hours(1);
        if days_left < 0 {
            params.not_before = now + time::Duration::days(days_left - 30);
            params.not_after = now + time::Duration::days(days_left);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("a certificate");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// What a fake federation server gets wrong.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    /// Nothing: it answers like a homeserver.
    None,
    /// Its key response is signed by another key than the one it lists.
    WrongSigningKey,
    /// Its key response is served as `text/plain`.
    TextPlainKeys,
}

/// A TLS server on `addr` with `cert`: federation version and keys for `server_name`,
/// with `fault`, and `/.well-known/matrix/server` naming `well_known` if given.
pub struct FakeServer {
    handle: axum_server::Handle<SocketAddr>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

fn key_response(server_name: &str, fault: Fault) -> Value {
    let document = Ed25519KeyPair::generate();
    let listed = Ed25519KeyPair::from_der(&document, "fake".to_owned()).expect("a key");
    let signer = if fault == Fault::WrongSigningKey {
        Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "fake".to_owned()).expect("a key")
    } else {
        Ed25519KeyPair::from_der(&document, "fake".to_owned()).expect("a key")
    };
    let public = base64::engine::general_purpose::STANDARD_NO_PAD.encode(listed.public_key());
    let valid_until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
        + 3_600_000;
    let Ok(CanonicalJsonValue::Object(mut object)) = CanonicalJsonValue::try_from(json!({
        "server_name": server_name,
        "valid_until_ts": valid_until,
        "verify_keys": { "ed25519:fake": { "key": public } },
        "old_verify_keys": {},
    })) else {
        panic!("a JSON object");
    };
    sign_json(server_name, &signer, &mut object).expect("signs");
    serde_json::to_value(object).expect("JSON")
}

impl FakeServer {
    /// Starts it.
    pub async fn start(
        addr: SocketAddr,
        cert: &Issued,
        server_name: &str,
        fault: Fault,
        well_known: Option<Value>,
    ) -> FakeServer {
        let keys = key_response(server_name, fault);
        let content_type = if fault == Fault::TextPlainKeys {
            "text/plain"
        } else {
            "application/json"
        };
        let mut app = Router::new()
            .route(
                "/_matrix/federation/v1/version",
                get(|| async {
                    axum::Json(json!({ "server": { "name": "Fake", "version": "1.0" } }))
                }),
            )
            .route(
                "/_matrix/key/v2/server",
                get(move || {
                    let keys = keys.clone();
                    async move { ([(header::CONTENT_TYPE, content_type)], keys.to_string()) }
                }),
            );
        if let Some(well_known) = well_known {
            app = app.route(
                "/.well-known/matrix/server",
                get(move || {
                    let body = well_known.clone();
                    async move { axum::Json(body).into_response() }
                }),
            );
        }
        Self::serve(addr, cert, app).await
    }

    /// A website on `addr` whose `/.well-known/matrix/server` redirects (301) to
    /// `location`.
    pub async fn redirecting(addr: SocketAddr, cert: &Issued, location: &str) -> FakeServer {
        let location = location.to_owned();
        let app = Router::new().route(
            "/.well-known/matrix/server",
            get(move || {
                let location = location.clone();
                async move {
                    (
                        axum::http::StatusCode::MOVED_PERMANENTLY,
                        [(header::LOCATION, location)],
                    )
                }
            }),
        );
        Self::serve(addr, cert, app).await
    }

    /// A server on `addr` (TLS with `cert`) that answers with `app`: another server's
    /// endpoints as a test needs them.
    pub async fn with_routes(addr: SocketAddr, cert: &Issued, app: Router) -> FakeServer {
        Self::serve(addr, cert, app).await
    }

    async fn serve(addr: SocketAddr, cert: &Issued, app: Router) -> FakeServer {
        let config = axum_server::tls_rustls::RustlsConfig::from_pem(
            cert.cert_pem.clone().into_bytes(),
            cert.key_pem.clone().into_bytes(),
        )
        .await
        .expect("a TLS config");
        let handle = axum_server::Handle::new();
        let listener = std::net::TcpListener::bind(addr).unwrap_or_else(|e| {
            panic!("cannot bind {addr} (tests bind loopback ports below 1024 and need root): {e}")
        });
        listener.set_nonblocking(true).expect("non-blocking");
        let server = axum_server::from_tcp_rustls(listener, config)
            .expect("a TLS server")
            .handle(handle.clone());
        tokio::spawn(async move {
            let _ = server.serve(app.into_make_service()).await;
        });
        handle.listening().await;
        FakeServer { handle }
    }
}
