//! image-upload's routes: the upload page, the two upload forms, probes.

use actix_multipart::Multipart;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use common::upload::{read_photo_form, read_raw_body};
use common::validate::{CameraId, check_photo};

use crate::error::UploadError;
use crate::metrics::UploadMetrics;
use crate::predict_client::PredictClient;

pub struct Limits {
    pub max_body_bytes: usize,
    pub max_pixels: u64,
}

const UPLOAD_PAGE: &str = include_str!("../../static/upload.html");
const UPLOAD_SCRIPT: &str = include_str!("../../static/upload.js");

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

/// `POST /upload`: multipart form with `camera_id` and `imageFileField`.
pub async fn upload_form(
    req: HttpRequest,
    form: Multipart,
    predict: web::Data<PredictClient>,
    limits: web::Data<Limits>,
    metrics: web::Data<UploadMetrics>,
) -> Result<HttpResponse, UploadError> {
    let outcome = async {
        let photo = read_photo_form(&req, form, limits.max_body_bytes).await?;
        forward(&predict, &limits, &metrics, photo.camera, photo.bytes).await
    }
    .await;
    record_refusal(&metrics, outcome)
}

/// `POST /api/v1/cameras/{camera}/photos`: the photo as the raw body.
pub async fn upload_raw(
    req: HttpRequest,
    camera: web::Path<String>,
    body: web::Payload,
    predict: web::Data<PredictClient>,
    limits: web::Data<Limits>,
    metrics: web::Data<UploadMetrics>,
) -> Result<HttpResponse, UploadError> {
    let outcome = async {
        let camera = CameraId::parse(&camera)?;
        let bytes = read_raw_body(&req, body, limits.max_body_bytes).await?;
        forward(&predict, &limits, &metrics, camera, bytes).await
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

/// Validates the photo from its header (format by magic bytes, pixel count) and forwards it.
async fn forward(
    predict: &PredictClient,
    limits: &Limits,
    metrics: &UploadMetrics,
    camera: CameraId,
    bytes: Bytes,
) -> Result<HttpResponse, UploadError> {
    let photo_header = check_photo(&bytes, limits.max_pixels)?;
    let timer = metrics.predict_seconds.start_timer();
    let answer = predict.count(&camera, photo_header, bytes).await?;
    timer.observe_duration();
    metrics
        .forwarded
        .with_label_values(&[answer.status().as_str()])
        .inc();
    Ok(answer)
}

/// `GET /readyz`: ready when image-predict is.
pub async fn readyz(predict: web::Data<PredictClient>) -> Result<HttpResponse, UploadError> {
    predict.ready().await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready"})))
}
