//! Obtaining a certificate from an ACME authority (RFC 8555) with `instant-acme`: the
//! account (made once, kept in the data dir), an order for the server's host, the
//! challenge answered by Kith itself (TLS-ALPN-01 on the federation listener, RFC 8737, or
//! HTTP-01 on a port-80 listener, RFC 8555 section 8.3), and the certificate.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls::{
    crypto::CryptoProvider,
    pki_types::{PrivateKeyDer, pem::PemObject},
    sign::CertifiedKey,
};

use crate::config::AcmeChallenge;

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737, section 6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The answers to challenges in progress, served by the federation listener
/// (TLS-ALPN-01) and the HTTP-01 listener.
#[derive(Default)]
pub struct Challenges {
    /// Host name → the challenge certificate.
    alpn: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    /// Token → key authorization.
    http: Mutex<HashMap<String, String>>,
}

impl Challenges {
    /// The TLS-ALPN-01 certificate for `host`, if a challenge for it is in progress.
    pub fn alpn_certificate(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        self.alpn
            .lock()
            .ok()?
            .get(&host.to_ascii_lowercase())
            .cloned()
    }

    /// The HTTP-01 answer for `token`, if a challenge with it is in progress.
    pub fn http_answer(&self, token: &str) -> Option<String> {
        self.http.lock().ok()?.get(token).cloned()
    }

    fn clear(&self) {
        if let Ok(mut alpn) = self.alpn.lock() {
            alpn.clear();
        }
        if let Ok(mut http) = self.http.lock() {
            http.clear();
        }
    }
}

/// What an order needs.
pub struct Settings {
    /// The directory URL.
    pub directory: String,
    /// A contact email, or empty.
    pub contact: String,
    /// Which challenge to answer.
    pub challenge: AcmeChallenge,
    /// A root for the authority's own HTTPS, or empty for the system's.
    pub ca_file: String,
    /// The name to certify.
    pub host: String,
    /// Where the account's credentials are kept (0600).
    pub account_path: PathBuf,
}

/// The self-signed certificate that answers a TLS-ALPN-01 challenge: for `host`, with the
/// `acmeIdentifier` extension holding the SHA-256 of the key authorization (RFC 8737,
/// section 3).
fn alpn_certificate(
    host: &str,
    digest: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec![host.to_owned()]).map_err(|e| e.to_string())?;
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest));
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let key_der =
        PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).map_err(|e| e.to_string())?;
    // Not `from_der`: its key check parses the certificate with webpki, which refuses the
    // critical acmeIdentifier extension it does not know.
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| e.to_string())?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing_key))
}

fn acme_error(what: &str, e: instant_acme::Error) -> String {
    format!("{what}: {e}")
}

/// instant-acme's HTTP through reqwest.
struct Http(reqwest::Client);

fn other(e: impl std::error::Error + Send + Sync + 'static) -> instant_acme::Error {
    instant_acme::Error::Other(Box::new(e))
}

impl instant_acme::HttpClient for Http {
    fn request(
        &self,
        request: http::Request<instant_acme::BodyWrapper<bytes::Bytes>>,
    ) -> std::pin::Pin<
        Box<dyn Future<Output = Result<instant_acme::BytesResponse, instant_acme::Error>> + Send>,
    > {
        use http_body_util::BodyExt;
        let client = self.0.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(never) => match never {},
            };
            let response = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(other)?;
            let mut head = http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                head = head.header(name, value);
            }
            let body = response.bytes().await.map_err(other)?;
            let (parts, ()) = head.body(()).map_err(other)?.into_parts();
            Ok(instant_acme::BytesResponse {
                parts,
                body: Box::new(body),
            })
        })
    }
}

/// The HTTP client for the authority: the system's roots, or only `ca_file`'s.
fn http_client(settings: &Settings) -> Result<Box<dyn instant_acme::HttpClient>, String> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("Kith/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(30));
    if !settings.ca_file.is_empty() {
        let pem = std::fs::read(&settings.ca_file)
            .map_err(|e| format!("cannot read tls.acme_ca_file: {e}"))?;
        let roots = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("tls.acme_ca_file is not PEM: {e}"))?;
        builder = builder.tls_certs_only(roots);
    }
    let client = builder
        .build()
        .map_err(|e| format!("cannot make an HTTP client for the authority: {e}"))?;
    Ok(Box::new(Http(client)))
}

/// The account: loaded from its credentials, or made and its credentials kept.
async fn account(settings: &Settings) -> Result<Account, String> {
    let builder = || -> Result<instant_acme::AccountBuilder, String> {
        Ok(Account::builder_with_http(http_client(settings)?))
    };
    if let Ok(text) = std::fs::read_to_string(&settings.account_path)
        && let Ok(credentials) = serde_json::from_str::<AccountCredentials>(&text)
    {
        return builder()?
            .from_credentials(credentials)
            .await
            .map_err(|e| acme_error("the stored ACME account cannot be used", e));
    }
    let contact = format!("mailto:{}", settings.contact);
    let contacts: Vec<&str> = if settings.contact.is_empty() {
        Vec::new()
    } else {
        vec![contact.as_str()]
    };
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            settings.directory.clone(),
            None,
        )
        .await
        .map_err(|e| acme_error(&format!("cannot register with {}", settings.directory), e))?;
    let text = serde_json::to_string(&credentials).map_err(|e| e.to_string())?;
    crate::crypto::write_private_file(&settings.account_path, text.as_bytes())
        .map_err(|e| format!("cannot keep the ACME account: {e}"))?;
    Ok(account)
}

/// Orders a certificate for `settings.host`, answering its challenge through
/// `challenges`; `progress` hears each step. The chain and the private key, PEM.
pub async fn obtain(
    settings: &Settings,
    challenges: &Challenges,
    provider: &CryptoProvider,
    progress: impl Fn(String),
) -> Result<(String, String), String> {
    let host = settings.host.to_ascii_lowercase();
    progress(format!(
        "asking {} for a certificate for {host}",
        settings.directory
    ));
    let account = account(settings).await?;
    let identifiers = [Identifier::Dns(host.clone())];
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| acme_error("the authority refused the order", e))?;
    let kind = match settings.challenge {
        AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        AcmeChallenge::Http01 => ChallengeType::Http01,
    };
    let result = async {
        answer_challenges(
            &mut order, settings, challenges, provider, &kind, &host, &progress,
        )
        .await?;
        let retries = RetryPolicy::new()
            .initial_delay(Duration::from_millis(500))
            .timeout(Duration::from_secs(90));
        let status = order.poll_ready(&retries).await.map_err(|e| {
            // The authority's answer to a failed check (instant-acme gives it as an error).
            let detail = match e {
                instant_acme::Error::Api(problem) => problem
                    .detail
                    .clone()
                    .unwrap_or_else(|| problem.to_string()),
                other => other.to_string(),
            };
            not_verified(&host, &detail, settings.challenge)
        })?;
        if status != OrderStatus::Ready {
            return Err(why_invalid(&mut order, &host, settings.challenge).await);
        }
        progress(format!("{host} verified; fetching the certificate"));
        let key_pem = order
            .finalize()
            .await
            .map_err(|e| acme_error("the authority refused to finalize the order", e))?;
        let chain_pem = order
            .poll_certificate(&retries)
            .await
            .map_err(|e| acme_error("the certificate was not issued", e))?;
        Ok((chain_pem, key_pem))
    }
    .await;
    challenges.clear();
    result
}

/// Answers the challenge of each pending authorization of `order`.
async fn answer_challenges(
    order: &mut instant_acme::Order,
    settings: &Settings,
    challenges: &Challenges,
    provider: &CryptoProvider,
    kind: &ChallengeType,
    host: &str,
    progress: &impl Fn(String),
) -> Result<(), String> {
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization =
            authorization.map_err(|e| acme_error("cannot read the authorization", e))?;
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(format!("the authorization of {host} is {other:?}"));
            }
        }
        let mut challenge = authorization.challenge(kind.clone()).ok_or_else(|| {
            format!(
                "the authority offers no {} challenge for {host}",
                settings.challenge.as_str()
            )
        })?;
        let key_authorization = challenge.key_authorization();
        match settings.challenge {
            AcmeChallenge::TlsAlpn01 => {
                let certificate =
                    alpn_certificate(host, key_authorization.digest().as_ref(), provider)?;
                if let Ok(mut alpn) = challenges.alpn.lock() {
                    alpn.insert(host.to_owned(), Arc::new(certificate));
                }
            }
            AcmeChallenge::Http01 => {
                if let Ok(mut http) = challenges.http.lock() {
                    http.insert(
                        challenge.token.clone(),
                        key_authorization.as_str().to_owned(),
                    );
                }
            }
        }
        progress(format!(
            "answering the {} challenge for {host}",
            settings.challenge.as_str()
        ));
        challenge
            .set_ready()
            .await
            .map_err(|e| acme_error("cannot tell the authority the challenge is ready", e))?;
    }
    Ok(())
}

/// Why the authority refused: the challenge's error, in the authority's words, and what
/// usually causes it.
async fn why_invalid(
    order: &mut instant_acme::Order,
    host: &str,
    challenge: AcmeChallenge,
) -> String {
    let mut detail = String::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(authorization)) = authorizations.next().await {
        for found in &authorization.challenges {
            if let Some(problem) = &found.error {
                detail = problem
                    .detail
                    .clone()
                    .or_else(|| problem.r#type.clone())
                    .unwrap_or_default();
            }
        }
    }
    not_verified(host, &detail, challenge)
}

/// "The authority could not verify HOST (what it said): what it needs".
fn not_verified(host: &str, detail: &str, challenge: AcmeChallenge) -> String {
    let hint = match challenge {
        AcmeChallenge::TlsAlpn01 => format!(
            "the authority must reach this server's federation listener at {host}, port 443"
        ),
        AcmeChallenge::Http01 => format!(
            "the authority must reach this server at http://{host}/ on port 80 (tls.acme_http_listen)"
        ),
    };
    if detail.is_empty() {
        format!("the authority could not verify {host}: {hint}")
    } else {
        format!("the authority could not verify {host} ({detail}): {hint}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alpn_certificate_carries_the_acme_identifier_for_the_host() {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let certified = alpn_certificate("example.org", &[7u8; 32], &provider).expect("made");
        let der = certified.cert[0].as_ref();
        let (_, cert) = x509_parser::parse_x509_certificate(der).expect("parses");
        // id-pe-acmeIdentifier, 1.3.6.1.5.5.7.1.31, critical, an OCTET STRING of the digest.
        let extension = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("the acmeIdentifier extension");
        assert!(extension.critical);
        assert_eq!(extension.value, [&[0x04, 32][..], &[7u8; 32]].concat());
    }
}
