//! The wizard and dashboard, served at `/_kith/` from the files built into the binary
//! (`ui/dist/`, embedded by `build.rs`). The page itself holds no secret: it asks for the
//! setup token (from the one-time setup link) or the admin's login before it shows
//! anything, and talks to the setup and admin APIs like any client.

use axum::{
    Router,
    extract::Path,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};

use crate::service::Services;

include!(concat!(env!("OUT_DIR"), "/ui_files.rs"));

/// The UI routes.
pub(super) fn routes() -> Router<Services> {
    Router::new()
        .route("/_kith", get(|| async { Redirect::permanent("/_kith/") }))
        .route("/_kith/", get(|| async { file("index.html") }))
        .route(
            "/_kith/{*path}",
            get(|Path(path): Path<String>| async move { file(&path) }),
        )
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

fn file(name: &str) -> Response {
    let Some((_, bytes)) = UI_FILES.iter().find(|(file, _)| *file == name) else {
        if UI_FILES.is_empty() {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "This Kith was built without its web UI. Build it with `make ui` (npm in ui/), \
                 then build Kith again.",
            )
                .into_response();
        }
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "No such page.",
        )
            .into_response();
    };
    let mut response = (*bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    );
    // Hashed asset names never change; the page itself always comes fresh.
    let cache = if name.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The UI talks only to this server; nothing else may be framed, loaded or called.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
