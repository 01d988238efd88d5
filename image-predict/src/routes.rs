//! image-predict's HTTP routes.

use actix_multipart::Multipart;
use actix_web::{HttpRequest, HttpResponse, web};
use common::upload::{read_photo_form, read_raw_body};
use common::validate::CameraId;

use crate::counting::CountingService;
use crate::error::PredictError;

pub struct Limits {
    pub max_body_bytes: usize,
}

/// `POST /api/v1/count`: multipart form with `camera_id` and `imageFileField`.
pub async fn count_form(
    req: HttpRequest,
    form: Multipart,
    service: web::Data<CountingService>,
    limits: web::Data<Limits>,
) -> Result<HttpResponse, PredictError> {
    let photo = read_photo_form(&req, form, limits.max_body_bytes).await?;
    let answer = service.count(photo.camera, photo.bytes).await?;
    Ok(HttpResponse::Ok().json(answer))
}

/// `POST /api/v1/cameras/{camera}/photos`: the photo as the raw body (`Content-Type: image/*`).
pub async fn count_raw(
    req: HttpRequest,
    camera: web::Path<String>,
    body: web::Payload,
    service: web::Data<CountingService>,
    limits: web::Data<Limits>,
) -> Result<HttpResponse, PredictError> {
    let camera = CameraId::parse(&camera)?;
    let bytes = read_raw_body(&req, body, limits.max_body_bytes).await?;
    let answer = service.count(camera, bytes).await?;
    Ok(HttpResponse::Ok().json(answer))
}

/// `GET /readyz`: the model is loaded and workers are running. The dashboard link is reported but
/// does not make the service unready: counts are buffered while the dashboard is away.
pub async fn readyz(service: web::Data<CountingService>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "status": "ready",
        "model": service.counter.name(),
        "inference_workers": service.pool.worker_count(),
        "dashboard_connected": service.link.is_connected(),
        "events_unacknowledged": service.link.unacknowledged(),
    }))
}
