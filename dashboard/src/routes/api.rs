//! The dashboard's REST API.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use common::http::json_error;
use common::validate::CameraId;
use serde::Deserialize;

use crate::state::{DEFAULT_HISTOGRAM_WINDOWS, DashboardState};

/// The longest histogram served: one day of 30-second windows.
const MAX_HISTOGRAM_WINDOWS: usize = 2880;

/// `GET /api/v1/summary`: both totals and each camera's latest count.
pub async fn summary(state: web::Data<DashboardState>) -> HttpResponse {
    HttpResponse::Ok().json(state.summary())
}

#[derive(Deserialize)]
pub struct HistogramQuery {
    windows: Option<usize>,
}

/// `GET /api/v1/histogram?windows=N`: people counted per 30-second window, the last N windows
/// (default 60 = 30 minutes, at most 2880).
pub async fn histogram(
    state: web::Data<DashboardState>,
    query: web::Query<HistogramQuery>,
) -> HttpResponse {
    let windows = query.windows.unwrap_or(DEFAULT_HISTOGRAM_WINDOWS);
    if windows == 0 || windows > MAX_HISTOGRAM_WINDOWS {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_windows",
            format!("windows must be between 1 and {MAX_HISTOGRAM_WINDOWS}, not {windows}"),
        );
    }
    HttpResponse::Ok().json(state.histogram(windows))
}

/// `GET /counters`: `{"counter": N}`, people counted in the last 30 seconds, as the original
/// stack answered.
pub async fn counters(state: web::Data<DashboardState>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "counter": state.totals().last_30s }))
}

/// `GET /readyz`: ready when the store takes writes (always, with the embedded store). A replica
/// that cannot reach Redis leaves the Service, so image-predict reconnects to another.
pub async fn readyz(state: web::Data<DashboardState>) -> HttpResponse {
    match state.check_store().await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })),
        Err(error) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            error.to_string(),
        ),
    }
}

/// `GET /api/v1/cameras/{camera}/photo`: the camera's latest annotated JPEG.
pub async fn photo(
    req: HttpRequest,
    camera: web::Path<String>,
    state: web::Data<DashboardState>,
) -> HttpResponse {
    let camera = match CameraId::parse(&camera) {
        Ok(camera) => camera,
        Err(e) => {
            return json_error(StatusCode::BAD_REQUEST, "invalid_camera_id", e.to_string());
        }
    };
    let (jpeg, event_id) = match state.photo(camera.as_str()).await {
        Ok(Some(photo)) => photo,
        Ok(None) => {
            return json_error(
                StatusCode::NOT_FOUND,
                "unknown_camera",
                format!("no photo from camera {camera} yet"),
            );
        }
        Err(error) => {
            tracing::error!(%error, "reading a photo from the store failed");
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                error.to_string(),
            );
        }
    };
    let etag = format!("\"{event_id}\"");
    let unchanged = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
    if unchanged {
        return HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .finish();
    }
    HttpResponse::Ok()
        .content_type("image/jpeg")
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(jpeg)
}
