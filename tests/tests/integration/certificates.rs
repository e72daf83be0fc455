//! The federation listener's certificate from the user's own files: checked at load,
//! served, reloaded when the files change (for new connections, while open ones carry on),
//! a bad replacement refused with the old certificate kept, and the expiry watched.

use std::{net::SocketAddr, time::Duration};

use kith::{
    config::TlsMode,
    control::ServerEvent,
    service::{
        certificates::{CertificateEvent, CertificateEventKind},
        checker::{Checker, CheckerOptions},
    },
};
use kith_tests::{
    TestServer,
    checker::{Issued, TestCa, TestDns, loopback_ip},
};
use tokio::sync::broadcast;

fn write(dir: &std::path::Path, issued: &Issued) -> (String, String) {
    let cert = dir.join("fullchain.pem");
    let key = dir.join("privkey.pem");
    std::fs::write(&cert, &issued.cert_pem).expect("write the certificate");
    std::fs::write(&key, &issued.key_pem).expect("write the key");
    (cert.display().to_string(), key.display().to_string())
}

/// The next certificate event, skipping other server events.
async fn next_certificate_event(events: &mut broadcast::Receiver<ServerEvent>) -> CertificateEvent {
    let wait = async {
        loop {
            if let Ok(ServerEvent::Certificate(event)) = events.recv().await {
                return event;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), wait)
        .await
        .expect("a certificate event within 15 s")
}

#[tokio::test]
async fn own_certificate_files_are_served_reloaded_when_replaced_and_a_bad_replacement_is_refused()
{
    let ca = TestCa::new();
    let dns = TestDns::start().await;
    let ip = loopback_ip();
    dns.address("files.test", ip);
    let files = tempfile::tempdir().expect("a temp dir");
    let (cert_path, key_path) = write(files.path(), &ca.issue(&["files.test"], 60));
    let server = TestServer::builder()
        .config(|c| {
            c.server_name = "files.test".to_owned();
            c.listen.federation = SocketAddr::new(ip, 8448).to_string();
            c.tls.mode = TlsMode::Files;
            c.tls.certificate = cert_path.clone();
            c.tls.private_key = key_path.clone();
        })
        .start()
        .await;
    let status = server.server().status().await.expect("status");
    let certificate = status.certificate.expect("a certificate");
    assert_eq!(certificate.source, "files");
    assert_eq!(certificate.names, ["files.test"]);
    assert_eq!(certificate.days_left, 60);
    // The test CA is not one this machine trusts, and the status says so.
    assert!(
        certificate.warnings[0].contains("does not lead to an authority this machine trusts"),
        "{:?}",
        certificate.warnings
    );

    // Other servers (here, the checker trusting the test CA) see it.
    let checker = Checker::new(&CheckerOptions {
        dns_server: Some(dns.addr),
        extra_roots_pem: Some(ca.pem.clone().into_bytes()),
        timeout: Duration::from_secs(3),
    })
    .expect("a checker");
    let report = checker.check("files.test").await;
    assert!(report.federation_ok, "{}", report.to_text());
    let addr = format!("{ip}:8448");
    assert_eq!(
        report.connection_reports[&addr].certificate_days_left,
        Some(60)
    );

    // A renewed certificate (5 days left, so it also warns) is picked up without a restart.
    let mut events = server.server().subscribe();
    write(files.path(), &ca.issue(&["files.test"], 5));
    let loaded = next_certificate_event(&mut events).await;
    assert_eq!(loaded.kind, CertificateEventKind::Loaded, "{loaded:?}");
    assert!(
        loaded.message.contains("files.test (5 days left)"),
        "{}",
        loaded.message
    );
    let soon = next_certificate_event(&mut events).await;
    assert_eq!(
        soon,
        CertificateEvent {
            kind: CertificateEventKind::ExpiringSoon,
            message: "the certificate for files.test expires in 5 days: renew it".to_owned(),
        }
    );
    let report = checker.check("files.test").await;
    assert_eq!(
        report.connection_reports[&addr].certificate_days_left,
        Some(5)
    );
    assert_eq!(
        server
            .server()
            .status()
            .await
            .expect("status")
            .certificate
            .expect("one")
            .days_left,
        5
    );

    // A key that does not belong to the certificate is refused; the served one stays.
    let other = ca.issue(&["files.test"], 90);
    std::fs::write(&key_path, &other.key_pem).expect("write a wrong key");
    let failed = next_certificate_event(&mut events).await;
    assert_eq!(failed.kind, CertificateEventKind::Failed);
    assert!(
        failed
            .message
            .contains("does not belong to the certificate"),
        "{}",
        failed.message
    );
    let report = checker.check("files.test").await;
    assert!(report.federation_ok, "{}", report.to_text());
    assert_eq!(
        report.connection_reports[&addr].certificate_days_left,
        Some(5)
    );
    server.stop().await;
}

#[tokio::test]
async fn an_expired_certificate_file_stops_the_start_with_the_reason() {
    let ca = TestCa::new();
    let files = tempfile::tempdir().expect("a temp dir");
    let (cert_path, key_path) = write(files.path(), &ca.issue(&["old.test"], -2));
    let mut config = kith::Config {
        server_name: "old.test".to_owned(),
        ..kith::Config::default()
    };
    config.listen.client = "127.0.0.1:0".to_owned();
    config.listen.federation = "127.0.0.1:0".to_owned();
    config.tls.mode = TlsMode::Files;
    config.tls.certificate = cert_path.clone();
    config.tls.private_key = key_path;
    let data = tempfile::tempdir().expect("a data dir");
    let error = match kith::start(config, data.path().to_path_buf()).await {
        Ok(_) => panic!("an expired certificate must not start"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains(&format!(
            "the certificate in {cert_path} expired 2 days ago"
        )),
        "{error}"
    );
}

#[tokio::test]
async fn behind_a_reverse_proxy_the_federation_listener_speaks_plain_http() {
    let server = TestServer::builder()
        .config(|c| {
            c.server_name = "proxied.test".to_owned();
            c.listen.federation = "127.0.0.1:0".to_owned();
            c.tls.mode = TlsMode::Proxy;
        })
        .start()
        .await;
    let addr = server
        .server()
        .federation_addr()
        .expect("a federation listener");
    let answer = reqwest::Client::new()
        .get(format!("http://{addr}/_matrix/federation/v1/version"))
        .header("X-Forwarded-For", "203.0.113.9")
        .send()
        .await
        .expect("an answer over plain HTTP");
    assert_eq!(answer.status(), 200);
    let keys: serde_json::Value = reqwest::get(format!("http://{addr}/_matrix/key/v2/server"))
        .await
        .expect("keys")
        .json()
        .await
        .expect("JSON");
    assert_eq!(keys["server_name"], "proxied.test");
    // The proxy holds the certificate: Kith has none to report.
    let status = server.server().status().await.expect("status");
    assert!(status.certificate.is_none());
    server.stop().await;
}
