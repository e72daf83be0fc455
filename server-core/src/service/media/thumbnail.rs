//! Thumbnail geometry and image work (spec: client-server-api/modules/content_repo.md,
//! "Thumbnails"). Pure functions, run by the media service on a blocking thread.
//!
//! The rules encoded here: the requested size is the *minimum* the client wants; a server
//! MUST NOT upscale and MUST NOT return a smaller image than asked unless the original is
//! smaller, in which case it returns the original. `scale` keeps the original's aspect
//! ratio; `crop` returns the requested aspect ratio.
//!
//! Requests are first rounded up to a few standard sizes ([`standard`]), so a client cannot
//! make the server decode and store a new thumbnail for every pixel count it can name.
//!
//! Hostile images: decoding runs under `image::Limits` (dimensions and total allocation),
//! so a decompression bomb is refused before its pixels are allocated, and every decoder
//! error is an error value, never a panic. Shrinking uses `imageops::thumbnail` on a view of
//! the decoded image, which allocates only the small result.

use std::io::Cursor;

use image::{
    DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, imageops,
    metadata::Orientation,
};

use crate::error::{Error, ErrorKind, Result};

/// Larger images (in either dimension) are not thumbnailed: `413 M_TOO_LARGE`.
const MAX_DIMENSION: u32 = 10_000;
/// The most memory one decode may allocate. About 33 megapixels of RGBA; photos from
/// phones fit, a bomb does not.
const MAX_ALLOC: u64 = 128 * 1024 * 1024;

/// How to fit the image to the requested size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Cover the requested box exactly, cutting the overflow (requested aspect ratio).
    Crop,
    /// Keep the aspect ratio; both sides at least the requested ones.
    Scale,
}

impl Method {
    /// The name in requests and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crop => "crop",
            Self::Scale => "scale",
        }
    }
}

/// The side lengths requests are rounded up to; larger requests get the original.
const STANDARD_SIDES: [u32; 14] = [
    32, 64, 96, 128, 240, 320, 480, 600, 640, 800, 960, 1280, 1600, 1920,
];

/// The size to make for a request: each side rounded up to a standard length (`scale`), or
/// both sides scaled by one factor so the aspect ratio stays (`crop`). Never smaller than
/// asked, as the spec requires. `None` when the request is larger than any standard size:
/// then the original is the answer (it is the only image not smaller than asked that needs
/// no upscaling).
pub fn standard(requested: (u32, u32), method: Method) -> Option<(u32, u32)> {
    let (rw, rh) = (requested.0.max(1), requested.1.max(1));
    let round_up = |n: u32| STANDARD_SIDES.iter().copied().find(|&side| side >= n);
    match method {
        Method::Scale => Some((round_up(rw)?, round_up(rh)?)),
        Method::Crop => {
            let long = rw.max(rh);
            let side = u64::from(round_up(long)?);
            let scaled = |n: u32| to_u32((u64::from(n) * side).div_ceil(u64::from(long)));
            Some((scaled(rw), scaled(rh)))
        }
    }
}

/// A rectangle to cut from the original and the size to resize it to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Left, top, width, height of the part of the original kept.
    pub crop: (u32, u32, u32, u32),
    /// The size of the thumbnail.
    pub size: (u32, u32),
}

/// What to do with an original of `original` size for a request of `requested` size, or
/// `None` to serve the original as it is (it is already small enough: spec, "Thumbnails":
/// "When the content is smaller than the requested dimensions, servers should return the
/// original content"; "Servers MUST NOT upscale thumbnails").
pub fn plan(original: (u32, u32), requested: (u32, u32), method: Method) -> Option<Plan> {
    let (ow, oh) = (u64::from(original.0.max(1)), u64::from(original.1.max(1)));
    let (rw, rh) = (u64::from(requested.0.max(1)), u64::from(requested.1.max(1)));
    if ow <= rw && oh <= rh {
        return None;
    }
    match method {
        Method::Scale => {
            // The smallest size with the original's aspect ratio that still covers the
            // requested box: the requested size is the minimum the client wants.
            // Compare rw/ow with rh/oh without floating point.
            let (tw, th) = if rw * oh >= rh * ow {
                (rw, (oh * rw).div_ceil(ow))
            } else {
                ((ow * rh).div_ceil(oh), rh)
            };
            if tw >= ow || th >= oh {
                return None; // only an upscale would cover the box
            }
            Some(Plan {
                crop: (0, 0, original.0, original.1),
                size: (to_u32(tw), to_u32(th)),
            })
        }
        Method::Crop => {
            let (cw, ch) = if ow >= rw && oh >= rh {
                // The largest centred part of the original with the requested aspect
                // ratio, to be scaled down to the requested size.
                if ow * rh > oh * rw {
                    ((oh * rw / rh).max(1), oh)
                } else {
                    (ow, (ow * rh / rw).max(1))
                }
            } else {
                // One side is shorter than asked: keep it whole and cut the other to the
                // requested length, without scaling ("MUST NOT return a smaller thumbnail
                // than requested, unless the original content makes that impossible").
                (ow.min(rw), oh.min(rh))
            };
            let crop = (
                to_u32((ow - cw) / 2),
                to_u32((oh - ch) / 2),
                to_u32(cw),
                to_u32(ch),
            );
            let size = (to_u32(cw.min(rw)), to_u32(ch.min(rh)));
            Some(Plan { crop, size })
        }
    }
}

fn to_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The result of thumbnailing.
pub enum Outcome {
    /// Serve the original bytes, with this content type (from the bytes, not the uploader).
    Original {
        /// What the bytes are.
        content_type: &'static str,
    },
    /// A new thumbnail.
    Thumbnail {
        /// Its encoded bytes.
        bytes: Vec<u8>,
        /// Its content type.
        content_type: &'static str,
    },
}

fn cannot_thumbnail() -> Error {
    Error::new(
        ErrorKind::Unknown,
        "Cannot generate a thumbnail for this content.",
    )
}

fn image_error(e: ImageError) -> Error {
    match e {
        ImageError::Limits(_) => Error::new(
            ErrorKind::TooLarge,
            "The image is too large for this server to thumbnail.",
        ),
        _ => cannot_thumbnail(),
    }
}

fn reader(bytes: &[u8]) -> Result<(ImageReader<Cursor<&[u8]>>, ImageFormat)> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|_| cannot_thumbnail())?;
    let format = reader.format().ok_or_else(cannot_thumbnail)?;
    if !matches!(
        format,
        ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Gif | ImageFormat::WebP
    ) {
        return Err(cannot_thumbnail());
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    Ok((reader, format))
}

fn mime_of(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "image/jpeg",
        ImageFormat::Gif => "image/gif",
        ImageFormat::WebP => "image/webp",
        _ => "image/png",
    }
}

/// The pixel size and content type of an image, read from its header only; `None` if it is
/// not a JPEG, PNG, GIF or WebP (for URL previews' `og:image:width` and `og:image:type`).
pub fn probe(bytes: &[u8]) -> Option<((u32, u32), &'static str)> {
    let (reader, format) = reader(bytes).ok()?;
    let size = reader.into_dimensions().ok()?;
    Some((size, mime_of(format)))
}

/// Whether an EXIF orientation turns the image by a quarter (width and height swap).
fn swaps_sides(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// Cuts `plan.crop` out of `image` and shrinks it to `plan.size`, allocating only the result.
fn shrink(image: &DynamicImage, plan: Plan) -> DynamicImage {
    let (x, y, w, h) = plan.crop;
    let (tw, th) = plan.size;
    match image {
        DynamicImage::ImageRgb8(buffer) => DynamicImage::ImageRgb8(imageops::thumbnail(
            &*imageops::crop_imm(buffer, x, y, w, h),
            tw,
            th,
        )),
        DynamicImage::ImageLuma8(buffer) => DynamicImage::ImageLuma8(imageops::thumbnail(
            &*imageops::crop_imm(buffer, x, y, w, h),
            tw,
            th,
        )),
        DynamicImage::ImageLumaA8(buffer) => DynamicImage::ImageLumaA8(imageops::thumbnail(
            &*imageops::crop_imm(buffer, x, y, w, h),
            tw,
            th,
        )),
        DynamicImage::ImageRgba8(buffer) => DynamicImage::ImageRgba8(imageops::thumbnail(
            &*imageops::crop_imm(buffer, x, y, w, h),
            tw,
            th,
        )),
        // 16-bit and float images: read through the generic RGBA8 view.
        other => DynamicImage::ImageRgba8(imageops::thumbnail(
            &*imageops::crop_imm(other, x, y, w, h),
            tw,
            th,
        )),
    }
}

/// Makes a thumbnail of `bytes` (a JPEG, PNG, GIF or WebP) for the requested size and method
/// (already rounded by [`standard`]). The EXIF orientation is applied, so a phone's portrait
/// photo is upright. Animated images give a still of their first frame; when the original
/// is already small enough it is served as it is only if it cannot be animated (JPEG) or
/// the client asked for `animated=true` (spec: content_repo.md, the `animated` parameter:
/// with `false` the server MUST NOT return an animated thumbnail).
pub fn make(
    bytes: &[u8],
    requested: (u32, u32),
    method: Method,
    animated: bool,
) -> Result<Outcome> {
    let (reader, format) = reader(bytes)?;
    let mut decoder = reader.into_decoder().map_err(image_error)?;
    let dimensions = decoder.dimensions();
    if dimensions.0 > MAX_DIMENSION || dimensions.1 > MAX_DIMENSION {
        return Err(image_error(ImageError::Limits(
            image::error::LimitError::from_kind(image::error::LimitErrorKind::DimensionError),
        )));
    }
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    // Plan on the stored pixels: a quarter turn swaps which requested side is which. The
    // cut is centred, so it is the same region whichever way the image is turned.
    let raw_request = if swaps_sides(orientation) {
        (requested.1, requested.0)
    } else {
        requested
    };
    let plan = plan(dimensions, raw_request, method);
    if plan.is_none() && (format == ImageFormat::Jpeg || animated) {
        return Ok(Outcome::Original {
            content_type: mime_of(format),
        });
    }
    let image = DynamicImage::from_decoder(decoder).map_err(image_error)?;
    let mut thumbnail = match plan {
        Some(plan) => shrink(&image, plan),
        // Small already, but maybe animated: the first frame, re-encoded below.
        None => image,
    };
    thumbnail.apply_orientation(orientation);
    let mut out = Cursor::new(Vec::new());
    // Photos stay JPEG (small); everything else becomes PNG (keeps transparency).
    let content_type = if format == ImageFormat::Jpeg {
        DynamicImage::ImageRgb8(thumbnail.to_rgb8())
            .write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(
                &mut out, 80,
            ))
            .map_err(|e| Error::internal(format!("jpeg encode: {e}")))?;
        "image/jpeg"
    } else {
        thumbnail
            .write_to(&mut out, ImageFormat::Png)
            .map_err(|e| Error::internal(format!("png encode: {e}")))?;
        "image/png"
    };
    Ok(Outcome::Thumbnail {
        bytes: out.into_inner(),
        content_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_keeps_the_aspect_ratio_and_covers_the_requested_box() {
        let p = plan((1000, 500), (320, 240), Method::Scale).expect("downscale");
        assert_eq!(p.size, (480, 240));
        let p = plan((500, 1000), (320, 240), Method::Scale).expect("downscale");
        assert_eq!(p.size, (320, 640));
    }

    #[test]
    fn crop_gives_the_exact_size_when_the_original_is_large_enough() {
        let p = plan((1000, 500), (96, 96), Method::Crop).expect("crop");
        assert_eq!(p.size, (96, 96));
        assert_eq!(p.crop, (250, 0, 500, 500));
    }

    #[test]
    fn never_upscales() {
        assert_eq!(plan((100, 80), (320, 240), Method::Scale), None);
        assert_eq!(plan((100, 80), (320, 240), Method::Crop), None);
        // Wider than asked but too short: scaling would need an upscale.
        assert_eq!(plan((1000, 100), (320, 240), Method::Scale), None);
        // Crop cannot reach 240 high: it keeps the full height and cuts 320 wide.
        let p = plan((1000, 100), (320, 240), Method::Crop).expect("crop");
        assert_eq!(p.size, (320, 100));
        assert_eq!(p.crop, (340, 0, 320, 100));
    }

    #[test]
    fn requests_round_up_to_standard_sizes() {
        assert_eq!(standard((96, 96), Method::Crop), Some((96, 96)));
        assert_eq!(standard((100, 100), Method::Scale), Some((128, 128)));
        assert_eq!(standard((320, 240), Method::Scale), Some((320, 240)));
        assert_eq!(standard((321, 10), Method::Scale), Some((480, 32)));
        // Crop keeps the requested aspect ratio.
        assert_eq!(standard((100, 50), Method::Crop), Some((128, 64)));
        assert_eq!(standard((1, 1), Method::Crop), Some((32, 32)));
        // Larger than any standard size: the original.
        assert_eq!(standard((4000, 10), Method::Scale), None);
        assert_eq!(standard((10, 2000), Method::Crop), None);
    }

    #[test]
    fn an_exif_rotated_photo_comes_out_upright() {
        // A landscape-stored JPEG marked "rotate 90": its thumbnail is portrait.
        let mut jpeg = Vec::new();
        DynamicImage::new_rgb8(400, 200)
            .write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg)
            .expect("encode");
        // An APP1 Exif segment with one IFD0 entry: Orientation (0x0112) = 6 (rotate 90).
        let exif: [u8; 36] = [
            0xFF, 0xE1, 0x00, 0x22, b'E', b'x', b'i', b'f', 0, 0, b'M', b'M', 0, 0x2A, 0, 0, 0, 8,
            0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0,
        ];
        jpeg.splice(2..2, exif);
        let Outcome::Thumbnail { bytes, .. } =
            make(&jpeg, (96, 96), Method::Scale, false).expect("thumbnail")
        else {
            panic!("expected a new thumbnail");
        };
        let thumbnail = image::load_from_memory(&bytes).expect("decodes");
        assert_eq!((thumbnail.width(), thumbnail.height()), (96, 192));
    }

    #[test]
    fn a_small_gif_is_re_encoded_unless_animation_is_asked_for() {
        let mut gif = Vec::new();
        DynamicImage::new_rgba8(20, 10)
            .write_to(&mut Cursor::new(&mut gif), ImageFormat::Gif)
            .expect("encode");
        assert!(matches!(
            make(&gif, (32, 32), Method::Crop, false),
            Ok(Outcome::Thumbnail {
                content_type: "image/png",
                ..
            })
        ));
        assert!(matches!(
            make(&gif, (32, 32), Method::Crop, true),
            Ok(Outcome::Original {
                content_type: "image/gif"
            })
        ));
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn garbage_and_bombs_are_errors_not_panics() {
        assert!(make(b"not an image at all", (32, 32), Method::Crop, false).is_err());
        let mut png = Vec::new();
        DynamicImage::new_rgb8(64, 64)
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .expect("encode");
        png.truncate(png.len() / 2);
        assert!(make(&png, (32, 32), Method::Crop, false).is_err());
        // A PNG header that claims 60000x60000 pixels.
        let mut bomb = Vec::new();
        DynamicImage::new_luma8(1, 1)
            .write_to(&mut Cursor::new(&mut bomb), ImageFormat::Png)
            .expect("encode");
        bomb[16..20].copy_from_slice(&60_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&60_000u32.to_be_bytes());
        let crc = crc32(&bomb[12..29]);
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        let error = make(&bomb, (32, 32), Method::Crop, false)
            .err()
            .expect("refused");
        assert!(matches!(
            error,
            Error::Matrix {
                kind: ErrorKind::TooLarge,
                ..
            }
        ));
    }
}
