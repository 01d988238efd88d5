//! The checks every camera id and photo must pass, wherever they enter the stack.
//!
//! Each failure is an [`InputError`] whose HTTP status and JSON body are decided in one place
//! (its `ResponseError` implementation in [`crate::http`]).

use std::io::Cursor;

use image::{ImageFormat, ImageReader};

/// The longest camera id accepted.
pub const CAMERA_ID_MAX_LEN: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    #[error("camera id {0:?} is invalid: use 1 to 64 characters from A-Z, a-z, 0-9, '_' and '-'")]
    InvalidCameraId(String),
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("{0}")]
    Malformed(String),
    #[error("body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error(
        "the uploaded bytes are not a supported image (JPEG, PNG or WebP, recognised by content, not by name or Content-Type)"
    )]
    UnsupportedMedia,
    #[error("image is {width}x{height} = {pixels} pixels, over the limit of {limit} pixels")]
    TooManyPixels {
        width: u32,
        height: u32,
        pixels: u64,
        limit: u64,
    },
    #[error("the image is damaged or cannot be decoded: {0}")]
    Undecodable(String),
    #[error("{0}")]
    InvalidIdempotencyKey(String),
    #[error("{0}")]
    InvalidCaptureTime(String),
}

/// A camera id that passed [`CameraId::parse`]: safe in URLs, file names and HTML.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CameraId(String);

impl CameraId {
    pub fn parse(raw: &str) -> Result<Self, InputError> {
        let valid = !raw.is_empty()
            && raw.len() <= CAMERA_ID_MAX_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            // Echo at most a prefix back: the error body must stay small whatever was sent.
            let shown: String = raw.chars().take(CAMERA_ID_MAX_LEN + 16).collect();
            Err(InputError::InvalidCameraId(shown))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::fmt::Display for CameraId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The image formats the stack decodes.
pub const SUPPORTED_FORMATS: [ImageFormat; 3] =
    [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP];

/// Recognises the format from the leading magic bytes, ignoring any name or Content-Type.
pub fn sniff_format(bytes: &[u8]) -> Result<ImageFormat, InputError> {
    match image::guess_format(bytes) {
        Ok(format) if SUPPORTED_FORMATS.contains(&format) => Ok(format),
        _ => Err(InputError::UnsupportedMedia),
    }
}

/// What the header of an accepted photo says, read without decoding the pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhotoHeader {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
}

/// Checks that `bytes` are a supported image whose header-declared size is within `max_pixels`.
/// Reads only the header, so a decompression bomb is refused before any pixel is allocated.
pub fn check_photo(bytes: &[u8], max_pixels: u64) -> Result<PhotoHeader, InputError> {
    let format = sniff_format(bytes)?;
    let (width, height) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| InputError::Undecodable(e.to_string()))?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(InputError::TooManyPixels {
            width,
            height,
            pixels,
            limit: max_pixels,
        });
    }
    if pixels == 0 {
        return Err(InputError::Undecodable("the image has no pixels".into()));
    }
    Ok(PhotoHeader {
        format,
        width,
        height,
    })
}

/// The longest idempotency key accepted.
pub const IDEMPOTENCY_KEY_MAX_LEN: usize = 128;
/// How far ahead of the server's clock a capture time may be (cameras' clocks drift).
pub const CAPTURE_TIME_MAX_AHEAD_MS: i64 = 5 * 60 * 1000;

/// A camera's idempotency key (`Idempotency-Key` header or `idempotency_key` field): 1 to 128
/// printable ASCII characters. The same key for the same camera means the same photo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, InputError> {
        let valid = !raw.is_empty()
            && raw.len() <= IDEMPOTENCY_KEY_MAX_LEN
            && raw.bytes().all(|b| (0x21..=0x7e).contains(&b));
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InputError::InvalidIdempotencyKey(format!(
                "the idempotency key must be 1 to {IDEMPOTENCY_KEY_MAX_LEN} printable ASCII characters without spaces"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The event id of this camera's photo with this key: the same wherever and however often
    /// it is counted, so every store recognises a retry by it.
    pub fn event_id(&self, camera: &CameraId) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(format!("{camera}\n{}", self.0).as_bytes());
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("idem-{hex}")
    }
}

/// Parses a capture time (RFC 3339, e.g. `2026-12-01T14:03:07Z` or with an offset) and checks
/// that it lies between `max_age_ms` before `now_ms` and a few minutes after it. Returns Unix
/// milliseconds.
pub fn parse_capture_time(raw: &str, now_ms: i64, max_age_ms: i64) -> Result<i64, InputError> {
    use time::format_description::well_known::Rfc3339;
    let parsed = time::OffsetDateTime::parse(raw.trim(), &Rfc3339).map_err(|e| {
        InputError::InvalidCaptureTime(format!(
            "capture time {:?} is not an RFC 3339 time such as 2026-12-01T14:03:07Z: {e}",
            raw.chars().take(64).collect::<String>()
        ))
    })?;
    let at_ms = (parsed.unix_timestamp_nanos() / 1_000_000) as i64;
    if at_ms > now_ms + CAPTURE_TIME_MAX_AHEAD_MS {
        return Err(InputError::InvalidCaptureTime(format!(
            "capture time {raw} is {} s ahead of the server's clock (at most {} s allowed)",
            (at_ms - now_ms) / 1000,
            CAPTURE_TIME_MAX_AHEAD_MS / 1000
        )));
    }
    if at_ms < now_ms - max_age_ms {
        return Err(InputError::InvalidCaptureTime(format!(
            "capture time {raw} is older than the history kept ({} hours)",
            max_age_ms / 3_600_000
        )));
    }
    Ok(at_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_and_their_event_ids() {
        let camera = CameraId::parse("gate-1").unwrap();
        let key = IdempotencyKey::parse("gate-1/2026-12-01T14:03:07Z").unwrap();
        let id = key.event_id(&camera);
        assert!(id.starts_with("idem-") && id.len() == 37, "{id}");
        assert_eq!(id, key.event_id(&camera), "stable");
        let other = CameraId::parse("gate-2").unwrap();
        assert_ne!(id, key.event_id(&other), "scoped to the camera");
        for bad in ["", "with space", "é", &"x".repeat(129)] {
            assert!(matches!(
                IdempotencyKey::parse(bad),
                Err(InputError::InvalidIdempotencyKey(_))
            ));
        }
    }

    #[test]
    fn capture_times_are_bounded_around_now() {
        let now = 1_796_000_000_000; // 2026-11-30
        let day = 86_400_000;
        let ok = parse_capture_time("2026-11-29T23:00:00+01:00", now, day).unwrap();
        assert_eq!(ok, 1_795_989_600_000);
        assert!(matches!(
            parse_capture_time("2027-01-01T00:00:00Z", now, day),
            Err(InputError::InvalidCaptureTime(_))
        ));
        assert!(matches!(
            parse_capture_time("2025-11-30T00:00:00Z", now, day),
            Err(InputError::InvalidCaptureTime(_))
        ));
        assert!(matches!(
            parse_capture_time("yesterday", now, day),
            Err(InputError::InvalidCaptureTime(_))
        ));
    }

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        image::RgbImage::new(width, height)
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn camera_ids_follow_the_documented_rule() {
        for ok in ["a", "gate-3", "North_Entrance", &"x".repeat(64)] {
            assert_eq!(CameraId::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "a b", "a/b", "é", "<img>", &"x".repeat(65)] {
            assert!(matches!(
                CameraId::parse(bad),
                Err(InputError::InvalidCameraId(_))
            ));
        }
    }

    #[test]
    fn formats_are_recognised_by_content() {
        assert_eq!(sniff_format(&png(2, 2)).unwrap(), ImageFormat::Png);
        assert_eq!(
            sniff_format(b"GIF89a......"),
            Err(InputError::UnsupportedMedia)
        );
        assert_eq!(
            sniff_format(b"hello world"),
            Err(InputError::UnsupportedMedia)
        );
        assert_eq!(sniff_format(b""), Err(InputError::UnsupportedMedia));
    }

    #[test]
    fn pixel_limit_is_checked_from_the_header() {
        let photo = png(100, 50);
        assert_eq!(check_photo(&photo, 5_000).unwrap().width, 100);
        assert!(matches!(
            check_photo(&photo, 4_999),
            Err(InputError::TooManyPixels { pixels: 5_000, .. })
        ));
    }

    #[test]
    fn a_damaged_header_is_undecodable() {
        let mut photo = png(10, 10);
        photo.truncate(12);
        assert!(matches!(
            check_photo(&photo, 1_000),
            Err(InputError::Undecodable(_))
        ));
    }
}
