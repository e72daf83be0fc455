//! The content repository (spec: client-server-api/modules/content_repo.md): the
//! authenticated `/_matrix/client/v1/media/*` endpoints, uploads under `/_matrix/media/v3`,
//! and the deprecated unauthenticated downloads, which serve only media from before the
//! freeze.
//!
//! Serving is where media becomes dangerous: a user's upload is shown by browsers on the
//! server's own origin. So every file is served with its stored `Content-Type`,
//! `X-Content-Type-Options: nosniff`, the spec's sandboxing `Content-Security-Policy`, and
//! `Content-Disposition: inline` only for the spec's list of types that cannot script.

use axum::{
    Json,
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::BytesMut;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::{
    api::extract::{AuthedUser, PathParams, QueryParams},
    error::{Error, Result},
    service::{
        Services,
        media::{Access, Content, IncomingFile, Method, ThumbnailRequest, UploadMeta},
    },
};

/// spec: content_repo.md, "Serving inline content": the types that may be served inline.
/// Anything else (HTML, SVG, JavaScript, PDF, ...) is served as an attachment.
const INLINE_TYPES: &[&str] = &[
    "text/css",
    "text/plain",
    "text/csv",
    "application/json",
    "application/ld+json",
    "image/jpeg",
    "image/gif",
    "image/png",
    "image/apng",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/flac",
    "audio/x-flac",
];

/// spec: content_repo.md, the recommended policy, verbatim.
const CONTENT_SECURITY_POLICY: &str = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; object-src 'self';";

#[derive(Deserialize)]
pub(crate) struct UploadQuery {
    filename: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct DownloadQuery {
    pub(crate) timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
pub(crate) struct ThumbnailQuery {
    width: u32,
    height: u32,
    method: Option<String>,
    /// `true` lets a small animated original be the answer; thumbnails Kith makes are
    /// always stills (see `service::media::thumbnail::make`).
    animated: Option<bool>,
    pub(crate) timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
pub(crate) struct PreviewQuery {
    url: String,
}

/// Reads the request body into the media store chunk by chunk, never holding it in memory.
/// The size limit is `media.max_upload_bytes`, enforced here as bytes arrive (the router's
/// `DefaultBodyLimit` is for JSON and does not apply to a streamed body).
async fn receive(
    services: &Services,
    user: &AuthedUser,
    headers: &HeaderMap,
    body: Body,
) -> Result<(IncomingFile, UploadMeta)> {
    let declared_len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let mut incoming = services
        .media
        .begin_upload(&user.0.user_id, declared_len)
        .await?;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::bad_json(format!("The upload was cut off: {e}.")))?;
        if let Ok(data) = frame.into_data() {
            incoming.write(&data).await?;
        }
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((
        incoming,
        UploadMeta {
            content_type,
            filename: None,
        },
    ))
}

/// `POST /_matrix/media/v3/upload`
///
/// Stores a file and returns its new `mxc://` URI.
pub(crate) async fn create_content(
    State(services): State<Services>,
    user: AuthedUser,
    QueryParams(query): QueryParams<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>> {
    let (incoming, mut meta) = receive(&services, &user, &headers, body).await?;
    meta.filename = query.filename;
    let content_uri = services
        .media
        .upload(&user.0.user_id, incoming, meta)
        .await?;
    Ok(Json(json!({ "content_uri": content_uri })))
}

/// `POST /_matrix/media/v1/create`
///
/// Reserves an `mxc://` URI for an upload that follows later.
pub(crate) async fn create_mxc_uri(
    State(services): State<Services>,
    user: AuthedUser,
) -> Result<Json<Value>> {
    let (content_uri, unused_expires_at) = services.media.create(&user.0.user_id).await?;
    Ok(Json(
        json!({ "content_uri": content_uri, "unused_expires_at": unused_expires_at }),
    ))
}

/// `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}`
///
/// Uploads the bytes of a URI reserved with `/create`; only its creator may, and only once.
pub(crate) async fn create_content_async(
    State(services): State<Services>,
    user: AuthedUser,
    PathParams((server_name, media_id)): PathParams<(String, String)>,
    QueryParams(query): QueryParams<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>> {
    let media = &services.media;
    media
        .check_upload_to(&user.0.user_id, &server_name, &media_id)
        .await?;
    let (incoming, mut meta) = receive(&services, &user, &headers, body).await?;
    meta.filename = query.filename;
    media
        .upload_to(&user.0.user_id, &server_name, &media_id, incoming, meta)
        .await?;
    Ok(Json(json!({})))
}

/// `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}`
pub(crate) async fn get_content(
    State(services): State<Services>,
    _user: AuthedUser,
    PathParams((server_name, media_id)): PathParams<(String, String)>,
    QueryParams(query): QueryParams<DownloadQuery>,
) -> Result<Response> {
    download(
        &services,
        &server_name,
        &media_id,
        &query,
        Access::Authenticated,
        None,
    )
    .await
}

/// `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}/{fileName}`
pub(crate) async fn get_content_as_filename(
    State(services): State<Services>,
    _user: AuthedUser,
    PathParams((server_name, media_id, filename)): PathParams<(String, String, String)>,
    QueryParams(query): QueryParams<DownloadQuery>,
) -> Result<Response> {
    download(
        &services,
        &server_name,
        &media_id,
        &query,
        Access::Authenticated,
        Some(filename),
    )
    .await
}

/// Serves a download for any of the four download endpoints.
async fn download(
    services: &Services,
    server_name: &str,
    media_id: &str,
    query: &DownloadQuery,
    access: Access,
    filename: Option<String>,
) -> Result<Response> {
    let content = services
        .media
        .download(server_name, media_id, query.timeout_ms, access)
        .await?;
    Ok(serve(content, filename))
}

/// Serves a thumbnail for either thumbnail endpoint.
async fn thumbnail(
    services: &Services,
    server_name: &str,
    media_id: &str,
    query: &ThumbnailQuery,
    access: Access,
) -> Result<Response> {
    let request = thumbnail_request(query)?;
    let content = services
        .media
        .thumbnail(server_name, media_id, request, query.timeout_ms, access)
        .await?;
    Ok(serve(content, None))
}

pub(crate) fn thumbnail_request(query: &ThumbnailQuery) -> Result<ThumbnailRequest> {
    let method = match query.method.as_deref() {
        Some("crop") => Method::Crop,
        // The spec gives no default; `scale` never cuts anything off.
        Some("scale") | None => Method::Scale,
        Some(other) => {
            return Err(Error::invalid_param(format!(
                "Unknown thumbnail method `{other}` (crop or scale)."
            )));
        }
    };
    Ok(ThumbnailRequest {
        width: query.width,
        height: query.height,
        method,
        animated: query.animated.unwrap_or(false),
    })
}

/// `GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}`
pub(crate) async fn get_content_thumbnail(
    State(services): State<Services>,
    _user: AuthedUser,
    PathParams((server_name, media_id)): PathParams<(String, String)>,
    QueryParams(query): QueryParams<ThumbnailQuery>,
) -> Result<Response> {
    thumbnail(
        &services,
        &server_name,
        &media_id,
        &query,
        Access::Authenticated,
    )
    .await
}

/// `GET /_matrix/media/v3/download/{serverName}/{mediaId}` (deprecated, unauthenticated)
///
/// Serves only media uploaded before the freeze; newer media answers `404 M_NOT_FOUND`.
pub(crate) async fn get_content_legacy(
    State(services): State<Services>,
    PathParams((server_name, media_id)): PathParams<(String, String)>,
    QueryParams(query): QueryParams<DownloadQuery>,
) -> Result<Response> {
    download(
        &services,
        &server_name,
        &media_id,
        &query,
        Access::Unauthenticated,
        None,
    )
    .await
}

/// `GET /_matrix/media/v3/download/{serverName}/{mediaId}/{fileName}` (deprecated, unauthenticated)
pub(crate) async fn get_content_as_filename_legacy(
    State(services): State<Services>,
    PathParams((server_name, media_id, filename)): PathParams<(String, String, String)>,
    QueryParams(query): QueryParams<DownloadQuery>,
) -> Result<Response> {
    download(
        &services,
        &server_name,
        &media_id,
        &query,
        Access::Unauthenticated,
        Some(filename),
    )
    .await
}

/// `GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId}` (deprecated, unauthenticated)
pub(crate) async fn get_content_thumbnail_legacy(
    State(services): State<Services>,
    PathParams((server_name, media_id)): PathParams<(String, String)>,
    QueryParams(query): QueryParams<ThumbnailQuery>,
) -> Result<Response> {
    thumbnail(
        &services,
        &server_name,
        &media_id,
        &query,
        Access::Unauthenticated,
    )
    .await
}

/// `GET /_matrix/client/v1/media/config` (and the deprecated `/_matrix/media/v3/config`,
/// which also needs an access token: it is not one of the frozen download endpoints)
pub(crate) async fn get_media_config(
    State(services): State<Services>,
    _user: AuthedUser,
) -> Json<Value> {
    Json(json!({ "m.upload.size": services.media.max_upload_bytes() }))
}

/// `GET /_matrix/client/v1/media/preview_url` (and the deprecated, also authenticated,
/// `/_matrix/media/v3/preview_url`)
///
/// `ts` is ignored: a cached preview younger than an hour, or a fresh one, is returned.
pub(crate) async fn get_media_preview(
    State(services): State<Services>,
    user: AuthedUser,
    QueryParams(query): QueryParams<PreviewQuery>,
) -> Result<Json<Value>> {
    Ok(Json(
        services
            .media
            .preview_url(&user.0.user_id, &query.url)
            .await?,
    ))
}

/// The response for stored bytes: streamed from the file, with the safe-serving headers.
/// A file's bytes as a body stream, read in 64 KiB pieces by a task that stops when the
/// client goes away.
pub(crate) fn file_stream(
    mut file: tokio::fs::File,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<bytes::Bytes>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    tokio::spawn(async move {
        let mut buf = BytesMut::new();
        loop {
            buf.reserve(64 * 1024);
            match file.read_buf(&mut buf).await {
                Ok(0) => break,
                Ok(_) => {
                    if tx.send(Ok(buf.split().freeze())).await.is_err() {
                        break; // the client went away
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    break;
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

fn serve(content: Content, filename_override: Option<String>) -> Response {
    let Content {
        file,
        size,
        content_type,
        filename,
    } = content;
    let body = Body::from_stream(file_stream(file));
    let content_type_value = HeaderValue::from_str(&content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let filename = filename_override.or(filename);
    let disposition = content_disposition(&content_type, filename.as_deref());
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type_value);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).unwrap_or(HeaderValue::from_static("attachment")),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // spec: content_repo.md (added in v1.4): lets web clients use the media under COEP.
    headers.insert(
        header::HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("cross-origin"),
    );
    response
}

/// `inline` for the safe types, `attachment` otherwise, with the file name as RFC 6266
/// wants it: a plain-ASCII `filename` for old agents and, when the name is not plain
/// ASCII, the exact name in `filename*` (RFC 8187/5987 `UTF-8''` percent-encoding).
pub(crate) fn content_disposition(content_type: &str, filename: Option<&str>) -> String {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let kind = if INLINE_TYPES.contains(&essence.as_str()) {
        "inline"
    } else {
        "attachment"
    };
    let Some(name) = filename.filter(|n| !n.is_empty()) else {
        return kind.to_owned();
    };
    let plain = |c: char| (c.is_ascii_graphic() || c == ' ') && !matches!(c, '"' | '\\' | '%');
    let fallback: String = name
        .chars()
        .map(|c| if plain(c) { c } else { '_' })
        .collect();
    if name.chars().all(plain) {
        return format!("{kind}; filename=\"{name}\"");
    }
    let mut encoded = String::new();
    for byte in name.bytes() {
        // RFC 8187 attr-char.
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::content_disposition;

    #[test]
    fn active_content_is_an_attachment_and_safe_media_is_inline() {
        assert_eq!(content_disposition("image/png", None), "inline");
        assert_eq!(
            content_disposition("text/plain; charset=utf-8", Some("a.txt")),
            "inline; filename=\"a.txt\""
        );
        for dangerous in [
            "text/html",
            "image/svg+xml",
            "application/javascript",
            "TEXT/HTML",
        ] {
            assert_eq!(content_disposition(dangerous, None), "attachment");
        }
    }

    #[test]
    fn file_names_are_encoded_per_rfc_6266() {
        assert_eq!(
            content_disposition("application/pdf", Some("Ünïcode \"q\" 100%.pdf")),
            "attachment; filename=\"_n_code _q_ 100_.pdf\"; \
             filename*=UTF-8''%C3%9Cn%C3%AFcode%20%22q%22%20100%25.pdf"
        );
        // No header injection through the name.
        let value = content_disposition("text/plain", Some("a\r\nSet-Cookie: x"));
        assert!(!value.contains('\r') && !value.contains('\n'), "{value}");
    }
}
