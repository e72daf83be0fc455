//! The media phases: upload and download throughput of 1 MiB files, and thumbnail latency.
//!
//! Each file is different (a counter seeds its bytes), so a server that shares storage
//! between identical uploads cannot skip work. Thumbnails are asked at 320×240 (`scale`)
//! and 96×96 (`crop`), the sizes Element asks for. Synapse makes its configured sizes when a
//! file is uploaded (its default), Kith when one is first asked for, so both the first
//! request for a thumbnail and a repeat are timed; each server's cost of making thumbnails
//! shows in one of the two, and Synapse's also in its upload time.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Client, PHASE_BUDGET, Result, cpu_ms, percentile};

/// Files uploaded and then downloaded, for throughput.
const FILES: usize = 40;
/// Size of each file.
const FILE_BYTES: usize = 1024 * 1024;
/// Images uploaded, each thumbnailed twice in each of two sizes.
const IMAGES: usize = 20;

/// `size` bytes that differ for each `seed` (xorshift; no need for real randomness).
fn distinct_bytes(seed: u64, size: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A 1600×1200 PNG photo stand-in (a gradient), different for each `seed`.
fn png(seed: u32) -> Result<Vec<u8>> {
    let image = image::RgbImage::from_fn(1600, 1200, |x, y| {
        image::Rgb([(x / 7) as u8, (y / 5) as u8, ((x + y + seed) % 251) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| format!("encoding the test image: {e}"))?;
    Ok(out.into_inner())
}

impl Client {
    /// Uploads `bytes`; returns the `mxc://` URI's server/media-id part.
    async fn upload(&self, bytes: Vec<u8>, content_type: &str, name: &str) -> Result<String> {
        let response = self
            .http
            .post(format!(
                "{}/_matrix/media/v3/upload?filename={name}",
                self.base
            ))
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .map_err(|e| format!("upload: {e}"))?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| format!("upload: {e}"))?;
        if !status.is_success() {
            return Err(format!("upload: {status} {body}"));
        }
        body["content_uri"]
            .as_str()
            .and_then(|uri| uri.strip_prefix("mxc://"))
            .map(str::to_owned)
            .ok_or_else(|| format!("upload: no content_uri in {body}"))
    }

    /// GETs an authenticated media path; returns the body's length.
    async fn fetch_media(&self, path: &str) -> Result<usize> {
        let response = self
            .http
            .get(format!("{}/_matrix/client/v1/media/{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| format!("{path}: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "{path}: {status} {}",
                String::from_utf8_lossy(&body)
            ));
        }
        Ok(body.len())
    }
}

/// Runs the media phases as `alice` against the server with process `pid`.
pub(super) async fn run(name: &str, alice: &Client, pid: u32) -> Result<Value> {
    eprintln!("[{name}] media: {FILES} uploads and downloads of 1 MiB");
    let mut uploaded = Vec::new();
    let cpu_before = cpu_ms(pid)?;
    let started = Instant::now();
    for i in 0..FILES {
        if started.elapsed() >= PHASE_BUDGET {
            break;
        }
        let bytes = distinct_bytes(i as u64 + 1, FILE_BYTES);
        uploaded.push(
            alice
                .upload(bytes, "application/octet-stream", &format!("file{i}.bin"))
                .await?,
        );
    }
    let upload_secs = started.elapsed().as_secs_f64();
    let upload_cpu = cpu_ms(pid)? - cpu_before;

    let cpu_before = cpu_ms(pid)?;
    let started = Instant::now();
    let mut downloaded = 0usize;
    let mut download_bytes = 0usize;
    for media in &uploaded {
        if started.elapsed() >= PHASE_BUDGET {
            break;
        }
        let len = alice.fetch_media(&format!("download/{media}")).await?;
        if len != FILE_BYTES {
            return Err(format!("download of {media} gave {len} bytes"));
        }
        download_bytes += len;
        downloaded += 1;
    }
    let download_secs = started.elapsed().as_secs_f64();
    let download_cpu = cpu_ms(pid)? - cpu_before;

    eprintln!("[{name}] thumbnails: {IMAGES} images of 1600x1200");
    let mut image_upload = Vec::new();
    let mut first = Vec::new();
    let mut repeat = Vec::new();
    let cpu_before = cpu_ms(pid)?;
    let started = Instant::now();
    for i in 0..IMAGES {
        if started.elapsed() >= PHASE_BUDGET {
            break;
        }
        let bytes = png(i as u32)?;
        let t = Instant::now();
        let media = alice
            .upload(bytes, "image/png", &format!("photo{i}.png"))
            .await?;
        image_upload.push(t.elapsed());
        for query in [
            "width=320&height=240&method=scale",
            "width=96&height=96&method=crop",
        ] {
            let path = format!("thumbnail/{media}?{query}");
            let t = Instant::now();
            alice.fetch_media(&path).await?;
            first.push(t.elapsed());
            let t = Instant::now();
            alice.fetch_media(&path).await?;
            repeat.push(t.elapsed());
        }
    }
    let thumbnail_cpu = (cpu_ms(pid)? - cpu_before) / image_upload.len().max(1) as f64;

    let mib = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
    Ok(json!({
        "upload_mib_per_s": mib(uploaded.len() * FILE_BYTES) / upload_secs,
        "download_mib_per_s": mib(download_bytes) / download_secs,
        "cpu_ms_per_upload": upload_cpu / uploaded.len().max(1) as f64,
        "cpu_ms_per_download": download_cpu / downloaded.max(1) as f64,
        "image_upload_p50_ms": percentile(&mut image_upload, 0.5),
        "thumbnail_first_p50_ms": percentile(&mut first, 0.5),
        "thumbnail_repeat_p50_ms": percentile(&mut repeat, 0.5),
        "cpu_ms_per_image": thumbnail_cpu,
        "files": uploaded.len(),
        "images": first.len() / 2,
    }))
}
