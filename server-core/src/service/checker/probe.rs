//! The checker's view of the network: DNS through hickory (the system's name servers, or one
//! the user names), without the hosts file, so that a local override cannot hide what other
//! servers see; and HTTPS requests over a TLS connection whose facts (version, suite,
//! certificates, and whether they verify) are kept instead of ending the connection.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use hickory_resolver::{
    TokioResolver,
    config::{NameServerConfig, ResolveHosts, ResolverConfig},
    net::runtime::TokioRuntimeProvider,
    proto::rr::{RData, RecordType},
};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use tokio::net::TcpStream;

use super::report::SrvRecord;

/// The largest response body read (key responses and well-known files are small).
const MAX_BODY: usize = 256 * 1024;

/// DNS lookups for the checker.
pub struct Dns {
    resolver: TokioResolver,
}

/// The answer for a host's addresses.
#[derive(Debug, Default)]
pub struct HostAnswer {
    /// The name it is an alias of, if it is one.
    pub cname: Option<String>,
    /// Its addresses, IPv4 first.
    pub addrs: Vec<IpAddr>,
    /// Why there are none, if the lookup failed for another reason than "no records".
    pub error: Option<String>,
}

fn trim_dot(name: &str) -> String {
    name.trim_end_matches('.').to_owned()
}

/// `name` as an absolute name (a final dot), so that the machine's DNS search domains are
/// never appended: other servers do not have them.
fn absolute(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

impl Dns {
    /// A resolver asking `server` (`ip:port`), or the system's name servers. The hosts file
    /// is not read: other servers do not see it.
    pub fn new(server: Option<SocketAddr>, timeout: Duration) -> Result<Self, String> {
        let mut builder = match server {
            Some(addr) => {
                let mut name_server = NameServerConfig::udp_and_tcp(addr.ip());
                for connection in &mut name_server.connections {
                    connection.port = addr.port();
                }
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![name_server]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio()
                .map_err(|e| format!("cannot read this machine's DNS configuration: {e}"))?,
        };
        let options = builder.options_mut();
        options.use_hosts_file = ResolveHosts::Never;
        options.preserve_intermediates = true;
        options.timeout = timeout;
        options.attempts = 1;
        // Fresh answers each check.
        options.cache_size = 0;
        let resolver = builder
            .build()
            .map_err(|e| format!("cannot build a DNS resolver: {e}"))?;
        Ok(Self { resolver })
    }

    /// The SRV records of `name`, best first (lowest priority, then highest weight), and
    /// the name `name` is an alias of, if any. No records is `Ok` and empty.
    pub async fn srv(&self, name: &str) -> Result<(Vec<SrvRecord>, Option<String>), String> {
        let lookup = match self.resolver.srv_lookup(absolute(name)).await {
            Ok(lookup) => lookup,
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => {
                return Ok((Vec::new(), None));
            }
            Err(e) => return Err(format!("the SRV lookup of {name} failed: {e}")),
        };
        let mut cname = None;
        let mut records = Vec::new();
        for record in lookup.answers() {
            match &record.data {
                RData::SRV(srv) if !srv.target.is_root() => records.push(SrvRecord {
                    target: trim_dot(&srv.target.to_ascii()),
                    port: srv.port,
                    priority: srv.priority,
                    weight: srv.weight,
                }),
                RData::CNAME(target) if cname.is_none() => {
                    cname = Some(trim_dot(&target.0.to_ascii()));
                }
                _ => {}
            }
        }
        records.sort_by_key(|r| (r.priority, std::cmp::Reverse(r.weight)));
        Ok((records, cname))
    }

    /// The A and AAAA records of `host`.
    pub async fn host(&self, host: &str) -> HostAnswer {
        let mut answer = HostAnswer::default();
        for record_type in [RecordType::A, RecordType::AAAA] {
            match self.resolver.lookup(absolute(host), record_type).await {
                Ok(lookup) => {
                    for record in lookup.answers() {
                        match &record.data {
                            RData::A(a) => answer.addrs.push(IpAddr::V4(a.0)),
                            RData::AAAA(aaaa) => answer.addrs.push(IpAddr::V6(aaaa.0)),
                            RData::CNAME(target) if answer.cname.is_none() => {
                                answer.cname = Some(trim_dot(&target.0.to_ascii()));
                            }
                            _ => {}
                        }
                    }
                }
                Err(e) if e.is_no_records_found() || e.is_nx_domain() => {}
                Err(e) => {
                    answer.error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        answer.addrs.dedup();
        answer
    }

    /// Whether `name` is an alias (has a CNAME record).
    pub async fn is_alias(&self, name: &str) -> Option<String> {
        let lookup = self
            .resolver
            .lookup(absolute(name), RecordType::CNAME)
            .await
            .ok()?;
        lookup
            .answers()
            .iter()
            .find_map(|record| match &record.data {
                RData::CNAME(target) => Some(trim_dot(&target.0.to_ascii())),
                _ => None,
            })
    }
}

/// What is wrong with a certificate chain, as the TLS library sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateIssue {
    /// It is past its end date.
    Expired,
    /// It is not valid yet.
    NotValidYet,
    /// It does not chain to a trusted root (self-signed, a private CA, or a missing
    /// intermediate).
    UntrustedIssuer,
    /// It is not valid for the name.
    WrongName,
    /// Anything else, as the library says it.
    Other(String),
}

/// What a TLS handshake showed.
#[derive(Debug, Clone)]
pub struct TlsFacts {
    /// "TLS 1.2" or "TLS 1.3".
    pub version: String,
    /// The cipher suite's name.
    pub suite: String,
    /// The certificates sent, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// `None` when the chain verifies for the name.
    pub issue: Option<CertificateIssue>,
}

/// Accepts any certificate, after asking the real verifier and keeping its answer: the
/// checker goes on to the key checks even when the certificate is bad, and reports both.
#[derive(Debug)]
struct Recording {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Option<(Vec<CertificateDer<'static>>, Option<CertificateIssue>)>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let issue = match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(_) => None,
            Err(rustls::Error::InvalidCertificate(e)) => Some(match e {
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    CertificateIssue::Expired
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    CertificateIssue::NotValidYet
                }
                CertificateError::UnknownIssuer => CertificateIssue::UntrustedIssuer,
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => CertificateIssue::WrongName,
                other => CertificateIssue::Other(format!("{other:?}")),
            }),
            Err(other) => Some(CertificateIssue::Other(other.to_string())),
        };
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some((chain, issue));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// How a connection attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// Nothing listens there (connection refused).
    Refused,
    /// No answer in time (a firewall dropping packets, or no route).
    TimedOut,
    /// This machine has no route to the address (often: no IPv6 here), so it cannot be
    /// tested from here.
    Unreachable,
    /// Another network error.
    Network(String),
    /// TCP worked, TLS did not.
    Tls(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused => write!(f, "connection refused"),
            Self::TimedOut => write!(f, "no answer (timed out)"),
            Self::Unreachable => write!(f, "no route from this machine"),
            Self::Network(e) => write!(f, "{e}"),
            Self::Tls(e) => write!(f, "TLS handshake failed: {e}"),
        }
    }
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// `Location`.
    pub location: Option<String>,
    /// The body (at most 256 KiB).
    pub body: Bytes,
}

/// A TLS connection with HTTP/1.1 on it.
pub struct Connection {
    /// What the handshake showed.
    pub facts: TlsFacts,
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    timeout: Duration,
}

/// Makes TLS connections that trust the system's roots and any extra ones.
#[derive(Clone)]
pub struct Connector {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    timeout: Duration,
}

impl Connector {
    /// A connector trusting the system's root certificates plus `extra_roots_pem`.
    pub fn new(extra_roots_pem: Option<&[u8]>, timeout: Duration) -> Result<Self, String> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            // A root the library cannot parse is skipped, as browsers do.
            let _ = roots.add(cert);
        }
        if let Some(pem) = extra_roots_pem {
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("the CA file is not PEM: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("the CA file holds a bad certificate: {e}"))?;
                added += 1;
            }
            if added == 0 {
                return Err("the CA file holds no certificate".to_owned());
            }
        }
        Ok(Self {
            roots: Arc::new(roots),
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            timeout,
        })
    }

    /// Connects to `addr` and shakes hands for `tls_name` (sent as SNI unless it is an IP
    /// address, as the spec says for IP literals).
    pub async fn connect(
        &self,
        addr: SocketAddr,
        tls_name: &str,
    ) -> Result<Connection, ConnectError> {
        let name = ServerName::try_from(tls_name.to_owned())
            .map_err(|e| ConnectError::Tls(format!("`{tls_name}` is not a TLS name: {e}")))?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(self.roots.clone(), self.provider.clone())
                .build()
                .map_err(|e| ConnectError::Tls(format!("no trusted roots: {e}")))?;
        let recording = Arc::new(Recording {
            inner,
            seen: Mutex::new(None),
        });
        let config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ConnectError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(recording.clone())
            .with_no_client_auth();
        let tcp = match tokio::time::timeout(self.timeout, TcpStream::connect(addr)).await {
            Err(_) => return Err(ConnectError::TimedOut),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(ConnectError::Refused);
            }
            Ok(Err(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NetworkUnreachable | std::io::ErrorKind::HostUnreachable
                ) =>
            {
                return Err(ConnectError::Unreachable);
            }
            Ok(Err(e)) => return Err(ConnectError::Network(e.to_string())),
            Ok(Ok(tcp)) => tcp,
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tls = match tokio::time::timeout(self.timeout, connector.connect(name, tcp)).await {
            Err(_) => return Err(ConnectError::Tls("no TLS answer in time".to_owned())),
            Ok(Err(e)) => return Err(ConnectError::Tls(e.to_string())),
            Ok(Ok(tls)) => tls,
        };
        let session = tls.get_ref().1;
        let version = match session.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_owned(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2".to_owned(),
            Some(other) => format!("{other:?}"),
            None => "unknown".to_owned(),
        };
        let suite = session
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default();
        let (chain, issue) = recording
            .seen
            .lock()
            .ok()
            .and_then(|mut seen| seen.take())
            .unwrap_or_default();
        let facts = TlsFacts {
            version,
            suite,
            chain,
            issue,
        };
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| ConnectError::Network(e.to_string()))?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the server closes.
            let _ = connection.await;
        });
        Ok(Connection {
            facts,
            sender,
            timeout: self.timeout,
        })
    }
}

impl Connection {
    /// `GET path` with `Host: host_header`.
    pub async fn get(&mut self, path: &str, host_header: &str) -> Result<Fetched, String> {
        let request = http::Request::get(path)
            .header(http::header::HOST, host_header)
            .header(
                http::header::USER_AGENT,
                concat!("Kith-checker/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let exchange = async {
            self.sender
                .ready()
                .await
                .map_err(|e| format!("the connection closed: {e}"))?;
            let response = self
                .sender
                .send_request(request)
                .await
                .map_err(|e| format!("no HTTP answer: {e}"))?;
            let header = |name: http::header::HeaderName| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let status = response.status().as_u16();
            let content_type = header(http::header::CONTENT_TYPE);
            let cache_control = header(http::header::CACHE_CONTROL);
            let location = header(http::header::LOCATION);
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| format!("reading the answer failed: {e}"))?
                .to_bytes();
            Ok(Fetched {
                status,
                content_type,
                cache_control,
                location,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("no answer to GET {path} in {} s", self.timeout.as_secs()))?
    }
}
