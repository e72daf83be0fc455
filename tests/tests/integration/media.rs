//! The media repository against a real server on loopback: uploads, downloads, thumbnails,
//! the legacy-endpoint freeze, asynchronous uploads, safe serving, URL previews, and a real
//! matrix-sdk client.

use std::{io::Cursor, path::Path, time::Duration};

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use kith_tests::{Client, TestServer, url_encode};
use serde_json::json;

/// A PNG or JPEG of `width`×`height` with a gradient, so it is not trivially compressible.
pub(crate) fn image_bytes(width: u32, height: u32, format: ImageFormat) -> Vec<u8> {
    let img = RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    });
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img)
        .write_to(&mut out, format)
        .expect("encode test image");
    out.into_inner()
}

pub(crate) fn dimensions(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(bytes).expect("a decodable image");
    (img.width(), img.height())
}

/// `server_name/media_id` from an `mxc://` URI.
pub(crate) fn mxc_path(mxc: &str) -> &str {
    mxc.strip_prefix("mxc://").expect("an mxc URI")
}

/// The media files on disk (not counting uploads in progress).
fn media_files(data_dir: &Path) -> Vec<std::path::PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "tmp") {
                    walk(&path, out);
                }
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&data_dir.join("media"), &mut out);
    out
}

async fn download(client: &Client, mxc: &str) -> reqwest::Response {
    client
        .get_response(&format!(
            "/_matrix/client/v1/media/download/{}",
            mxc_path(mxc)
        ))
        .await
}

async fn thumbnail(client: &Client, mxc: &str, w: u32, h: u32, method: &str) -> reqwest::Response {
    client
        .get_response(&format!(
            "/_matrix/client/v1/media/thumbnail/{}?width={w}&height={h}&method={method}",
            mxc_path(mxc)
        ))
        .await
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("a JSON error");
    (status, body["errcode"].as_str().unwrap_or("").to_owned())
}

#[tokio::test]
async fn an_uploaded_png_downloads_byte_for_byte_inline_with_safe_headers() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let png = image_bytes(200, 100, ImageFormat::Png);
    let (status, body) = alice
        .upload(png.clone(), "image/png", Some("cat photo.png"))
        .await;
    assert_eq!(status, 200, "{body}");
    let mxc = body["content_uri"].as_str().expect("content_uri");
    assert!(mxc.starts_with("mxc://kith.test/"), "{mxc}");

    let response = download(&alice, mxc).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "image/png");
    assert_eq!(
        header(&response, "content-disposition"),
        "inline; filename=\"cat photo.png\""
    );
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    assert_eq!(
        header(&response, "cross-origin-resource-policy"),
        "cross-origin"
    );
    assert!(
        header(&response, "content-security-policy").starts_with("sandbox; default-src 'none'")
    );
    assert_eq!(
        response.bytes().await.expect("body").as_ref(),
        png.as_slice()
    );

    // The file name in the path wins, encoded per RFC 6266.
    let response = alice
        .get_response(&format!(
            "/_matrix/client/v1/media/download/{}/{}",
            mxc_path(mxc),
            url_encode("Köln.png")
        ))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-disposition"),
        "inline; filename=\"K_ln.png\"; filename*=UTF-8''K%C3%B6ln.png"
    );

    // Another user of the server may download it too (media is not per room).
    let bob = server.register("bob").await;
    assert_eq!(download(&bob, mxc).await.status(), 200);
}

#[tokio::test]
async fn thumbnails_crop_to_the_exact_size_scale_keeps_the_aspect_ratio_and_are_made_once() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let mxc = alice
        .upload_ok(image_bytes(400, 200, ImageFormat::Jpeg), "image/jpeg")
        .await;

    let response = thumbnail(&alice, &mxc, 96, 96, "crop").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "image/jpeg");
    assert!(header(&response, "content-disposition").starts_with("inline"));
    assert_eq!(dimensions(&response.bytes().await.expect("body")), (96, 96));

    let response = thumbnail(&alice, &mxc, 100, 100, "scale").await;
    assert_eq!(response.status(), 200);
    // Rounded up to the standard 128×128 box, aspect 2:1 kept, never smaller than asked.
    assert_eq!(
        dimensions(&response.bytes().await.expect("body")),
        (256, 128)
    );

    // Larger than the original: the original, never an upscale.
    let response = thumbnail(&alice, &mxc, 800, 600, "scale").await;
    assert_eq!(
        dimensions(&response.bytes().await.expect("body")),
        (400, 200)
    );

    // Asking again makes nothing new.
    let files = media_files(server.data_dir()).len();
    let again = thumbnail(&alice, &mxc, 96, 96, "crop").await;
    assert_eq!(dimensions(&again.bytes().await.expect("body")), (96, 96));
    assert_eq!(media_files(server.data_dir()).len(), files);
    // original + crop + scale; the 800x600 answer is the original's file.
    assert_eq!(files, 3);

    let response = thumbnail(&alice, &mxc, 96, 96, "stretch").await;
    assert_eq!(
        error_of(response).await,
        (400, "M_INVALID_PARAM".to_owned())
    );
}

#[tokio::test]
async fn two_uploads_of_the_same_bytes_share_one_file_on_disk() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let png = image_bytes(64, 64, ImageFormat::Png);
    let first = alice.upload_ok(png.clone(), "image/png").await;
    let second = bob.upload_ok(png.clone(), "image/png").await;
    assert_ne!(first, second, "each upload gets its own mxc:// URI");
    let files = media_files(server.data_dir());
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(std::fs::read(&files[0]).expect("read"), png);
    for mxc in [&first, &second] {
        let response = download(&alice, mxc).await;
        assert_eq!(
            response.bytes().await.expect("body").as_ref(),
            png.as_slice()
        );
    }
}

#[tokio::test]
async fn uploads_over_the_size_limit_are_refused_with_m_too_large() {
    let server = TestServer::builder()
        .config(|c| c.media.max_upload_bytes = 4096)
        .start()
        .await;
    let alice = server.register("alice").await;
    let (status, body) = alice
        .upload(vec![7u8; 8192], "application/octet-stream", None)
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (413, Some("M_TOO_LARGE")),
        "{body}"
    );
    let (status, body) = alice.get("/_matrix/client/v1/media/config").await;
    assert_eq!(status, 200);
    assert_eq!(body["m.upload.size"], 4096);
    // Nothing was kept, and an upload within the limit still works.
    assert!(media_files(server.data_dir()).is_empty());
    alice
        .upload_ok(vec![7u8; 4096], "application/octet-stream")
        .await;
}

#[tokio::test]
async fn a_user_over_the_quota_is_refused_with_m_forbidden() {
    let server = TestServer::builder()
        .config(|c| c.media.max_bytes_per_user = 10_000)
        .start()
        .await;
    let alice = server.register("alice").await;
    alice
        .upload_ok(vec![1u8; 6000], "application/octet-stream")
        .await;
    let (status, body) = alice
        .upload(vec![2u8; 6000], "application/octet-stream", None)
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );
}

#[tokio::test]
async fn authenticated_media_endpoints_refuse_requests_without_a_token() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let mxc = alice
        .upload_ok(image_bytes(8, 8, ImageFormat::Png), "image/png")
        .await;
    let anonymous = server.anonymous();
    for path in [
        format!("/_matrix/client/v1/media/download/{}", mxc_path(&mxc)),
        format!(
            "/_matrix/client/v1/media/thumbnail/{}?width=4&height=4",
            mxc_path(&mxc)
        ),
        "/_matrix/client/v1/media/config".to_owned(),
        "/_matrix/client/v1/media/preview_url?url=https%3A%2F%2Fexample.org".to_owned(),
    ] {
        let response = anonymous.get_response(&path).await;
        assert_eq!(
            error_of(response).await,
            (401, "M_MISSING_TOKEN".to_owned()),
            "{path}"
        );
    }
    let (status, body) = anonymous.upload(vec![1, 2, 3], "text/plain", None).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (401, Some("M_MISSING_TOKEN"))
    );
}

#[tokio::test]
async fn legacy_unauthenticated_downloads_are_frozen_for_new_media() {
    // Default: frozen from the start, so nothing uploaded here is served without a token.
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let mxc = alice
        .upload_ok(image_bytes(64, 64, ImageFormat::Png), "image/png")
        .await;
    let anonymous = server.anonymous();
    for path in [
        format!("/_matrix/media/v3/download/{}", mxc_path(&mxc)),
        format!("/_matrix/media/v3/download/{}/a.png", mxc_path(&mxc)),
        format!(
            "/_matrix/media/v3/thumbnail/{}?width=32&height=32",
            mxc_path(&mxc)
        ),
    ] {
        let response = anonymous.get_response(&path).await;
        assert_eq!(
            error_of(response).await,
            (404, "M_NOT_FOUND".to_owned()),
            "{path}"
        );
    }
    assert_eq!(download(&alice, &mxc).await.status(), 200);

    // A server frozen in the future: media uploaded now is from before the freeze.
    let in_an_hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        + 3_600_000;
    let server = TestServer::builder()
        .config(|c| c.media.unauthenticated_frozen_since_ms = in_an_hour)
        .start()
        .await;
    let alice = server.register("alice").await;
    let png = image_bytes(64, 64, ImageFormat::Png);
    let mxc = alice.upload_ok(png.clone(), "image/png").await;
    let anonymous = server.anonymous();
    let response = anonymous
        .get_response(&format!("/_matrix/media/v3/download/{}", mxc_path(&mxc)))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    assert_eq!(
        response.bytes().await.expect("body").as_ref(),
        png.as_slice()
    );
    let response = anonymous
        .get_response(&format!(
            "/_matrix/media/v3/thumbnail/{}?width=32&height=32&method=crop",
            mxc_path(&mxc)
        ))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(dimensions(&response.bytes().await.expect("body")), (32, 32));
    // The deprecated config endpoint still answers, with a token.
    let (status, body) = alice.get("/_matrix/media/v3/config").await;
    assert_eq!(status, 200);
    assert_eq!(body["m.upload.size"], 50 * 1024 * 1024);
}

#[tokio::test]
async fn asynchronous_upload_waits_fills_once_and_only_for_its_creator() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let (status, created) = alice.post("/_matrix/media/v1/create", json!({})).await;
    assert_eq!(status, 200, "{created}");
    let mxc = created["content_uri"]
        .as_str()
        .expect("content_uri")
        .to_owned();
    assert!(created["unused_expires_at"].as_i64().expect("expiry") > 0);

    // Not uploaded yet: a short wait ends in 504 M_NOT_YET_UPLOADED.
    let response = alice
        .get_response(&format!(
            "/_matrix/client/v1/media/download/{}?timeout_ms=200",
            mxc_path(&mxc)
        ))
        .await;
    assert_eq!(
        error_of(response).await,
        (504, "M_NOT_YET_UPLOADED".to_owned())
    );

    // A download that waits gets the bytes as soon as they arrive.
    let waiting = tokio::spawn({
        let bob = bob.clone();
        let path = format!(
            "/_matrix/client/v1/media/download/{}?timeout_ms=20000",
            mxc_path(&mxc)
        );
        async move {
            let response = bob.get_response(&path).await;
            (
                response.status().as_u16(),
                response.bytes().await.expect("body").to_vec(),
            )
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let upload_path = format!("/_matrix/media/v3/upload/{}", mxc_path(&mxc));
    let (status, body) = bob
        .put_bytes(&upload_path, b"bob's".to_vec(), "text/plain")
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );

    let (status, body) = alice
        .put_bytes(&upload_path, b"hello, later".to_vec(), "text/plain")
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, bytes) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the waiting download finishes")
        .expect("task");
    assert_eq!(
        (status, bytes.as_slice()),
        (200, b"hello, later".as_slice())
    );

    let (status, body) = alice
        .put_bytes(&upload_path, b"again".to_vec(), "text/plain")
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (409, Some("M_CANNOT_OVERWRITE_MEDIA")),
        "{body}"
    );

    // Unknown IDs and other servers' media are not found.
    let (status, body) = alice
        .put_bytes(
            "/_matrix/media/v3/upload/kith.test/nosuchmedia",
            b"x".to_vec(),
            "text/plain",
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (404, Some("M_NOT_FOUND")),
        "{body}"
    );
    // Another server's media is fetched from it; one that cannot be reached is a 502.
    let response = alice
        .get_response("/_matrix/client/v1/media/download/localhost:1/abcdef")
        .await;
    assert_eq!(error_of(response).await, (502, "M_UNKNOWN".to_owned()));
}

#[tokio::test]
async fn active_content_is_served_as_an_attachment_under_a_sandbox() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    for (content_type, name) in [
        ("text/html", "evil.html"),
        ("image/svg+xml", "evil.svg"),
        ("application/javascript", "evil.js"),
    ] {
        let (status, body) = alice
            .upload(
                b"<script>alert(document.cookie)</script>".to_vec(),
                content_type,
                Some(name),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let mxc = body["content_uri"].as_str().expect("content_uri");
        let response = download(&alice, mxc).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "content-type"), content_type);
        assert_eq!(
            header(&response, "content-disposition"),
            format!("attachment; filename=\"{name}\"")
        );
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        assert_eq!(
            header(&response, "content-security-policy"),
            "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; \
             style-src 'unsafe-inline'; object-src 'self';"
        );
    }
}

#[tokio::test]
async fn a_corrupt_image_gets_a_clean_thumbnail_error_and_the_server_keeps_working() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let garbage = alice
        .upload_ok(
            b"\x89PNG\r\n\x1a\nthis is not really a png".to_vec(),
            "image/png",
        )
        .await;
    // A real PNG cut short: the header reads, the pixels do not.
    let mut truncated = image_bytes(300, 300, ImageFormat::Png);
    truncated.truncate(truncated.len() / 3);
    let truncated = alice.upload_ok(truncated, "image/png").await;
    let text = alice.upload_ok(b"just text".to_vec(), "text/plain").await;
    for mxc in [&garbage, &truncated, &text] {
        let response = thumbnail(&alice, mxc, 32, 32, "crop").await;
        let (status, errcode) = error_of(response).await;
        assert_eq!(status, 400, "{mxc}");
        assert_eq!(errcode, "M_UNKNOWN");
    }
    // Still serving.
    let good = alice
        .upload_ok(image_bytes(64, 64, ImageFormat::Png), "image/png")
        .await;
    let response = thumbnail(&alice, &good, 32, 32, "crop").await;
    assert_eq!(dimensions(&response.bytes().await.expect("body")), (32, 32));
}

/// A tiny web site on loopback: a page with OpenGraph tags, its image, and a redirect.
async fn start_web_site() -> String {
    use axum::{Router, http::header, response::Redirect, routing::get};
    let png = image_bytes(48, 24, ImageFormat::Png);
    let app = Router::new()
        .route(
            "/page",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    "<html><head><title>Ignored title</title>\
                     <meta property=\"og:title\" content=\"Kith &amp; friends\">\
                     <meta property=\"og:description\" content=\"A page for previews\">\
                     <meta property=\"og:image\" content=\"/image.png\">\
                     </head><body>Hello</body></html>",
                )
            }),
        )
        .route(
            "/image.png",
            get(move || {
                let png = png.clone();
                async move { ([(header::CONTENT_TYPE, "image/png")], png) }
            }),
        )
        .route("/moved", get(|| async { Redirect::temporary("/page") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_url_preview_of_a_loopback_page_when_private_addresses_are_allowed() {
    let site = start_web_site().await;
    let server = TestServer::builder()
        .config(|c| {
            c.media.url_preview_enabled = true;
            c.media.url_preview_allow_private = true;
        })
        .start()
        .await;
    let alice = server.register("alice").await;
    let url = url_encode(&format!("{site}/moved"));
    let (status, og) = alice
        .get(&format!("/_matrix/client/v1/media/preview_url?url={url}"))
        .await;
    assert_eq!(status, 200, "{og}");
    assert_eq!(og["og:title"], "Kith & friends");
    assert_eq!(og["og:description"], "A page for previews");
    assert_eq!(og["og:image:width"], 48);
    assert_eq!(og["og:image:height"], 24);
    assert_eq!(og["og:image:type"], "image/png");
    let image = og["og:image"].as_str().expect("og:image is set");
    assert!(image.starts_with("mxc://kith.test/"), "{image}");
    let response = download(&alice, image).await;
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.expect("body");
    assert_eq!(og["matrix:image:size"], bytes.len());
    assert_eq!(dimensions(&bytes), (48, 24));

    // An image URL previews as itself; the deprecated path answers too.
    let url = url_encode(&format!("{site}/image.png"));
    let (status, og) = alice
        .get(&format!("/_matrix/media/v3/preview_url?url={url}"))
        .await;
    assert_eq!(status, 200, "{og}");
    assert_eq!(og["og:image:width"], 48);
}

#[tokio::test]
async fn url_previews_refuse_loopback_and_private_addresses_and_are_off_by_default() {
    let site = start_web_site().await;
    let port = site.rsplit(':').next().expect("port");
    let server = TestServer::builder()
        .config(|c| c.media.url_preview_enabled = true)
        .start()
        .await;
    let alice = server.register("alice").await;
    for url in [
        format!("{site}/page"),
        format!("http://localhost:{port}/page"),
        format!("http://[::1]:{port}/page"),
        "http://10.0.0.1/".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
    ] {
        let (status, body) = alice
            .get(&format!(
                "/_matrix/client/v1/media/preview_url?url={}",
                url_encode(&url)
            ))
            .await;
        assert_eq!(
            (status, body["errcode"].as_str()),
            (403, Some("M_FORBIDDEN")),
            "{url}: {body}"
        );
    }
    let (status, body) = alice
        .get("/_matrix/client/v1/media/preview_url?url=file%3A%2F%2F%2Fetc%2Fpasswd")
        .await;
    assert_eq!(status, 400, "{body}");

    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (status, body) = alice
        .get(&format!(
            "/_matrix/client/v1/media/preview_url?url={}",
            url_encode(&format!("{site}/page"))
        ))
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (404, Some("M_UNRECOGNIZED")),
        "{body}"
    );
}

#[tokio::test]
async fn a_matrix_sdk_client_uploads_and_downloads_media_and_thumbnails() {
    use matrix_sdk::{
        media::{MediaFormat, MediaRequestParameters, MediaThumbnailSettings},
        ruma::{
            UInt, api::client::media::get_content_thumbnail::v3::Method, events::room::MediaSource,
        },
    };
    let server = TestServer::start().await;
    let client = matrix_sdk::Client::builder()
        .homeserver_url(&server.base_url)
        .build()
        .await
        .expect("client builds");
    let mut request = matrix_sdk::ruma::api::client::account::register::v3::Request::new();
    request.username = Some("alice".to_owned());
    request.password = Some("password".to_owned());
    request.auth = Some(matrix_sdk::ruma::api::client::uiaa::AuthData::Dummy(
        Default::default(),
    ));
    client
        .matrix_auth()
        .register(request)
        .await
        .expect("registers");

    let png = image_bytes(320, 160, ImageFormat::Png);
    let uploaded = client
        .media()
        .upload(&mime::IMAGE_PNG, png.clone(), None)
        .await
        .expect("uploads");
    // Kith advertises v1.11 in /versions, so the SDK downloads through the authenticated
    // endpoints; the unauthenticated ones are frozen for new media and would fail.
    let source = MediaSource::Plain(uploaded.content_uri.clone());
    let file = client
        .media()
        .get_media_content(
            &MediaRequestParameters {
                source: source.clone(),
                format: MediaFormat::File,
            },
            false,
        )
        .await
        .expect("downloads");
    assert_eq!(file, png);
    let thumb = client
        .media()
        .get_media_content(
            &MediaRequestParameters {
                source,
                format: MediaFormat::Thumbnail(MediaThumbnailSettings::with_method(
                    Method::Crop,
                    UInt::from(64u32),
                    UInt::from(64u32),
                )),
            },
            false,
        )
        .await
        .expect("thumbnail");
    assert_eq!(dimensions(&thumb), (64, 64));
}
