//! The HTTP layer: the Client-Server API, the server key endpoint and `.well-known` on the
//! client listener; the Server-Server API on the federation listener ([`federation`]).
//!
//! What belongs here: parsing requests, authenticating callers, calling services, and
//! shaping responses. What does not: rules and storage — a handler is parse, authorise, a
//! few service calls, respond. Errors become responses in one place (`response.rs`).
//!
//! Known deviation from STYLE.md: routes are written as path strings in [`router`] and
//! bodies are parsed with small serde structs, not registered from ruma request types.
//! Moving to ruma's `IncomingRequest` metadata is planned; the paths here follow the spec.

pub(crate) mod admin;
mod client;
mod extract;
pub mod federation;
pub mod response;
mod well_known;

use axum::{
    Json, Router,
    extract::DefaultBodyLimit,
    http::{HeaderValue, Method, StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use std::net::IpAddr;

use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId, RoomId, UserId};
use serde_json::json;
use tower_http::cors::{Any, CorsLayer};

use crate::{
    error::{Error, Result},
    service::Services,
};

/// Parses a room ID from a path or body.
fn parse_room_id(s: &str) -> Result<OwnedRoomId> {
    RoomId::parse(s).map_err(|_| Error::invalid_param(format!("{s} is not a valid room ID.")))
}

/// Parses a user ID from a path or body.
fn parse_user_id(s: &str) -> Result<OwnedUserId> {
    UserId::parse(s).map_err(|_| Error::invalid_param(format!("{s} is not a valid user ID.")))
}

/// Parses a room alias.
fn parse_alias(s: &str) -> Result<OwnedRoomAliasId> {
    RoomAliasId::parse(s)
        .map_err(|_| Error::invalid_param(format!("{s} is not a valid room alias.")))
}

/// Where a request comes from: the peer's address, or, when the peer is a trusted reverse
/// proxy, the client it names in `X-Forwarded-For`. For logs (failed logins, refused
/// signatures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The client's address: `peer`, unless `peer` is a trusted proxy; then the right-most
/// `X-Forwarded-For` hop that is not a trusted proxy (each proxy appends the address it
/// received from, so hops further left were written by the client and may be forged).
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpAddr]) -> IpAddr {
    // `::ffff:127.0.0.1` (a dual-stack listener's view of an IPv4 peer) is 127.0.0.1.
    let peer = peer.to_canonical();
    let trusted: Vec<IpAddr> = trusted.iter().map(IpAddr::to_canonical).collect();
    if !trusted.contains(&peer) {
        return peer;
    }
    let mut nearest = peer;
    for hop in forwarded_for.unwrap_or_default().rsplit(',').map(str::trim) {
        let Some(ip) = parse_hop(hop).map(|ip| ip.to_canonical()) else {
            return nearest;
        };
        if !trusted.contains(&ip) {
            return ip;
        }
        nearest = ip;
    }
    nearest
}

/// One `X-Forwarded-For` entry: an IP address, perhaps with a port (`[v6]:port`, `v4:port`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

/// Puts a [`ClientAddr`] into each request's extensions (when the listener knows the peer).
pub async fn client_addr_layer(
    axum::extract::State(trusted): axum::extract::State<std::sync::Arc<Vec<IpAddr>>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    if let Some(peer) = peer {
        // Every `X-Forwarded-For` line, in order: a proxy may add its own line after one
        // the client sent, and the right-most hops are the ones to believe.
        let forwarded: Vec<&str> = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let forwarded = forwarded.join(",");
        let ip = client_ip(
            peer,
            (!forwarded.is_empty()).then_some(forwarded.as_str()),
            &trusted,
        );
        request.extensions_mut().insert(ClientAddr(ip));
    }
    next.run(request).await
}

/// The trusted proxies of the config, as addresses.
pub fn trusted_proxies(services: &Services) -> std::sync::Arc<Vec<IpAddr>> {
    std::sync::Arc::new(
        services
            .config
            .tls
            .trusted_proxies
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect(),
    )
}

/// The whole HTTP API of a Kith server.
pub fn router(
    services: Services,
    runtime: std::sync::Arc<crate::service::dashboard::Runtime>,
) -> Router {
    let max_body = services.config.limits.max_request_bytes;
    // spec: client-server-api/_index.md, "Web Browser Clients": these exact CORS headers.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::HeaderName::from_static("x-requested-with"),
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
        ]);
    Router::new()
        .merge(client::routes())
        .merge(admin::routes())
        .route("/_matrix/key/v2/server", get(federation::server_keys))
        .route(
            "/_matrix/key/v2/server/{key_id}",
            get(federation::server_keys),
        )
        .route(
            "/.well-known/matrix/client",
            get(well_known::well_known_client),
        )
        .route(
            "/.well-known/matrix/server",
            get(well_known::well_known_server),
        )
        .fallback(unrecognized)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::Extension(runtime))
        .layer(cors)
        .layer(axum::middleware::map_response(json_content_type))
        .layer(axum::middleware::from_fn_with_state(
            trusted_proxies(&services),
            client_addr_layer,
        ))
        .with_state(services)
}

async fn unrecognized() -> impl IntoResponse {
    Error::unrecognized("Unrecognized request.")
}

async fn method_not_allowed() -> impl IntoResponse {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(
            json!({ "errcode": "M_UNRECOGNIZED", "error": "Method not allowed for this endpoint." }),
        ),
    )
}

async fn json_content_type(mut response: axum::response::Response) -> axum::response::Response {
    if !response.headers().contains_key(header::CONTENT_TYPE) {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    response
}

/// Decodes `%XX` escapes of a query value.
pub(crate) fn percent_decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = value.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::client_ip;

    fn ip(s: &str) -> std::net::IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = [ip("127.0.0.1"), ip("10.0.0.2")];
        // A client talking to us directly cannot claim to be someone else.
        assert_eq!(
            client_ip(ip("203.0.113.9"), Some("198.51.100.1"), &trusted),
            ip("203.0.113.9")
        );
        // Through our proxy: the address the proxy saw.
        assert_eq!(
            client_ip(ip("127.0.0.1"), Some("203.0.113.9"), &trusted),
            ip("203.0.113.9")
        );
        // Through two of our proxies, with a forged hop at the left.
        assert_eq!(
            client_ip(
                ip("127.0.0.1"),
                Some("192.0.2.66, 203.0.113.9:4711, 10.0.0.2"),
                &trusted
            ),
            ip("203.0.113.9")
        );
        // A dual-stack listener sees the IPv4 proxy as ::ffff:127.0.0.1.
        assert_eq!(
            client_ip(ip("::ffff:127.0.0.1"), Some("203.0.113.9"), &trusted),
            ip("203.0.113.9")
        );
        // A proxy that sent no header, or garbage.
        assert_eq!(client_ip(ip("127.0.0.1"), None, &trusted), ip("127.0.0.1"));
        assert_eq!(
            client_ip(ip("127.0.0.1"), Some("unknown"), &trusted),
            ip("127.0.0.1")
        );
    }
}
