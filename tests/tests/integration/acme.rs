//! Certificates from an ACME authority: Pebble (Let's Encrypt's test authority) on
//! loopback, checking Kith's answers to TLS-ALPN-01 and HTTP-01 through the test's DNS
//! server; renewal of a certificate near its end, swapped in while a client stays
//! connected; and a challenge that cannot succeed, reported with the authority's reason.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use kith::{
    config::{AcmeChallenge, TlsMode},
    control::ServerEvent,
    service::{
        certificates::{CertificateEventKind, CertificateStatus},
        checker::{Checker, CheckerOptions},
    },
};
use kith_tests::{
    TestServer,
    checker::{TestCa, TestDns, loopback_ip},
    pebble::Pebble,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A Kith server named `name` whose federation listener is on `ip:8448`, getting its
/// certificate from `pebble` with `challenge` (HTTP-01 answers on `ip:5002`).
async fn kith_with_acme(
    name: &str,
    ip: IpAddr,
    pebble: &Pebble,
    challenge: AcmeChallenge,
    files: Vec<(&str, String)>,
) -> TestServer {
    let mut builder = TestServer::builder().config(|c| {
        c.server_name = name.to_owned();
        c.listen.federation = SocketAddr::new(ip, 8448).to_string();
        c.tls.mode = TlsMode::Acme;
        c.tls.acme_directory = pebble.directory.clone();
        c.tls.acme_ca_file = pebble.ca_file.display().to_string();
        c.tls.acme_challenge = challenge;
        c.tls.acme_http_listen = SocketAddr::new(ip, 5002).to_string();
        c.tls.acme_contact = "admin@example.org".to_owned();
    });
    for (path, text) in files {
        builder = builder.file(path, text);
    }
    builder.start().await
}

/// Waits until the server serves a certificate from the authority.
async fn acme_certificate(server: &TestServer) -> CertificateStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = server.server().status().await.expect("status");
        let certificate = status.certificate.expect("a certificate");
        if certificate.source == "acme" && certificate.days_left > 30 {
            return certificate;
        }
        assert!(
            Instant::now() < deadline,
            "no certificate from Pebble in 60 s: {certificate:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the checker, trusting Pebble's root, says about `name`.
async fn check(
    dns: &TestDns,
    pebble: &Pebble,
    name: &str,
) -> kith::service::checker::report::Report {
    let root = pebble.issuing_root().await;
    Checker::new(&CheckerOptions {
        dns_server: Some(dns.addr),
        extra_roots_pem: Some(root.into_bytes()),
        timeout: Duration::from_secs(3),
    })
    .expect("a checker")
    .check(name)
    .await
}

#[tokio::test]
async fn a_certificate_is_obtained_with_tls_alpn_01_and_federation_is_ok() {
    let dns = TestDns::start().await;
    let ip = loopback_ip();
    dns.address("alpn.test", ip);
    let pebble = Pebble::start(dns.addr, 5002, 8448).await;
    let server = kith_with_acme(
        "alpn.test",
        ip,
        &pebble,
        AcmeChallenge::TlsAlpn01,
        Vec::new(),
    )
    .await;
    let certificate = acme_certificate(&server).await;
    assert_eq!(certificate.names, ["alpn.test"]);
    let report = check(&dns, &pebble, "alpn.test").await;
    assert!(report.federation_ok, "{}", report.to_text());
    // The account is kept for renewals, readable only by its owner.
    let account = server.data_dir().join("acme/account.json");
    assert!(account.is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&account)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    server.stop().await;
}

#[tokio::test]
async fn a_certificate_is_obtained_with_http_01() {
    let dns = TestDns::start().await;
    let ip = loopback_ip();
    dns.address("http.test", ip);
    let pebble = Pebble::start(dns.addr, 5002, 8448).await;
    let server = kith_with_acme("http.test", ip, &pebble, AcmeChallenge::Http01, Vec::new()).await;
    let certificate = acme_certificate(&server).await;
    assert_eq!(certificate.names, ["http.test"]);
    let report = check(&dns, &pebble, "http.test").await;
    assert!(report.federation_ok, "{}", report.to_text());
    server.stop().await;
}

/// A raw TLS connection that accepts any certificate, for one request after another.
struct Connection {
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
}

#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl Connection {
    async fn open(addr: SocketAddr, name: &str) -> Connection {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(
                rustls::pki_types::ServerName::try_from(name.to_owned()).expect("a name"),
                tcp,
            )
            .await
            .expect("a TLS handshake");
        Connection { stream }
    }

    /// The certificate's SHA-256-less identity: its DER bytes.
    fn certificate(&self) -> Vec<u8> {
        self.stream
            .get_ref()
            .1
            .peer_certificates()
            .expect("certificates")[0]
            .to_vec()
    }

    /// `GET /_matrix/federation/v1/version` on this connection: the status line.
    async fn version(&mut self, host: &str) -> String {
        let request =
            format!("GET /_matrix/federation/v1/version HTTP/1.1\r\nHost: {host}\r\n\r\n");
        self.stream
            .write_all(request.as_bytes())
            .await
            .expect("sent");
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let read = self.stream.read(&mut buffer).await.expect("read");
            assert!(read > 0, "the connection closed");
            answer.extend_from_slice(&buffer[..read]);
            let text = String::from_utf8_lossy(&answer);
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if answer.len() >= end + 4 + length {
                    return text.lines().next().unwrap_or_default().to_owned();
                }
            }
        }
    }
}

#[tokio::test]
async fn a_certificate_near_its_end_is_renewed_and_swapped_in_while_a_client_stays_connected() {
    let dns = TestDns::start().await;
    let ip = loopback_ip();
    dns.address("renew.test", ip);
    let pebble = Pebble::start(dns.addr, 5002, 8448).await;
    // The certificate kept from last time has 10 days left: inside the 30-day window.
    let ca = TestCa::new();
    let old = ca.issue(&["renew.test"], 10);
    let server = kith_with_acme(
        "renew.test",
        ip,
        &pebble,
        AcmeChallenge::TlsAlpn01,
        vec![
            ("acme/certificate.pem", old.cert_pem.clone()),
            ("acme/private_key.pem", old.key_pem.clone()),
        ],
    )
    .await;
    let addr = SocketAddr::new(ip, 8448);
    let mut before = Connection::open(addr, "renew.test").await;
    let old_der = before.certificate();
    assert_eq!(before.version("renew.test").await, "HTTP/1.1 200 OK");

    let renewed = acme_certificate(&server).await;
    assert!(renewed.days_left > 30, "{renewed:?}");
    // The connection made before the swap goes on working.
    assert_eq!(before.version("renew.test").await, "HTTP/1.1 200 OK");
    // New connections get the new certificate.
    let after = Connection::open(addr, "renew.test").await;
    assert_ne!(after.certificate(), old_der);
    let report = check(&dns, &pebble, "renew.test").await;
    assert!(report.federation_ok, "{}", report.to_text());
    server.stop().await;
}

#[tokio::test]
async fn a_challenge_the_authority_cannot_check_is_reported_with_its_reason() {
    let dns = TestDns::start().await;
    let ip = loopback_ip();
    // DNS sends the authority to an address where nothing listens.
    dns.address("unreachable.test", loopback_ip());
    let pebble = Pebble::start(dns.addr, 5002, 8448).await;
    let server = kith_with_acme(
        "unreachable.test",
        ip,
        &pebble,
        AcmeChallenge::TlsAlpn01,
        Vec::new(),
    )
    .await;
    let mut events = server.server().subscribe();
    let failure = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Ok(ServerEvent::Certificate(event)) = events.recv().await
                && event.kind == CertificateEventKind::Failed
            {
                return event.message;
            }
        }
    })
    .await
    .expect("a failure within 60 s");
    assert!(
        failure.contains("the authority could not verify unreachable.test"),
        "{failure}"
    );
    assert!(failure.contains("port 443"), "{failure}");
    assert!(failure.contains("trying again in 1 min"), "{failure}");
    // Meanwhile the temporary certificate is served, and the status says why.
    let status = server.server().status().await.expect("status");
    let certificate = status.certificate.expect("a certificate");
    assert_eq!(certificate.source, "self-signed");
    assert!(certificate.warnings[0].contains("no certificate from the ACME authority yet"));
    server.stop().await;
}
