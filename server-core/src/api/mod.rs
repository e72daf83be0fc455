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

mod admin;
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

/// The whole HTTP API of a Kith server.
pub fn router(services: Services) -> Router {
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
        .layer(cors)
        .layer(axum::middleware::map_response(json_content_type))
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
