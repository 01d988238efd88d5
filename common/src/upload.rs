//! Reading a photo out of a request, with a hard byte limit, in both accepted forms:
//! a multipart form (`camera_id` + `imageFileField`) or a raw body.
//! Bodies are read chunk by chunk and refused as soon as they pass the limit, so no request
//! can make a service buffer more than the limit.

use actix_multipart::Multipart;
use actix_web::{HttpRequest, http::header, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::validate::{CameraId, InputError};

/// Multipart field holding the camera id (the name the original stack used).
pub const CAMERA_FIELD: &str = "camera_id";
/// Multipart field holding the photo (the name the original stack used).
pub const PHOTO_FIELD: &str = "imageFileField";
/// A camera id field is short; anything longer is refused before it is buffered.
const MAX_TEXT_FIELD_BYTES: usize = 1024;

/// A photo as it arrived, before any decoding.
#[derive(Debug, Clone)]
pub struct UploadedPhoto {
    pub camera: CameraId,
    pub bytes: Bytes,
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
    let mut photo: Option<Bytes> = None;
    let mut read = 0usize;
    while let Some(field) = form.next().await {
        let mut field =
            field.map_err(|e| InputError::Malformed(format!("reading the form: {e}")))?;
        let name = field.name().unwrap_or_default().to_owned();
        let field_limit = match name.as_str() {
            CAMERA_FIELD => MAX_TEXT_FIELD_BYTES,
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
                    CAMERA_FIELD => InputError::Malformed(format!(
                        "{CAMERA_FIELD} is longer than {MAX_TEXT_FIELD_BYTES} bytes"
                    )),
                    _ => InputError::BodyTooLarge { limit },
                });
            }
            value.extend_from_slice(&chunk);
        }
        match name.as_str() {
            CAMERA_FIELD => {
                let text = String::from_utf8(value.to_vec()).map_err(|_| {
                    InputError::Malformed(format!("{CAMERA_FIELD} is not UTF-8 text"))
                })?;
                camera = Some(text.trim().to_owned());
            }
            PHOTO_FIELD => photo = Some(value.freeze()),
            _ => {}
        }
    }
    let camera = camera.ok_or(InputError::Missing("form field camera_id"))?;
    let camera = CameraId::parse(&camera)?;
    let bytes = photo.filter(|p| !p.is_empty()).ok_or(InputError::Missing(
        "form field imageFileField (the photo file)",
    ))?;
    Ok(UploadedPhoto { camera, bytes })
}
