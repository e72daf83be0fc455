//! Port forwarding on the home router through UPnP, on an admin's request: against a fake
//! router on loopback that answers the SSDP search and the SOAP actions like a real one.

use kith_tests::{
    TestServer,
    igd::{EXTERNAL_IP, FakeRouter},
};
use serde_json::json;

#[tokio::test]
async fn an_admin_has_the_router_forward_the_federation_port_and_learns_the_public_address() {
    let router = FakeRouter::start(vec![25]).await;
    let port = kith_tests::free_port();
    let server = TestServer::builder()
        .config(|c| {
            c.server_name = "home.test".to_owned();
            c.listen.federation = format!("127.0.0.1:{port}");
            c.network.upnp_search_address = router.ssdp_addr.to_string();
        })
        .start()
        .await;
    let port = server
        .server()
        .federation_addr()
        .expect("a listener")
        .port();
    let admin = server.admin().await;

    let (status, body) = admin
        .post("/_kith/admin/v1/network/port_mapping", json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["external_ip"], EXTERNAL_IP);
    assert_eq!(body["mapped"][0]["external_port"], port, "{body}");
    assert_eq!(body["mapped"][0]["internal"], format!("127.0.0.1:{port}"));
    assert_eq!(
        router.mappings.lock().expect("mappings").clone(),
        [(port, "127.0.0.1".to_owned(), port)]
    );

    // A port the router will not give is reported with what to do.
    let (status, body) = admin
        .post(
            "/_kith/admin/v1/network/port_mapping",
            json!({ "ports": [[8448, port], [25, 25]] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mapped"][0]["external_port"], 8448);
    let refused = body["failed"][0].as_str().expect("a refusal");
    assert!(refused.contains("refused to forward port 25"), "{refused}");
    assert!(refused.contains("forward it by hand"), "{refused}");

    // Only admins may open ports.
    let someone = server.register("someone").await;
    let (status, _) = someone
        .post("/_kith/admin/v1/network/port_mapping", json!({}))
        .await;
    assert_eq!(status, 403);
    server.stop().await;
}

#[tokio::test]
async fn without_a_upnp_router_the_answer_says_to_forward_ports_by_hand() {
    // Nothing answers the search here.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("a UDP port");
    let port = kith_tests::free_port();
    let server = TestServer::builder()
        .config(|c| {
            c.listen.federation = format!("127.0.0.1:{port}");
            c.network.upnp_search_address = silent.local_addr().expect("address").to_string();
        })
        .start()
        .await;
    let admin = server.admin().await;
    let (status, body) = admin
        .post("/_kith/admin/v1/network/port_mapping", json!({}))
        .await;
    assert_eq!(status, 502, "{body}");
    let error = body["error"].as_str().expect("an error");
    assert!(
        error.contains("no router answered the UPnP search"),
        "{error}"
    );
    assert!(error.contains("forward the ports by hand"), "{error}");
    server.stop().await;
}
