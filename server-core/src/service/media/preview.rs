//! Fetching pages for URL previews without letting users reach what they should not.
//!
//! Every address the fetch connects to must be public ([`crate::net::is_public`]). The check
//! runs after DNS resolution, in the HTTP client's resolver, so a name that resolves to a
//! private address (or re-resolves to one: DNS rebinding) is refused at connect time.
//! Redirects are not followed by the client: each hop is checked and followed here, a
//! bounded number of times. Bodies are read up to a bound, and the whole preview has a
//! deadline (in the media service).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use reqwest::{
    Url,
    dns::{Addrs, Name, Resolve, Resolving},
    header,
};

use crate::error::{Error, ErrorKind, Result};
use crate::net::is_public;

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 5;

/// What a URL gave.
pub enum Fetched {
    /// An HTML page (at most the first bytes of it, as text).
    Html(String),
    /// An image, whole, with its declared content type.
    Image {
        /// The bytes.
        bytes: Vec<u8>,
        /// The response's content type (an `image/*` type).
        content_type: String,
    },
    /// Something else; the preview is empty.
    Other,
}

/// The resolver that drops non-public addresses (unless private ones are allowed).
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(resolve_public(name.as_str().to_owned(), self.allow_private))
    }
}

async fn resolve_public(
    host: String,
    allow_private: bool,
) -> Result<Addrs, Box<dyn std::error::Error + Send + Sync>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
        .await?
        .filter(|addr| allow_private || is_public(addr.ip()))
        .collect();
    if addrs.is_empty() {
        return Err(format!("{host} has no public address").into());
    }
    Ok(Box::new(addrs.into_iter()))
}

/// The URL preview fetcher. Cheap to clone.
#[derive(Clone)]
pub struct Previewer {
    client: reqwest::Client,
    allow_private: bool,
}

fn refused() -> Error {
    Error::forbidden("URL previews may not fetch from private or special addresses.")
}

fn bad_gateway(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::BadGateway, message)
}

impl Previewer {
    /// Builds the fetcher; `allow_private` lifts the address check (tests, closed networks).
    pub fn new(allow_private: bool) -> Result<Self> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .redirect(reqwest::redirect::Policy::none())
            // A proxy from the environment would connect on our behalf, past the check.
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .user_agent("Kith URL preview (Matrix homeserver)")
            .build()
            .map_err(|e| Error::internal(format!("URL preview client: {e}")))?;
        Ok(Self {
            client,
            allow_private,
        })
    }

    /// Refuses URLs that are not http(s), and hosts that are (or only resolve to)
    /// non-public addresses. The resolver checks again at connect time; this check gives
    /// the caller a clear error instead of a failed connection.
    async fn check(&self, url: &Url) -> Result<()> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::invalid_param(
                "Only http and https URLs can be previewed.",
            ));
        }
        if self.allow_private {
            return Ok(());
        }
        let host = url
            .host_str()
            .ok_or_else(|| Error::invalid_param("The URL has no host."))?;
        // An IPv6 literal comes bracketed.
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<std::net::IpAddr>() {
            return if is_public(ip) {
                Ok(())
            } else {
                Err(refused())
            };
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|_| bad_gateway("The URL's host could not be resolved."))?
            .collect();
        if addrs.iter().any(|a| is_public(a.ip())) {
            Ok(())
        } else {
            Err(refused())
        }
    }

    /// Fetches `url`, following redirects by hand, reading at most `max_html_bytes` of an
    /// HTML body (the page is cut there) and `max_image_bytes` of an image (a larger one is
    /// refused). Returns the final URL too.
    pub async fn fetch(
        &self,
        url: &str,
        max_html_bytes: usize,
        max_image_bytes: usize,
    ) -> Result<(Url, Fetched)> {
        let mut url = Url::parse(url).map_err(|_| Error::invalid_param("The URL is not valid."))?;
        for _ in 0..=MAX_REDIRECTS {
            self.check(&url).await?;
            let mut response = self
                .client
                .get(url.clone())
                .header(header::ACCEPT, "text/html, image/*;q=0.9, */*;q=0.1")
                .send()
                .await
                .map_err(|e| {
                    tracing::debug!(%url, error = %e, "URL preview fetch failed");
                    bad_gateway("The URL could not be fetched.")
                })?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| bad_gateway("A redirect without a location."))?;
                url = url
                    .join(location)
                    .map_err(|_| bad_gateway("A redirect to an invalid URL."))?;
                continue;
            }
            if !status.is_success() {
                return Err(bad_gateway(format!("The URL answered {status}.")));
            }
            let content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase();
            let essence = content_type
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_owned();
            let is_html = essence == "text/html" || essence == "application/xhtml+xml";
            let is_image = essence.starts_with("image/");
            if !is_html && !is_image {
                return Ok((url, Fetched::Other));
            }
            let max_bytes = if is_html {
                max_html_bytes
            } else {
                max_image_bytes
            };
            let mut body = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|_| bad_gateway("The URL's body could not be read."))?
            {
                if body.len() + chunk.len() > max_bytes {
                    if is_image {
                        return Err(Error::new(
                            ErrorKind::TooLarge,
                            "The image is too large to preview.",
                        ));
                    }
                    body.extend_from_slice(&chunk[..max_bytes - body.len()]);
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            let fetched = if is_html {
                Fetched::Html(String::from_utf8_lossy(&body).into_owned())
            } else {
                Fetched::Image {
                    bytes: body,
                    content_type: essence,
                }
            };
            return Ok((url, fetched));
        }
        Err(bad_gateway("The URL redirects too many times."))
    }
}
