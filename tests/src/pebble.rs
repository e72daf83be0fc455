//! Pebble, Let's Encrypt's test ACME authority (Debian's `pebble` package, installed by
//! `make test`), on loopback for one test: its HTTPS through a certificate of the test's
//! CA, its challenge checks sent to the test's DNS server and to the given ports, and no
//! artificial sleeps or refused nonces.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command},
    time::{Duration, Instant},
};

use crate::{checker::TestCa, free_port};

/// A running Pebble. Killed when dropped.
pub struct Pebble {
    child: Child,
    _dir: tempfile::TempDir,
    /// The ACME directory URL.
    pub directory: String,
    management: String,
    /// A PEM file with the root of Pebble's own HTTPS certificate (Kith's
    /// `tls.acme_ca_file`).
    pub ca_file: PathBuf,
    ca_pem: String,
}

impl Pebble {
    /// Starts Pebble, checking challenges through `dns` on `http_port` (HTTP-01) and
    /// `tls_port` (TLS-ALPN-01).
    pub async fn start(dns: SocketAddr, http_port: u16, tls_port: u16) -> Pebble {
        let dir = tempfile::tempdir().expect("a temp dir");
        let ca = TestCa::new();
        let own = ca.issue(&["127.0.0.1", "localhost"], 30);
        let (cert, key, ca_file) = (
            dir.path().join("cert.pem"),
            dir.path().join("key.pem"),
            dir.path().join("ca.pem"),
        );
        std::fs::write(&cert, &own.cert_pem).expect("write Pebble's certificate");
        std::fs::write(&key, &own.key_pem).expect("write Pebble's key");
        std::fs::write(&ca_file, &ca.pem).expect("write the CA");
        let (port, management_port) = (free_port(), free_port());
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{port}"),
                "managementListenAddress": format!("127.0.0.1:{management_port}"),
                "certificate": cert,
                "privateKey": key,
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }
        });
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).expect("write Pebble's config");
        let log = std::fs::File::create(dir.path().join("pebble.log")).expect("a log file");
        let child = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .arg("-dnsserver")
            .arg(dns.to_string())
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log.try_clone().expect("the log"))
            .stderr(log)
            .spawn()
            .expect("pebble runs (Debian's `pebble` package; `make test` installs it)");
        let pebble = Pebble {
            child,
            directory: format!("https://127.0.0.1:{port}/dir"),
            management: format!("https://127.0.0.1:{management_port}"),
            ca_file,
            ca_pem: ca.pem.clone(),
            _dir: dir,
        };
        let client = pebble.client();
        let deadline = Instant::now() + Duration::from_secs(20);
        while client.get(&pebble.directory).send().await.is_err() {
            assert!(Instant::now() < deadline, "Pebble did not start in 20 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        pebble
    }

    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([
                reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("the CA")
            ])
            .build()
            .expect("a client")
    }

    /// The root of the certificates Pebble issues (PEM; made anew at each start).
    pub async fn issuing_root(&self) -> String {
        self.client()
            .get(format!("{}/roots/0", self.management))
            .send()
            .await
            .expect("Pebble's root")
            .text()
            .await
            .expect("its PEM")
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
