//! Federation: talking to other servers (spec: server-server-api.md).
//!
//! Outbound, [`Federation::request`] finds a server by the spec's discovery steps
//! ([`discovery`]), connects over TLS (certificates checked unless the config turns that
//! off), signs the request with our key (X-Matrix, `destination` included) and returns the
//! JSON answer. Addresses that are not public are refused unless the config allows them, so
//! a remote server name cannot point us at the LAN. Inbound, the api layer verifies X-Matrix
//! signatures with the keys [`keys`] fetches, verifies and keeps.

pub mod discovery;
pub mod keys;
pub mod multipart;
mod rooms;
mod sender;
pub use sender::STALE_PDU;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use reqwest::{
    Method, Url,
    dns::{Addrs, Name, Resolve, Resolving},
    header,
};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedServerName, OwnedServerSigningKeyId, ServerName,
    api::federation::authentication::XMatrix, serde::Base64, signatures::KeyPair,
};
use serde_json::{Value, json};

use self::discovery::{Destination, Lookups, WellKnown};
use super::ServerIdentity;
use crate::{
    config::Config,
    error::{Error, ErrorKind, Result},
    net::is_public,
    storage::Store,
};

/// An answer as it came: see [`Federation::get`].
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The HTTP status.
    pub status: u16,
    /// The `Content-Type` header ("" if none).
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
}

/// A media item fetched from another server.
#[derive(Debug, Clone)]
pub struct RemoteMedia {
    /// The `Content-Type` the other server gave, unchecked.
    pub content_type: Option<String>,
    /// The file name from its `Content-Disposition`, if any.
    pub filename: Option<String>,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// How long a media download's bytes may take to arrive.
const MEDIA_BODY_TIMEOUT: Duration = Duration::from_secs(120);
/// Redirects followed after a media download's `Location`, at most.
const MAX_MEDIA_REDIRECTS: usize = 5;
/// The largest JSON answer read from another server.
const MAX_JSON_BYTES: usize = 16 * 1024 * 1024;
/// The longest a federation request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest well-known answer read.
const WELL_KNOWN_MAX_BYTES: usize = 64 * 1024;

/// The federation client and key store. Cheap to clone.
#[derive(Clone)]
pub struct Federation {
    inner: Arc<Inner>,
}

struct Inner {
    identity: Arc<ServerIdentity>,
    store: Store,
    resolver: discovery::Resolver,
    /// Federation API requests: no redirects. Both clients are made on first use: their
    /// TLS setup (the system's trusted certificates) costs memory that a server which has
    /// not federated yet need not hold.
    client: OnceLock<reqwest::Client>,
    /// Well-known fetches: a few redirects.
    well_known_client: OnceLock<reqwest::Client>,
    /// What both clients are made with.
    dns: Arc<FederationDns>,
    verify_certificates: bool,
    /// Certificate name → the host to connect to instead (an SRV target).
    overrides: Arc<Mutex<HashMap<String, String>>>,
    allow_private: bool,
    key_fetches: keys::Fetches,
    senders: sender::Senders,
}

/// The HTTP client's resolver: SRV overrides first, then hickory; non-public addresses are
/// dropped unless allowed (checked after resolution, so DNS rebinding cannot slip past).
struct FederationDns {
    resolver: discovery::Resolver,
    overrides: Arc<Mutex<HashMap<String, String>>>,
    allow_private: bool,
}

impl Resolve for FederationDns {
    fn resolve(&self, name: Name) -> Resolving {
        let host = self
            .overrides
            .lock()
            .ok()
            .and_then(|o| o.get(name.as_str()).cloned())
            .unwrap_or_else(|| name.as_str().to_owned());
        let resolver = self.resolver.clone();
        let allow_private = self.allow_private;
        Box::pin(async move {
            let ips = resolver.lookup_ip(&host).await?;
            let addrs: Vec<SocketAddr> = ips
                .into_iter()
                .filter(|ip| allow_private || is_public(*ip))
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            if addrs.is_empty() {
                return Err(format!(
                    "{host} has no public address (federation to private addresses is off)"
                )
                .into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The real network behind [`discovery::plan`].
struct NetLookups<'a> {
    federation: &'a Federation,
}

impl Lookups for NetLookups<'_> {
    async fn well_known(&self, host: &str) -> WellKnown {
        self.federation.fetch_well_known(host).await
    }
    async fn srv(&self, name: &str) -> Option<(String, u16)> {
        self.federation.inner.resolver.srv(name).await
    }
}

fn unreachable(server: &str, why: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::BadGateway,
        format!("Could not reach {server}: {why}"),
    )
}

impl Federation {
    /// Builds the client from the config.
    pub fn new(config: &Config, identity: Arc<ServerIdentity>, store: Store) -> Result<Self> {
        let resolver = discovery::Resolver::new().map_err(Error::internal)?;
        let overrides = Arc::new(Mutex::new(HashMap::new()));
        let allow_private = config.federation.allow_private_addresses;
        let dns = Arc::new(FederationDns {
            resolver: resolver.clone(),
            overrides: overrides.clone(),
            allow_private,
        });
        Ok(Self {
            inner: Arc::new(Inner {
                identity,
                store,
                resolver,
                client: OnceLock::new(),
                well_known_client: OnceLock::new(),
                dns,
                verify_certificates: config.federation.verify_certificates,
                overrides,
                allow_private,
                key_fetches: keys::Fetches::default(),
                senders: sender::Senders::default(),
            }),
        })
    }

    /// The HTTP client for federation requests (`redirects: false`) or well-known fetches.
    fn http(&self, redirects: bool) -> Result<&reqwest::Client> {
        let cell = if redirects {
            &self.inner.well_known_client
        } else {
            &self.inner.client
        };
        if let Some(client) = cell.get() {
            return Ok(client);
        }
        let policy = if redirects {
            reqwest::redirect::Policy::limited(5)
        } else {
            reqwest::redirect::Policy::none()
        };
        let client = reqwest::Client::builder()
            .user_agent(concat!("Kith/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(self.inner.dns.clone())
            .danger_accept_invalid_certs(!self.inner.verify_certificates)
            .redirect(policy)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(Error::internal)?;
        // Two first uses at once each make one; the first stored is kept.
        Ok(cell.get_or_init(|| client))
    }

    /// Our server name.
    pub fn server_name(&self) -> &ServerName {
        &self.inner.identity.server_name
    }

    /// Where and how to reach `server` (cached).
    pub async fn destination(&self, server: &ServerName) -> Result<Destination> {
        let name = server.as_str();
        if let Some(destination) = self.inner.resolver.cached(name) {
            return Ok(destination);
        }
        let (destination, lifetime) = discovery::plan(&NetLookups { federation: self }, name)
            .await
            .map_err(|why| unreachable(name, why))?;
        let lifetime = match lifetime {
            Some(lifetime) => {
                self.inner.resolver.succeeded(name);
                lifetime
            }
            None => self.inner.resolver.failure_lifetime(name),
        };
        tracing::debug!(
            server = name,
            ?destination,
            ?lifetime,
            "resolved server name"
        );
        self.inner
            .resolver
            .remember(name, destination.clone(), lifetime);
        Ok(destination)
    }

    /// Step 3's fetch: `https://<host>/.well-known/matrix/server`.
    async fn fetch_well_known(&self, host: &str) -> WellKnown {
        let url = format!("https://{host}/.well-known/matrix/server");
        let client = match self.http(true) {
            Ok(client) => client,
            Err(e) => return WellKnown::Invalid(format!("GET {url}: {e}")),
        };
        let response = match client.get(&url).send().await {
            Ok(response) => response,
            Err(e) => return WellKnown::Invalid(format!("GET {url}: {e}")),
        };
        if !response.status().is_success() {
            return WellKnown::Invalid(format!("GET {url}: HTTP {}", response.status()));
        }
        let max_age = discovery::cache_max_age(
            response
                .headers()
                .get(header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok()),
        );
        let body = match read_limited(response, WELL_KNOWN_MAX_BYTES).await {
            Ok(body) => body,
            Err(e) => return WellKnown::Invalid(format!("GET {url}: {e}")),
        };
        let server = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("m.server")?.as_str().map(str::to_owned));
        match server {
            Some(server) if ServerName::parse(&server).is_ok() => {
                WellKnown::Delegated { server, max_age }
            }
            Some(server) => WellKnown::Invalid(format!("m.server `{server}` is not a server name")),
            None => WellKnown::Invalid(format!("{url} has no m.server string")),
        }
    }

    /// Sends a request to `server` and returns its JSON answer. Requests are signed
    /// (X-Matrix) unless `signed` is false (the key and version endpoints need no signature).
    ///
    /// A Matrix error from the other server becomes the same kind of error here when it is
    /// one a client can act on (`M_NOT_FOUND`, `M_FORBIDDEN`); anything else, including not
    /// reaching it, is 502.
    pub async fn request(
        &self,
        server: &ServerName,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        signed: bool,
    ) -> Result<Value> {
        let name = server.as_str();
        let response = self
            .send(server, method.clone(), path, query, body, signed)
            .await?;
        let status = response.status();
        let bytes = read_limited(response, MAX_JSON_BYTES)
            .await
            .map_err(|e| unreachable(name, e))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                Error::new(
                    ErrorKind::BadGateway,
                    format!("{name} answered {method} {path} with something that is not JSON: {e}"),
                )
            });
        }
        Err(remote_error(name, &method, path, status, &bytes))
    }

    /// Sends a request to `server` (discovery, the address policy, the Host header and
    /// the X-Matrix signature) and returns the response whatever its status.
    async fn send(
        &self,
        server: &ServerName,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        signed: bool,
    ) -> Result<reqwest::Response> {
        self.send_within(server, method, path, query, body, signed, REQUEST_TIMEOUT)
            .await
    }

    /// [`Federation::send`] with its own time limit for the whole exchange.
    #[allow(clippy::too_many_arguments)]
    async fn send_within(
        &self,
        server: &ServerName,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        signed: bool,
        timeout: Duration,
    ) -> Result<reqwest::Response> {
        let name = server.as_str();
        if server == self.server_name() {
            return Err(Error::internal(
                "a federation request to ourselves; the caller should have answered locally",
            ));
        }
        let destination = self.destination(server).await?;
        if let Ok(ip) = destination.connect_host.parse::<IpAddr>()
            && !self.inner.allow_private
            && !is_public(ip)
        {
            return Err(unreachable(
                name,
                format!("{ip} is not a public address (federation to private addresses is off)"),
            ));
        }
        // The resolver connects to the SRV target while TLS checks the delegated name; a
        // name whose SRV record went away (its discovery expired) loses its override.
        if let Ok(mut overrides) = self.inner.overrides.lock() {
            if destination.connect_host == destination.tls_name {
                overrides.remove(&destination.tls_name);
            } else {
                overrides.insert(
                    destination.tls_name.clone(),
                    destination.connect_host.clone(),
                );
            }
        }
        let host = match destination.tls_name.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
            _ => destination.tls_name.clone(),
        };
        let mut url = Url::parse(&format!("https://{host}:{}", destination.port))
            .map_err(|e| unreachable(name, e))?;
        url.set_path(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        // The request target exactly as sent, which the signature covers.
        let request_target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let mut builder = self
            .http(false)?
            .request(method.clone(), url.clone())
            .timeout(timeout)
            .header(header::HOST, &destination.host_header);
        if signed {
            let authorization = self.x_matrix(server, method.as_str(), &request_target, body)?;
            builder = builder.header(header::AUTHORIZATION, authorization);
        }
        if let Some(body) = body {
            builder = builder.json(body);
        }
        builder.send().await.map_err(|e| {
            unreachable(
                name,
                format!(
                    "{} {path} ({}:{}): {}",
                    method,
                    destination.connect_host,
                    destination.port,
                    error_chain(&e)
                ),
            )
        })
    }

    /// A media item of `origin` (spec: server-server-api.md, "Content Repository",
    /// `GET /_matrix/federation/v1/media/download/{mediaId}`): its bytes, at most
    /// `max_bytes` of them, and what the other server says its type and name are.
    ///
    /// A `Location` part is followed to where the bytes are. A server older than Matrix
    /// 1.11, which answers the endpoint as unknown, is asked at the deprecated
    /// `/_matrix/media/v3/download` instead.
    pub async fn media_download(
        &self,
        origin: &ServerName,
        media_id: &str,
        timeout_ms: u64,
        max_bytes: u64,
    ) -> Result<RemoteMedia> {
        let name = origin.as_str();
        let path = format!("/_matrix/federation/v1/media/download/{media_id}");
        let timeout = timeout_ms.to_string();
        let query = [("timeout_ms", timeout.as_str())];
        // The wait for an upload in progress, then time for the bytes themselves.
        let within = Duration::from_millis(timeout_ms) + MEDIA_BODY_TIMEOUT;
        let mut response = self
            .send_within(origin, Method::GET, &path, &query, None, true, within)
            .await?;
        let status = response.status();
        if !status.is_success() {
            let bytes = read_limited(response, MAX_JSON_BYTES)
                .await
                .map_err(|e| unreachable(name, e))?;
            let errcode = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|e| e.get("errcode").and_then(Value::as_str).map(str::to_owned));
            // spec: server-server-api.md, "Content Repository": fall back on
            // `404 M_UNRECOGNIZED` (a 405, or an answer without JSON, as older servers give).
            let unknown_endpoint = matches!(status.as_u16(), 404 | 405)
                && errcode.as_deref().is_none_or(|c| c == "M_UNRECOGNIZED");
            if unknown_endpoint {
                return self
                    .legacy_media_download(origin, media_id, timeout_ms, max_bytes)
                    .await;
            }
            return Err(remote_error(name, &Method::GET, &path, status, &bytes));
        }
        let too_large = || media_too_large(media_id, name, max_bytes);
        // The multipart envelope adds a few hundred bytes to the media itself.
        let limit = max_bytes.saturating_add(64 * 1024);
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let boundary = multipart::boundary(&content_type).ok_or_else(|| {
            Error::new(
                ErrorKind::BadGateway,
                format!(
                    "{name} answered a media download with `{content_type}`, not multipart/mixed"
                ),
            )
        })?;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| unreachable(name, e))? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let malformed = |why: String| {
            Error::new(
                ErrorKind::BadGateway,
                format!("{name} sent a malformed media download: {why}"),
            )
        };
        // Splitting scans every byte for the boundary: off the async threads.
        let parsed = tokio::task::spawn_blocking(move || {
            let parts = multipart::parse(&body, &boundary)?;
            let [_metadata, media] = parts.as_slice() else {
                return Err(format!("{} parts, not 2", parts.len()));
            };
            let content_type = media.header("content-type").map(str::to_owned);
            let filename = media
                .header("content-disposition")
                .and_then(multipart::disposition_filename);
            let redirect = media.header("location").map(str::to_owned);
            // Where the media bytes sit in `body`, so they are kept without a copy.
            let start = media.body.as_ptr() as usize - body.as_ptr() as usize;
            let end = start + media.body.len();
            drop(parts);
            let mut bytes = body;
            bytes.truncate(end);
            bytes.drain(..start);
            Ok((content_type, filename, redirect, bytes))
        })
        .await
        .map_err(Error::internal)?;
        let (content_type, filename, redirect, bytes) = parsed.map_err(malformed)?;
        if let Some(location) = redirect {
            return self
                .media_at_location(name, media_id, &location, max_bytes)
                .await;
        }
        if bytes.len() as u64 > max_bytes {
            return Err(too_large());
        }
        Ok(RemoteMedia {
            content_type,
            filename,
            bytes,
        })
    }

    /// The media at a `Location` a media download gave: fetched without our signature,
    /// following at most [`MAX_MEDIA_REDIRECTS`] more redirects by hand, each to a public
    /// address unless private ones are allowed (as for federation itself).
    async fn media_at_location(
        &self,
        name: &str,
        media_id: &str,
        location: &str,
        max_bytes: u64,
    ) -> Result<RemoteMedia> {
        let bad = |why: String| {
            Error::new(
                ErrorKind::BadGateway,
                format!("{name} sent {media_id} elsewhere, and {why}"),
            )
        };
        let mut url =
            reqwest::Url::parse(location).map_err(|_| bad(format!("`{location}` is not a URL")))?;
        for _ in 0..=MAX_MEDIA_REDIRECTS {
            if !matches!(url.scheme(), "http" | "https") {
                return Err(bad(format!("{url} is not an http(s) URL")));
            }
            let literal = url
                .host_str()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
                .and_then(|h| h.parse::<IpAddr>().ok());
            if literal.is_some_and(|ip| !self.inner.allow_private && !is_public(ip)) {
                return Err(bad(format!("{url} is not a public address")));
            }
            let response = self
                .http(false)?
                .get(url.clone())
                .timeout(MEDIA_BODY_TIMEOUT)
                .send()
                .await
                .map_err(|e| bad(format!("{url} could not be fetched: {}", error_chain(&e))))?;
            let status = response.status();
            if status.is_redirection() {
                let next = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|l| url.join(l).ok())
                    .ok_or_else(|| bad(format!("{url} redirects nowhere")))?;
                url = next;
                continue;
            }
            if !status.is_success() {
                return Err(bad(format!("{url} answered HTTP {status}")));
            }
            return read_media(response, max_bytes, media_id, name).await;
        }
        Err(bad("the redirects did not end".to_owned()))
    }

    /// A media item of a server older than Matrix 1.11, from the deprecated
    /// `GET /_matrix/media/v3/download/{serverName}/{mediaId}` with `allow_remote=false`
    /// (spec: server-server-api.md, "Content Repository"), which answers with the bytes.
    async fn legacy_media_download(
        &self,
        origin: &ServerName,
        media_id: &str,
        timeout_ms: u64,
        max_bytes: u64,
    ) -> Result<RemoteMedia> {
        let name = origin.as_str();
        let path = format!("/_matrix/media/v3/download/{name}/{media_id}");
        let timeout = timeout_ms.to_string();
        let query = [("allow_remote", "false"), ("timeout_ms", timeout.as_str())];
        let within = Duration::from_millis(timeout_ms) + MEDIA_BODY_TIMEOUT;
        let response = self
            .send_within(origin, Method::GET, &path, &query, None, true, within)
            .await?;
        let status = response.status();
        if !status.is_success() {
            let bytes = read_limited(response, MAX_JSON_BYTES)
                .await
                .map_err(|e| unreachable(name, e))?;
            return Err(remote_error(name, &Method::GET, &path, status, &bytes));
        }
        read_media(response, max_bytes, media_id, name).await
    }

    /// A signed `GET` of `path` on the server named `server` (a string, checked here),
    /// answered whatever its status and type, for in-process callers such as the
    /// connectivity checker and the tests. At most 16 MiB of the body is read.
    pub async fn get(
        &self,
        server: &str,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<RawResponse> {
        let server = ServerName::parse(server)
            .map_err(|_| Error::invalid_param(format!("{server} is not a server name.")))?;
        let response = self
            .send(&server, Method::GET, path, query, None, true)
            .await?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = read_limited(response, MAX_JSON_BYTES)
            .await
            .map_err(|e| unreachable(server.as_str(), e))?;
        Ok(RawResponse {
            status,
            content_type,
            body,
        })
    }

    /// The `Authorization: X-Matrix ...` value for a request (spec: server-server-api.md,
    /// "Request Authentication"): our signature over method, URI, origin, destination and
    /// content.
    fn x_matrix(
        &self,
        destination: &ServerName,
        method: &str,
        uri: &str,
        body: Option<&Value>,
    ) -> Result<String> {
        let identity = &self.inner.identity;
        let mut object = CanonicalJsonObject::new();
        object.insert("method".to_owned(), method.into());
        object.insert("uri".to_owned(), uri.into());
        object.insert("origin".to_owned(), identity.server_name.as_str().into());
        object.insert("destination".to_owned(), destination.as_str().into());
        if let Some(body) = body {
            let content = CanonicalJsonValue::try_from(body.clone()).map_err(Error::internal)?;
            object.insert("content".to_owned(), content);
        }
        let canonical = serde_json::to_vec(&object)?;
        let signature = identity.signing_key.sign(&canonical);
        let key_id =
            OwnedServerSigningKeyId::try_from(signature.id().as_str()).map_err(Error::internal)?;
        let header = XMatrix::new(
            identity.server_name.clone(),
            destination.to_owned(),
            key_id,
            Base64::new(signature.as_bytes().to_vec()),
        );
        Ok(header.to_string())
    }

    /// A page of another server's published room directory (spec: server-server-api.md,
    /// "Public Room Directory", the `POST` form, which carries the filter). Only the
    /// fields a client reads are passed on, each checked for its type.
    pub async fn public_rooms(
        &self,
        server: &ServerName,
        limit: Option<u32>,
        since: Option<&str>,
        term: Option<&str>,
        room_types: Option<&[Option<String>]>,
    ) -> Result<Value> {
        let mut body = json!({});
        if let Some(limit) = limit {
            body["limit"] = json!(limit);
        }
        if let Some(since) = since {
            body["since"] = json!(since);
        }
        if let Some(term) = term {
            body["filter"]["generic_search_term"] = json!(term);
        }
        if let Some(types) = room_types {
            body["filter"]["room_types"] = json!(types);
        }
        let answer = self
            .request(
                server,
                Method::POST,
                "/_matrix/federation/v1/publicRooms",
                &[],
                Some(&body),
                true,
            )
            .await?;
        let chunk: Vec<Value> = answer
            .get("chunk")
            .and_then(Value::as_array)
            .map(|rooms| {
                rooms
                    .iter()
                    .filter(|room| {
                        room.get("room_id")
                            .and_then(Value::as_str)
                            .is_some_and(|id| ruma::RoomId::parse(id).is_ok())
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let mut page = json!({ "chunk": chunk });
        for token in ["next_batch", "prev_batch"] {
            if let Some(value) = answer.get(token).filter(|v| v.is_string()) {
                page[token] = value.clone();
            }
        }
        if let Some(total) = answer
            .get("total_room_count_estimate")
            .and_then(Value::as_u64)
        {
            page["total_room_count_estimate"] = json!(total);
        }
        Ok(page)
    }

    /// `GET /_matrix/federation/v1/query/profile` (spec: "Query information").
    pub async fn query_profile(
        &self,
        user_id: &ruma::UserId,
        field: Option<&str>,
    ) -> Result<Value> {
        let mut query = vec![("user_id", user_id.as_str())];
        if let Some(field) = field {
            query.push(("field", field));
        }
        self.request(
            user_id.server_name(),
            Method::GET,
            "/_matrix/federation/v1/query/profile",
            &query,
            None,
            true,
        )
        .await
    }

    /// `GET /_matrix/federation/v1/query/directory`: the room an alias of another server
    /// names, and servers that can help to join it.
    pub async fn query_directory(
        &self,
        alias: &ruma::RoomAliasId,
    ) -> Result<(ruma::OwnedRoomId, Vec<OwnedServerName>)> {
        let answer = self
            .request(
                alias.server_name(),
                Method::GET,
                "/_matrix/federation/v1/query/directory",
                &[("room_alias", alias.as_str())],
                None,
                true,
            )
            .await?;
        let room_id = answer
            .get("room_id")
            .and_then(Value::as_str)
            .and_then(|s| ruma::RoomId::parse(s).ok())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::BadGateway,
                    format!("{} gave no valid room_id for {alias}", alias.server_name()),
                )
            })?;
        let servers = answer
            .get("servers")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(Value::as_str)
                    .filter_map(|s| ServerName::parse(s).ok())
                    .collect()
            })
            .unwrap_or_default();
        Ok((room_id, servers))
    }
}

/// An error with its causes, for a message that says what actually failed (refused, TLS, ...).
/// Another server's error answer as ours: the kinds a client can act on (`M_NOT_FOUND`,
/// `M_FORBIDDEN`) pass through, anything else is 502.
fn remote_error(
    name: &str,
    method: &Method,
    path: &str,
    status: reqwest::StatusCode,
    bytes: &[u8],
) -> Error {
    let error: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let errcode = error.get("errcode").and_then(Value::as_str).unwrap_or("");
    let message = error.get("error").and_then(Value::as_str).unwrap_or("");
    let kind = match errcode {
        "M_NOT_FOUND" => ErrorKind::NotFound,
        "M_FORBIDDEN" => ErrorKind::Forbidden,
        "M_NOT_YET_UPLOADED" => ErrorKind::NotYetUploaded,
        _ => ErrorKind::BadGateway,
    };
    Error::new(
        kind,
        format!("{name} answered {method} {path} with HTTP {status} {errcode}: {message}"),
    )
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `media_id` of `name` is larger than `max_bytes`, which this server accepts.
fn media_too_large(media_id: &str, name: &str, max_bytes: u64) -> Error {
    Error::new(
        ErrorKind::RemoteTooLarge,
        format!("{media_id} of {name} is larger than this server accepts ({max_bytes} bytes)."),
    )
}

/// A response that is the media itself: its bytes (at most `max_bytes`), type and name.
async fn read_media(
    mut response: reqwest::Response,
    max_bytes: u64,
    media_id: &str,
    name: &str,
) -> Result<RemoteMedia> {
    let header_text = |h: header::HeaderName| {
        response
            .headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header_text(header::CONTENT_TYPE);
    let filename = header_text(header::CONTENT_DISPOSITION)
        .as_deref()
        .and_then(multipart::disposition_filename);
    let too_large = || media_too_large(media_id, name, max_bytes);
    if response.content_length().is_some_and(|n| n > max_bytes) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| unreachable(name, e))? {
        if (bytes.len() + chunk.len()) as u64 > max_bytes {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(RemoteMedia {
        content_type,
        filename,
        bytes,
    })
}

/// Reads a response body up to `limit` bytes.
async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > limit {
            return Err(format!("the answer is larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
