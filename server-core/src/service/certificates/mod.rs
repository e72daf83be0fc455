//! The federation listener's certificate: where it comes from (made here, the user's own
//! files, or an ACME authority), what it is valid for and until when, and swapping it
//! without a restart. The
//! listener asks [`Certificates::resolver`] for the certificate of each handshake, so a
//! new one is served from the next connection on while open connections carry on.
//!
//! Own files are checked at load: both parse, the key belongs to the certificate, and it
//! has not expired (each of these refuses the files); the chain leads to an authority this
//! machine trusts and the names cover the server's host (each of these is a warning, since
//! a private federation may use its own CA). They are watched, and reloaded when they
//! change; a bad replacement keeps the old certificate and says why.
//!
//! With ACME (`acme.rs`), a temporary self-signed certificate is served until the first
//! one is issued; the certificate is renewed from 30 days before its end, and a failure is
//! retried after a minute, doubling up to a day. Progress and failures are events.

pub mod acme;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::SystemTime,
};

use rustls::{
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use serde::Serialize;
use tokio::sync::broadcast;

use super::checker::certificate;
use crate::{
    config::{Config, TlsMode},
    crypto,
    error::{Error, Result},
};

/// A certificate this close to its end fires [`CertificateEventKind::ExpiringSoon`].
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// What the served certificate is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct CertificateStatus {
    /// "self-signed" or "files".
    pub source: String,
    /// The DNS names and IP addresses it covers.
    pub names: Vec<String>,
    /// Its end, in seconds since the Unix epoch.
    #[cfg_attr(test, ts(type = "number"))]
    pub not_after: i64,
    /// Whole days until then (negative once past).
    #[cfg_attr(test, ts(type = "number"))]
    pub days_left: i64,
    /// What is wrong with it that does not stop it being served.
    pub warnings: Vec<String>,
}

/// What happened to the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateEventKind {
    /// A new certificate is being served.
    Loaded,
    /// A step of obtaining one from the ACME authority.
    Progress,
    /// It expires within [`EXPIRY_WARNING_DAYS`].
    ExpiringSoon,
    /// A new one could not be loaded or obtained; the old one stays.
    Failed,
}

/// A certificate event, for the wizard and the tray.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateEvent {
    /// What happened.
    pub kind: CertificateEventKind,
    /// One sentence about it.
    pub message: String,
}

/// The federation certificate. Cheap to clone.
#[derive(Clone)]
pub struct Certificates {
    inner: Arc<Inner>,
}

/// Where the certificates are kept in the data dir.
pub struct CertificateFiles {
    /// The self-signed certificate and key ("self-signed" mode).
    pub self_signed: (PathBuf, PathBuf),
    /// The ACME account, certificate and key ("acme" mode).
    pub acme_dir: PathBuf,
}

/// Renewal starts this many days before the end.
pub const RENEW_DAYS: i64 = 30;

struct Inner {
    mode: TlsMode,
    acme: Option<acme::Settings>,
    challenges: acme::Challenges,
    cert_path: PathBuf,
    key_path: PathBuf,
    host: String,
    provider: Arc<CryptoProvider>,
    current: RwLock<Option<Arc<CertifiedKey>>>,
    status: RwLock<Option<CertificateStatus>>,
    /// The files' modification times when last loaded.
    loaded: Mutex<Option<(SystemTime, SystemTime)>>,
    /// The files' modification times (or absence) when last refused.
    refused: Mutex<Option<(Option<SystemTime>, Option<SystemTime>)>>,
    /// The `not_after` already warned about.
    warned_expiry: Mutex<Option<i64>>,
    events: broadcast::Sender<CertificateEvent>,
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// A certificate chain and key from PEM text, checked: both parse, the chain is not empty,
/// the key belongs to its first certificate, and it has not expired. The chain's
/// certificates, the key, and the leaf's summary.
fn parse_pair(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_name: &str,
    key_name: &str,
    provider: &CryptoProvider,
) -> std::result::Result<(CertifiedKey, super::checker::report::CertificateSummary), String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("{cert_name} is not a PEM certificate chain: {e}"))?;
    let Some(leaf) = chain.first() else {
        return Err(format!("{cert_name} holds no certificate"));
    };
    let summary = certificate::summarise(leaf);
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("{key_name} is not a PEM private key: {e}"))?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            format!(
                "the private key in {key_name} does not belong to the certificate in {cert_name}"
            )
        }
        other => format!("{key_name} cannot be used: {other}"),
    })?;
    if summary.not_after <= now_secs() {
        return Err(format!(
            "the certificate in {cert_name} expired {} days ago",
            (now_secs() - summary.not_after) / 86_400
        ));
    }
    Ok((certified, summary))
}

/// What is wrong with a served chain short of refusing it: not leading to a trusted
/// authority (often a missing intermediate), or not covering `host`.
fn chain_warnings(
    certified: &CertifiedKey,
    summary: &super::checker::report::CertificateSummary,
    host: &str,
    provider: &Arc<CryptoProvider>,
) -> Vec<String> {
    let mut warnings = Vec::new();
    if !certificate::covers(summary, host) {
        let names = summary
            .dns_names
            .iter()
            .chain(&summary.ip_addresses)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        warnings.push(format!(
            "the certificate is for {names}, not for {host}: other servers will refuse it"
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    for root in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(root);
    }
    let trusted = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .ok()
    .zip(ServerName::try_from(host.to_owned()).ok())
    .zip(certified.cert.split_first())
    .map(|((verifier, name), (leaf, intermediates))| {
        use rustls::client::danger::ServerCertVerifier;
        !matches!(
            verifier.verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now()),
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        )
    })
    .unwrap_or(true);
    if !trusted {
        warnings.push(
            "the chain does not lead to an authority this machine trusts: if the certificate \
             is from a public authority, the file lacks its intermediate certificates (use the \
             \"fullchain\" file); other servers will refuse a self-made or private one"
                .to_owned(),
        );
    }
    warnings
}

impl Certificates {
    /// The certificate for `config`, loaded now: made on first start (self-signed) or read
    /// from the user's files (whose problems refuse the start).
    /// With ACME, the certificate kept from last time, or a temporary self-signed one.
    pub fn load(config: &Config, files: CertificateFiles) -> Result<Self> {
        let (cert_path, key_path) = match config.tls.mode {
            TlsMode::SelfSigned => files.self_signed,
            TlsMode::Files => (
                PathBuf::from(&config.tls.certificate),
                PathBuf::from(&config.tls.private_key),
            ),
            TlsMode::Acme => (
                files.acme_dir.join("certificate.pem"),
                files.acme_dir.join("private_key.pem"),
            ),
            TlsMode::Proxy => {
                return Err(Error::internal(
                    "with tls.mode \"proxy\" the reverse proxy holds the certificate",
                ));
            }
        };
        let acme = (config.tls.mode == TlsMode::Acme).then(|| acme::Settings {
            directory: config.tls.acme_directory.clone(),
            contact: config.tls.acme_contact.clone(),
            challenge: config.tls.acme_challenge,
            ca_file: config.tls.acme_ca_file.clone(),
            host: config.certificate_host(),
            account_path: files.acme_dir.join("account.json"),
        });
        let certificates = Self {
            inner: Arc::new(Inner {
                mode: config.tls.mode,
                acme,
                challenges: acme::Challenges::default(),
                cert_path,
                key_path,
                host: config.certificate_host(),
                provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
                current: RwLock::new(None),
                status: RwLock::new(None),
                loaded: Mutex::new(None),
                refused: Mutex::new(None),
                warned_expiry: Mutex::new(None),
                events: broadcast::channel(16).0,
            }),
        };
        if config.tls.mode == TlsMode::SelfSigned {
            crypto::load_or_create_self_signed(
                &certificates.inner.cert_path,
                &certificates.inner.key_path,
                &certificates.inner.host,
            )?;
        }
        if config.tls.mode == TlsMode::Acme {
            if let Err(why) = certificates.load_files() {
                if certificates.inner.cert_path.exists() {
                    tracing::warn!(%why, "the kept ACME certificate cannot be served");
                }
                certificates.serve_temporary()?;
            }
        } else {
            certificates.load_files().map_err(Error::internal)?;
        }
        Ok(certificates)
    }

    /// Serves a self-signed certificate made in memory until ACME gives a real one.
    fn serve_temporary(&self) -> Result<()> {
        let host = &self.inner.host;
        let made = rcgen::generate_simple_self_signed(vec![host.clone()])
            .map_err(|e| Error::internal(format!("cannot make a TLS certificate: {e}")))?;
        let (certified, summary) = parse_pair(
            made.cert.pem().as_bytes(),
            made.signing_key.serialize_pem().as_bytes(),
            "the temporary certificate",
            "its key",
            &self.inner.provider,
        )
        .map_err(Error::internal)?;
        if let Ok(mut current) = self.inner.current.write() {
            *current = Some(Arc::new(certified));
        }
        if let Ok(mut slot) = self.inner.status.write() {
            *slot = Some(CertificateStatus {
                source: TlsMode::SelfSigned.as_str().to_owned(),
                names: summary.dns_names,
                not_after: summary.not_after,
                days_left: (summary.not_after - now_secs()).div_euclid(86_400),
                warnings: vec![
                    "no certificate from the ACME authority yet: a temporary self-signed one is \
                     served meanwhile, which other servers refuse"
                        .to_owned(),
                ],
            });
        }
        Ok(())
    }

    /// Whether ACME should be asked now: nothing from it yet, or its certificate is within
    /// [`RENEW_DAYS`] of its end.
    fn acme_due(&self) -> bool {
        match self.status() {
            Some(status) if status.source == TlsMode::Acme.as_str() => {
                status.days_left <= RENEW_DAYS
            }
            _ => true,
        }
    }

    /// Obtains a certificate from the ACME authority and serves it.
    pub async fn obtain_from_acme(&self) -> std::result::Result<(), String> {
        let Some(settings) = &self.inner.acme else {
            return Err("tls.mode is not \"acme\"".to_owned());
        };
        let (chain_pem, key_pem) = acme::obtain(
            settings,
            &self.inner.challenges,
            &self.inner.provider,
            |message| self.event(CertificateEventKind::Progress, message),
        )
        .await?;
        // Checked before anything is replaced.
        parse_pair(
            chain_pem.as_bytes(),
            key_pem.as_bytes(),
            "the issued certificate",
            "its key",
            &self.inner.provider,
        )?;
        // File writes and the trust check (which reads the system's roots) block.
        let certificates = self.clone();
        tokio::task::spawn_blocking(move || {
            let inner = &certificates.inner;
            crypto::write_private_file(&inner.key_path, key_pem.as_bytes())
                .map_err(|e| format!("cannot keep the certificate's key: {e}"))?;
            crypto::write_private_file(&inner.cert_path, chain_pem.as_bytes())
                .map_err(|e| format!("cannot keep the certificate: {e}"))?;
            certificates.load_files()
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Keeps an ACME certificate: obtains one when none is served or the served one is
    /// within [`RENEW_DAYS`] of its end; retries failures after a minute, doubling up to a
    /// day. Runs until dropped.
    pub async fn run_acme(self) {
        if self.inner.acme.is_none() {
            return;
        }
        let mut failures: u32 = 0;
        loop {
            if !self.acme_due() {
                let days = self.status().map_or(0, |s| s.days_left - RENEW_DAYS);
                let wait = std::time::Duration::from_secs(
                    u64::try_from(days.max(0)).unwrap_or(0) * 86_400,
                );
                tokio::time::sleep(wait.min(std::time::Duration::from_secs(12 * 3600))).await;
                continue;
            }
            match self.obtain_from_acme().await {
                Ok(()) => failures = 0,
                Err(why) => {
                    failures = failures.saturating_add(1);
                    let wait = std::time::Duration::from_secs(60)
                        .saturating_mul(1u32 << (failures - 1).min(11))
                        .min(std::time::Duration::from_secs(86_400));
                    self.event(
                        CertificateEventKind::Failed,
                        format!(
                            "no certificate from the ACME authority: {why}; trying again in {} min",
                            wait.as_secs() / 60
                        ),
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// The answer to an HTTP-01 challenge in progress.
    pub fn http_challenge(&self, token: &str) -> Option<String> {
        self.inner.challenges.http_answer(token)
    }

    /// Whether challenge files must be served over HTTP (ACME with HTTP-01).
    pub fn serves_http_challenges(&self) -> bool {
        self.inner
            .acme
            .as_ref()
            .is_some_and(|a| a.challenge == crate::config::AcmeChallenge::Http01)
    }

    /// The resolver the TLS listener asks for each handshake.
    pub fn resolver(&self) -> Arc<dyn ResolvesServerCert> {
        Arc::new(Resolver {
            inner: self.inner.clone(),
        })
    }

    /// What is being served.
    pub fn status(&self) -> Option<CertificateStatus> {
        let mut status = self.inner.status.read().ok()?.clone()?;
        status.days_left = (status.not_after - now_secs()).div_euclid(86_400);
        Some(status)
    }

    /// Certificate events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<CertificateEvent> {
        self.inner.events.subscribe()
    }

    /// Whether the certificate comes from files to watch.
    pub fn watches_files(&self) -> bool {
        self.inner.mode == TlsMode::Files
    }

    fn event(&self, kind: CertificateEventKind, message: String) {
        match kind {
            CertificateEventKind::Failed => tracing::warn!(%message, "certificate"),
            _ => tracing::info!(%message, "certificate"),
        }
        let _ = self.inner.events.send(CertificateEvent { kind, message });
    }

    /// Reads, checks and serves the certificate files.
    fn load_files(&self) -> std::result::Result<(), String> {
        let inner = &self.inner;
        let times = (modified(&inner.cert_path), modified(&inner.key_path));
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let cert_pem = read(&inner.cert_path)?;
        let key_pem = read(&inner.key_path)?;
        let (certified, summary) = parse_pair(
            &cert_pem,
            &key_pem,
            &inner.cert_path.display().to_string(),
            &inner.key_path.display().to_string(),
            &inner.provider,
        )?;
        let warnings = if inner.mode == TlsMode::SelfSigned {
            vec![
                "the certificate is self-signed: servers on the internet will not federate \
                 with this server (fine for a LAN, tests and private federations)"
                    .to_owned(),
            ]
        } else {
            chain_warnings(&certified, &summary, &inner.host, &inner.provider)
        };
        let status = CertificateStatus {
            source: inner.mode.as_str().to_owned(),
            names: summary
                .dns_names
                .iter()
                .chain(&summary.ip_addresses)
                .cloned()
                .collect(),
            not_after: summary.not_after,
            days_left: (summary.not_after - now_secs()).div_euclid(86_400),
            warnings,
        };
        if let Ok(mut current) = inner.current.write() {
            *current = Some(Arc::new(certified));
        }
        if let Ok(mut slot) = inner.status.write() {
            *slot = Some(status.clone());
        }
        if let (Ok(mut loaded), (Some(cert), Some(key))) = (inner.loaded.lock(), times) {
            *loaded = Some((cert, key));
        }
        let mut message = format!(
            "serving the {} certificate for {} ({} days left)",
            status.source,
            status.names.join(", "),
            status.days_left
        );
        for warning in &status.warnings {
            message.push_str("; ");
            message.push_str(warning);
        }
        self.event(CertificateEventKind::Loaded, message);
        self.check_expiry();
        Ok(())
    }

    /// Reloads the files if either changed since they were loaded; a bad replacement keeps
    /// the served certificate and fires [`CertificateEventKind::Failed`]. Whether a new
    /// certificate is served.
    pub fn reload_if_changed(&self) -> bool {
        if self.inner.mode != TlsMode::Files {
            return false;
        }
        let now = (
            modified(&self.inner.cert_path),
            modified(&self.inner.key_path),
        );
        let loaded = self.inner.loaded.lock().ok().and_then(|l| *l);
        if let (Some(cert), Some(key)) = now
            && loaded == Some((cert, key))
        {
            return false;
        }
        if self.inner.refused.lock().ok().and_then(|r| *r) == Some(now) {
            // These very files were refused already; wait for them to change again.
            return false;
        }
        match self.load_files() {
            Ok(()) => true,
            Err(why) => {
                if let Ok(mut refused) = self.inner.refused.lock() {
                    *refused = Some(now);
                }
                self.event(
                    CertificateEventKind::Failed,
                    format!("the new certificate files were not loaded, the old certificate stays: {why}"),
                );
                false
            }
        }
    }

    /// Fires [`CertificateEventKind::ExpiringSoon`] once per certificate when it has
    /// [`EXPIRY_WARNING_DAYS`] or fewer left.
    pub fn check_expiry(&self) {
        let Some(status) = self.status() else {
            return;
        };
        if status.days_left > EXPIRY_WARNING_DAYS {
            return;
        }
        let Ok(mut warned) = self.inner.warned_expiry.lock() else {
            return;
        };
        if *warned == Some(status.not_after) {
            return;
        }
        *warned = Some(status.not_after);
        drop(warned);
        self.event(
            CertificateEventKind::ExpiringSoon,
            format!(
                "the certificate for {} expires in {} days: renew it",
                status.names.join(", "),
                status.days_left
            ),
        );
    }
}

#[derive(Debug)]
struct Resolver {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("mode", &self.mode)
            .finish()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // RFC 8737, section 3: a handshake offering only "acme-tls/1" is the authority
        // checking a TLS-ALPN-01 challenge.
        let acme = hello.alpn().is_some_and(|protocols| {
            let offered: Vec<&[u8]> = protocols.collect();
            offered == [acme::ACME_TLS_ALPN]
        });
        if acme {
            return self.inner.challenges.alpn_certificate(hello.server_name()?);
        }
        self.inner.current.read().ok()?.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("a key");
        let params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .expect("params");
        let cert = params.self_signed(&key).expect("a certificate");
        (cert.pem(), key.serialize_pem())
    }

    fn provider() -> CryptoProvider {
        rustls::crypto::aws_lc_rs::default_provider()
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_with_both_file_names() {
        let (cert, _) = pair(&["example.org"]);
        let (_, other_key) = pair(&["example.org"]);
        let error = parse_pair(
            cert.as_bytes(),
            other_key.as_bytes(),
            "fullchain.pem",
            "privkey.pem",
            &provider(),
        )
        .expect_err("refused");
        assert_eq!(
            error,
            "the private key in privkey.pem does not belong to the certificate in fullchain.pem"
        );
    }

    #[test]
    fn garbage_is_refused_and_a_good_pair_is_read() {
        let (cert, key) = pair(&["example.org"]);
        let error = parse_pair(b"hello", key.as_bytes(), "c.pem", "k.pem", &provider())
            .expect_err("refused");
        assert_eq!(error, "c.pem holds no certificate");
        let (_, summary) = parse_pair(cert.as_bytes(), key.as_bytes(), "c", "k", &provider())
            .expect("a good pair");
        assert_eq!(summary.dns_names, ["example.org"]);
    }

    #[test]
    fn a_self_made_chain_for_another_name_gets_both_warnings() {
        let (cert, key) = pair(&["other.example"]);
        let provider = Arc::new(provider());
        let (certified, summary) =
            parse_pair(cert.as_bytes(), key.as_bytes(), "c", "k", &provider).expect("a pair");
        let warnings = chain_warnings(&certified, &summary, "example.org", &provider);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("is for other.example, not for example.org"));
        assert!(warnings[1].contains("does not lead to an authority this machine trusts"));
    }
}
