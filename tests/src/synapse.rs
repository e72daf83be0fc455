//! A real Synapse on loopback, for federation tests: SQLite, open registration, a plain
//! client listener and a TLS federation listener with a self-signed certificate, and the
//! settings a private federation on loopback needs (certificates not checked, loopback
//! allowed, no trusted key servers). Its server name is `localhost:PORT`.
//!
//! Synapse comes from PyPI into a cached venv (`tests/synapse/install.sh`, run by
//! `make test`); `KITH_SYNAPSE_VENV` points elsewhere.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use crate::{Client, free_port};

/// A running Synapse. Killed when dropped.
pub struct Synapse {
    child: Option<Child>,
    /// The data dir: a temp dir, removed when dropped, or one that outlives the run.
    _temp: Option<tempfile::TempDir>,
    path: PathBuf,
    python: PathBuf,
    /// `localhost:PORT` (the federation port).
    pub server_name: String,
    /// `http://127.0.0.1:PORT` of the client listener.
    pub client_url: String,
}

fn python() -> PathBuf {
    let venv = std::env::var_os("KITH_SYNAPSE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            Path::new(&home).join(".cache/kith/synapse-venv")
        });
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "Synapse is not installed at {}: run tests/synapse/install.sh (make test does)",
        venv.display()
    );
    python
}

impl Synapse {
    /// Generates a config in a temp dir and starts Synapse; returns once its client API
    /// answers. Presence is off, as most tests do not need its traffic.
    pub async fn start() -> Synapse {
        Self::start_configured(false, None).await
    }

    /// [`Self::start`], with presence on (Synapse's own default).
    pub async fn start_with_presence() -> Synapse {
        Self::start_configured(true, None).await
    }

    /// [`Self::start`], with this certificate (PEM) on the federation listener, which then
    /// listens on `::1` too, since `localhost` has both addresses.
    pub async fn start_with_certificate(cert_pem: &str, key_pem: &str) -> Synapse {
        Self::start_configured(false, Some((cert_pem, key_pem))).await
    }

    /// [`Self::start`] on a data dir that outlives the run, for a benchmark that builds a
    /// big room once: the first start configures it and notes its ports in `ports`; later
    /// starts keep its config, data and ports.
    pub async fn start_kept(dir: &Path) -> Synapse {
        std::fs::create_dir_all(dir).expect("Synapse's kept data dir");
        let noted = std::fs::read_to_string(dir.join("ports"))
            .ok()
            .and_then(|text| {
                let mut ports = text.split_whitespace().map(|p| p.parse::<u16>().ok());
                Some((ports.next()??, ports.next()??))
            });
        let (federation_port, client_port) = match noted {
            Some(ports) => ports,
            None => {
                let ports = (free_port(), free_port());
                write_config(dir, ports, false, None);
                std::fs::write(dir.join("ports"), format!("{} {}\n", ports.0, ports.1))
                    .expect("note Synapse's ports");
                ports
            }
        };
        let mut synapse = Synapse {
            child: None,
            _temp: None,
            path: dir.to_owned(),
            python: python(),
            server_name: format!("localhost:{federation_port}"),
            client_url: format!("http://127.0.0.1:{client_port}"),
        };
        synapse.launch().await;
        synapse
    }

    async fn start_configured(presence: bool, certificate: Option<(&str, &str)>) -> Synapse {
        let dir = tempfile::tempdir().expect("temp dir");
        let (federation_port, client_port) = (free_port(), free_port());
        write_config(
            dir.path(),
            (federation_port, client_port),
            presence,
            certificate,
        );
        let mut synapse = Synapse {
            child: None,
            path: dir.path().to_owned(),
            _temp: Some(dir),
            python: python(),
            server_name: format!("localhost:{federation_port}"),
            client_url: format!("http://127.0.0.1:{client_port}"),
        };
        synapse.launch().await;
        synapse
    }

    async fn launch(&mut self) {
        let path = &self.path;
        let log = std::fs::File::create(path.join("stdout.log")).expect("log file");
        let child = Command::new(&self.python)
            .args(["-m", "synapse.app.homeserver"])
            .arg("-c")
            .arg(path.join("homeserver.yaml"))
            .arg("-c")
            .arg(path.join("kith-test.yaml"))
            .current_dir(path)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("Synapse starts");
        self.child = Some(child);
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(180);
        let url = format!("{}/_matrix/client/versions", self.client_url);
        loop {
            if let Ok(response) = http.get(&url).send().await
                && response.status().is_success()
            {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("Synapse exited with {status}:\n{}", self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "Synapse did not start in 180 s:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The end of Synapse's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let path = &self.path;
        let mut text = String::new();
        for name in ["stdout.log", "homeserver.log"] {
            if let Ok(log) = std::fs::read_to_string(path.join(name)) {
                let lines: Vec<&str> = log.lines().collect();
                let start = lines.len().saturating_sub(40);
                text.push_str(&format!("--- {name}\n{}\n", lines[start..].join("\n")));
            }
        }
        text
    }

    /// An anonymous client of this Synapse.
    pub fn anonymous(&self) -> Client {
        Client::anonymous_at(&self.client_url)
    }

    /// Registers `name` and returns the logged-in client.
    pub async fn register(&self, name: &str) -> Client {
        self.anonymous().register(name).await
    }

    /// Stops Synapse (SIGKILL: an outage, not a shutdown).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts Synapse again on the same data and ports.
    pub async fn restart(&mut self) {
        self.kill();
        self.launch().await;
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Writes Synapse's config into `path`: its server name is `localhost:FEDERATION_PORT`.
fn write_config(
    path: &Path,
    (federation_port, client_port): (u16, u16),
    presence: bool,
    certificate: Option<(&str, &str)>,
) {
    let server_name = format!("localhost:{federation_port}");
    // The config Synapse's `--generate-config` would write, without the second Python
    // start-up it costs: its own secrets, an SQLite database, and a signing key in
    // Synapse's format (`ed25519 <version> <unpadded base64 seed>`; any 43 base64
    // characters are a 32-byte seed).
    let signing_key = path.join("signing.key");
    std::fs::write(
        &signing_key,
        format!("ed25519 a_kith {}\n", kith::crypto::random_string(43)),
    )
    .expect("write Synapse's signing key");
    let base = format!(
        r#"server_name: "{server_name}"
pid_file: "{dir}/homeserver.pid"
database: {{name: sqlite3, args: {{database: "{dir}/homeserver.db"}}}}
media_store_path: "{dir}/media_store"
signing_key_path: "{key}"
macaroon_secret_key: "{macaroon}"
form_secret: "{form}"
registration_shared_secret: "{shared}"
"#,
        dir = path.display(),
        key = signing_key.display(),
        macaroon = kith::crypto::random_string(40),
        form = kith::crypto::random_string(40),
        shared = kith::crypto::random_string(40),
    );
    std::fs::write(path.join("homeserver.yaml"), base).expect("write Synapse's config");
    let cert = path.join("tls.crt");
    let key = path.join("tls.key");
    let bind = match certificate {
        Some((cert_pem, key_pem)) => {
            std::fs::write(&cert, cert_pem).expect("write Synapse's certificate");
            std::fs::write(&key, key_pem).expect("write Synapse's key");
            "['127.0.0.1', '::1']"
        }
        None => {
            kith::crypto::load_or_create_self_signed(&cert, &key, "localhost")
                .expect("a certificate for Synapse");
            "['127.0.0.1']"
        }
    };
    let overrides = format!(
        r#"
listeners:
  - port: {federation_port}
    type: http
    tls: true
    bind_addresses: {bind}
    resources: [{{names: [federation], compress: false}}]
  - port: {client_port}
    type: http
    tls: false
    bind_addresses: ['127.0.0.1']
    resources: [{{names: [client], compress: false}}]
tls_certificate_path: "{cert}"
tls_private_key_path: "{key}"
federation_verify_certificates: false
ip_range_whitelist: ['127.0.0.0/8', '::1/128']
ip_range_blacklist: []
enable_registration: true
enable_registration_without_verification: true
allow_public_rooms_over_federation: true
room_list_publication_rules: [{{action: allow}}]
trusted_key_servers: []
suppress_key_server_warning: true
report_stats: false
presence: {{enabled: {presence}}}
bcrypt_rounds: 4
rc_message: {{per_second: 1000, burst_count: 1000}}
rc_registration: {{per_second: 1000, burst_count: 1000}}
rc_joins: {{local: {{per_second: 1000, burst_count: 1000}}, remote: {{per_second: 1000, burst_count: 1000}}}}
rc_joins_per_room: {{per_second: 1000, burst_count: 1000}}
rc_login:
  address: {{per_second: 1000, burst_count: 1000}}
  account: {{per_second: 1000, burst_count: 1000}}
  failed_attempts: {{per_second: 1000, burst_count: 1000}}
rc_federation: {{window_size: 1000, sleep_limit: 1000, sleep_delay: 1, reject_limit: 1000, concurrent: 100}}
"#,
        cert = cert.display(),
        key = key.display(),
    );
    std::fs::write(path.join("kith-test.yaml"), overrides).expect("write overrides");
}
