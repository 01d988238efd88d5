//! image-predict's HTTP routes. Both upload routes need a camera key (`Authorization: Bearer`,
//! the keys image-upload checks too: image-predict is reachable inside the cluster).

use std::time::{SystemTime, UNIX_EPOCH};

use actix_multipart::Multipart;
use actix_web::{HttpRequest, HttpResponse, web};
use common::auth::{CameraKeys, authorise};
use common::upload::{UploadOptions, read_photo_form, read_raw_body, upload_options};
use common::validate::CameraId;

use crate::counting::CountingService;
use crate::error::PredictError;

pub struct Limits {
    pub max_body_bytes: usize,
    /// How old a capture time may be, milliseconds.
    pub max_capture_age_ms: i64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `POST /api/v1/count`: multipart form with `camera_id` and `imageFileField` (optional:
/// `idempotency_key`, `capture_time`).
pub async fn count_form(
    req: HttpRequest,
    form: Multipart,
    service: web::Data<CountingService>,
    limits: web::Data<Limits>,
    keys: web::Data<CameraKeys>,
) -> Result<HttpResponse, PredictError> {
    let key = keys.authenticate(&req)?;
    let photo = read_photo_form(&req, form, limits.max_body_bytes).await?;
    authorise(key.as_ref(), photo.camera.as_str())?;
    let options = upload_options(
        &req,
        photo.idempotency_key.as_deref(),
        photo.capture_time.as_deref(),
        now_ms(),
        limits.max_capture_age_ms,
    )?;
    answer(service.count(photo.camera, photo.bytes, options).await?)
}

/// `POST /api/v1/cameras/{camera}/photos`: the photo as the raw body (`Idempotency-Key` and
/// `Capture-Time` headers optional).
pub async fn count_raw(
    req: HttpRequest,
    camera: web::Path<String>,
    body: web::Payload,
    service: web::Data<CountingService>,
    limits: web::Data<Limits>,
    keys: web::Data<CameraKeys>,
) -> Result<HttpResponse, PredictError> {
    let key = keys.authenticate(&req)?;
    let camera = CameraId::parse(&camera)?;
    authorise(key.as_ref(), camera.as_str())?;
    let options: UploadOptions =
        upload_options(&req, None, None, now_ms(), limits.max_capture_age_ms)?;
    let bytes = read_raw_body(&req, body, limits.max_body_bytes).await?;
    answer(service.count(camera, bytes, options).await?)
}

fn answer(answer: common::wire::CountResponse) -> Result<HttpResponse, PredictError> {
    let mut response = HttpResponse::Ok();
    if answer.replayed {
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(response.json(answer))
}

/// `GET /readyz` (ops listener): the models are loaded and the workers are running, so this pod
/// can count. The dashboard link is reported but does not make the pod unready: a count the
/// dashboard cannot store is answered per request (503 count_not_stored).
pub async fn readyz(service: web::Data<CountingService>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "status": "ready",
        "model": service.counter.name(),
        "inference_workers": service.pool.worker_count(),
        "dashboard_connected": service.link.is_connected(),
        "events_unacknowledged": service.link.unacknowledged(),
    }))
}
