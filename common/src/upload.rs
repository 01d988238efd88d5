//! Reading a photo out of a request, with a hard byte limit, in both accepted forms:
//! a multipart form (`camera_id` + `imageFileField`) or a raw body.
//! Bodies are read chunk by chunk and refused as soon as they pass the limit, so no request
//! can make a service buffer more than the limit.

use actix_multipart::Multipart;
use actix_web::{HttpRequest, http::header, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::validate::{CameraId, IdempotencyKey, InputError, parse_capture_time};

/// Multipart field holding the camera id (the name the original stack used).
pub const CAMERA_FIELD: &str = "camera_id";
/// Multipart field holding the photo (the name the original stack used).
pub const PHOTO_FIELD: &str = "imageFileField";
/// Optional multipart field: the camera's idempotency key (or the `Idempotency-Key` header).
pub const IDEMPOTENCY_KEY_FIELD: &str = "idempotency_key";
/// Optional multipart field: when the photo was taken, RFC 3339 (or the `Capture-Time` header).
pub const CAPTURE_TIME_FIELD: &str = "capture_time";
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";
pub const CAPTURE_TIME_HEADER: &str = "Capture-Time";
/// A text field is short; anything longer is refused before it is buffered.
const MAX_TEXT_FIELD_BYTES: usize = 1024;

/// A photo as it arrived, before any decoding.
#[derive(Debug, Clone)]
pub struct UploadedPhoto {
    pub camera: CameraId,
    pub bytes: Bytes,
    /// The form's optional text fields, unchecked (see [`upload_options`]).
    pub idempotency_key: Option<String>,
    pub capture_time: Option<String>,
}

/// An upload's optional idempotency key and capture time, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadOptions {
    pub idempotency_key: Option<IdempotencyKey>,
    /// When the photo was taken, Unix milliseconds.
    pub captured_at_ms: Option<i64>,
}

/// The idempotency key and capture time of an upload, from its headers or else from its form
/// fields, checked: a capture time more than a few minutes ahead of `now_ms` or older than
/// `max_age_ms` is refused.
pub fn upload_options(
    req: &HttpRequest,
    form_key: Option<&str>,
    form_time: Option<&str>,
    now_ms: i64,
    max_age_ms: i64,
) -> Result<UploadOptions, InputError> {
    let header = |name: &str| -> Result<Option<String>, InputError> {
        match req.headers().get(name) {
            None => Ok(None),
            Some(value) => value
                .to_str()
                .map(|v| Some(v.trim().to_owned()))
                .map_err(|_| InputError::Malformed(format!("the {name} header is not ASCII text"))),
        }
    };
    let key = header(IDEMPOTENCY_KEY_HEADER)?.or_else(|| form_key.map(str::to_owned));
    let time = header(CAPTURE_TIME_HEADER)?.or_else(|| form_time.map(str::to_owned));
    Ok(UploadOptions {
        idempotency_key: key
            .filter(|k| !k.is_empty())
            .map(|k| IdempotencyKey::parse(&k))
            .transpose()?,
        captured_at_ms: time
            .filter(|t| !t.is_empty())
            .map(|t| parse_capture_time(&t, now_ms, max_age_ms))
            .transpose()?,
    })
}

/// Refuses a request early when its declared Content-Length is already over the limit.
fn check_declared_length(req: &HttpRequest, limit: usize) -> Result<(), InputError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit as u64 => Err(InputError::BodyTooLarge { limit }),
        _ => Ok(()),
    }
}

/// Reads a raw body of at most `limit` bytes.
pub async fn read_raw_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, InputError> {
    check_declared_length(req, limit)?;
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| InputError::Malformed(format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(InputError::BodyTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    if body.is_empty() {
        return Err(InputError::Missing("photo: the request body is empty"));
    }
    Ok(body.freeze())
}

/// Reads the photo and its camera id from a multipart form whose whole body is at most `limit`
/// bytes. Unknown fields are skipped; a second photo is refused (one photo per request).
pub async fn read_photo_form(
    req: &HttpRequest,
    mut form: Multipart,
    limit: usize,
) -> Result<UploadedPhoto, InputError> {
    check_declared_length(req, limit)?;
    let mut camera: Option<String> = None;
    let mut idempotency_key: Option<String> = None;
    let mut capture_time: Option<String> = None;
    let mut photo: Option<Bytes> = None;
    let mut read = 0usize;
    while let Some(field) = form.next().await {
        let mut field =
            field.map_err(|e| InputError::Malformed(format!("reading the form: {e}")))?;
        let name = field.name().unwrap_or_default().to_owned();
        let field_limit = match name.as_str() {
            CAMERA_FIELD | IDEMPOTENCY_KEY_FIELD | CAPTURE_TIME_FIELD => MAX_TEXT_FIELD_BYTES,
            PHOTO_FIELD if photo.is_some() => {
                return Err(InputError::Malformed(format!(
                    "more than one {PHOTO_FIELD} field: send one photo per request"
                )));
            }
            PHOTO_FIELD => limit,
            _ => 0,
        };
        let mut value = BytesMut::new();
        while let Some(chunk) = field.next().await {
            let chunk =
                chunk.map_err(|e| InputError::Malformed(format!("reading field {name}: {e}")))?;
            read += chunk.len();
            if read > limit {
                return Err(InputError::BodyTooLarge { limit });
            }
            if value.len() + chunk.len() > field_limit {
                if field_limit == 0 {
                    continue; // an unknown field: drained, not kept
                }
                return Err(match name.as_str() {
                    PHOTO_FIELD => InputError::BodyTooLarge { limit },
                    _ => InputError::Malformed(format!(
                        "{name} is longer than {MAX_TEXT_FIELD_BYTES} bytes"
                    )),
                });
            }
            value.extend_from_slice(&chunk);
        }
        let text = || {
            String::from_utf8(value.to_vec())
                .map(|t| t.trim().to_owned())
                .map_err(|_| InputError::Malformed(format!("{name} is not UTF-8 text")))
        };
        match name.as_str() {
            CAMERA_FIELD => camera = Some(text()?),
            IDEMPOTENCY_KEY_FIELD => idempotency_key = Some(text()?),
            CAPTURE_TIME_FIELD => capture_time = Some(text()?),
            PHOTO_FIELD => photo = Some(value.freeze()),
            _ => {}
        }
    }
    let camera = camera.ok_or(InputError::Missing("form field camera_id"))?;
    let camera = CameraId::parse(&camera)?;
    let bytes = photo.filter(|p| !p.is_empty()).ok_or(InputError::Missing(
        "form field imageFileField (the photo file)",
    ))?;
    Ok(UploadedPhoto {
        camera,
        bytes,
        idempotency_key,
        capture_time,
    })
}
