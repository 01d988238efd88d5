//! image-upload's routes: the upload page, the two upload forms, probes.
//!
//! An upload is refused, in this order and before its body is read where it can be: without a
//! known camera key (401), over its key's rate (429), for a camera outside its key's scope
//! (403), with a bad capture time or idempotency key (400), or a bad photo (4xx).

use std::time::{SystemTime, UNIX_EPOCH};

use actix_multipart::Multipart;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use common::auth::{CameraKeys, KeyEntry, RateLimits, authorise};
use common::upload::{UploadOptions, read_photo_form, read_raw_body, upload_options};
use common::validate::{CameraId, check_photo};

use crate::error::UploadError;
use crate::metrics::UploadMetrics;
use crate::predict_client::PredictClient;

pub struct Limits {
    pub max_body_bytes: usize,
    pub max_pixels: u64,
    pub max_capture_age_ms: i64,
}

/// Who may upload: the keys and their buckets.
pub struct Access {
    pub keys: CameraKeys,
    pub limits: RateLimits,
}

const UPLOAD_PAGE: &str = include_str!("../../static/upload.html");
const UPLOAD_SCRIPT: &str = include_str!("../../static/upload.js");

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `GET /`: the upload page.
pub async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(UPLOAD_PAGE)
}

/// `GET /static/upload.js`: the page's script.
pub async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(UPLOAD_SCRIPT)
}

/// The key of the request, after its rate check (`None`: keys are off).
fn admit(
    req: &HttpRequest,
    access: &Access,
    metrics: &UploadMetrics,
) -> Result<Option<KeyEntry>, UploadError> {
    let key = access.keys.authenticate(req)?;
    if let Some(entry) = &key
        && let Err(limited) = access.limits.check(entry)
    {
        metrics.rate_limited.with_label_values(&[&entry.id]).inc();
        return Err(limited.into());
    }
    Ok(key)
}

/// `POST /upload`: multipart form with `camera_id` and `imageFileField` (optional:
/// `idempotency_key`, `capture_time`).
pub async fn upload_form(
    req: HttpRequest,
    form: Multipart,
    predict: web::Data<PredictClient>,
    limits: web::Data<Limits>,
    access: web::Data<Access>,
    metrics: web::Data<UploadMetrics>,
) -> Result<HttpResponse, UploadError> {
    let outcome = async {
        let key = admit(&req, &access, &metrics)?;
        let photo = read_photo_form(&req, form, limits.max_body_bytes).await?;
        authorise(key.as_ref(), photo.camera.as_str())?;
        let options = upload_options(
            &req,
            photo.idempotency_key.as_deref(),
            photo.capture_time.as_deref(),
            now_ms(),
            limits.max_capture_age_ms,
        )?;
        forward(
            &req,
            &predict,
            &limits,
            &metrics,
            photo.camera,
            photo.bytes,
            options,
        )
        .await
    }
    .await;
    record_refusal(&metrics, outcome)
}

/// `POST /api/v1/cameras/{camera}/photos`: the photo as the raw body (`Idempotency-Key` and
/// `Capture-Time` headers optional).
pub async fn upload_raw(
    req: HttpRequest,
    camera: web::Path<String>,
    body: web::Payload,
    predict: web::Data<PredictClient>,
    limits: web::Data<Limits>,
    access: web::Data<Access>,
    metrics: web::Data<UploadMetrics>,
) -> Result<HttpResponse, UploadError> {
    let outcome = async {
        let key = admit(&req, &access, &metrics)?;
        let camera = CameraId::parse(&camera)?;
        authorise(key.as_ref(), camera.as_str())?;
        let options = upload_options(&req, None, None, now_ms(), limits.max_capture_age_ms)?;
        let bytes = read_raw_body(&req, body, limits.max_body_bytes).await?;
        forward(&req, &predict, &limits, &metrics, camera, bytes, options).await
    }
    .await;
    record_refusal(&metrics, outcome)
}

fn record_refusal(
    metrics: &UploadMetrics,
    outcome: Result<HttpResponse, UploadError>,
) -> Result<HttpResponse, UploadError> {
    if let Err(e) = &outcome {
        metrics.refused.with_label_values(&[e.code()]).inc();
    }
    outcome
}

/// Validates the photo from its header (format by magic bytes, pixel count) and forwards it with
/// the camera's key, idempotency key and capture time.
async fn forward(
    req: &HttpRequest,
    predict: &PredictClient,
    limits: &Limits,
    metrics: &UploadMetrics,
    camera: CameraId,
    bytes: Bytes,
    options: UploadOptions,
) -> Result<HttpResponse, UploadError> {
    let photo_header = check_photo(&bytes, limits.max_pixels)?;
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let timer = metrics.predict_seconds.start_timer();
    let answer = predict
        .count(
            &camera,
            photo_header,
            bytes,
            authorization.as_deref(),
            &options,
        )
        .await?;
    timer.observe_duration();
    metrics
        .forwarded
        .with_label_values(&[answer.status().as_str()])
        .inc();
    Ok(answer)
}

/// `GET /readyz` (ops listener): this pod can take uploads. image-predict's own state is
/// answered per upload (503 predict_unavailable), not by leaving the Service: a missing
/// image-predict would otherwise empty the public Service and turn JSON errors into refused
/// connections.
pub async fn readyz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ready"}))
}
