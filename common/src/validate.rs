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

#[cfg(test)]
mod tests {
    use super::*;

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
