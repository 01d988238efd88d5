//! HTTP plumbing shared by the services: the JSON error body, `/healthz` and `/metrics`.

use actix_web::{HttpResponse, ResponseError, http::StatusCode, web};
use prometheus::{Encoder, Registry, TextEncoder};
use serde::{Deserialize, Serialize};

use crate::validate::InputError;

/// Every error answer of every service has this JSON shape:
/// `{"error": "snake_case_code", "message": "what is wrong, in words"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

/// Every error answer of every service is built here, so this is also where it is logged (the
/// request logger's own error event is turned off in the workspace's Cargo.toml). Levels by what
/// an operator should do: a client's mistake (4xx) and a refusal under load (`overloaded`,
/// `shutting_down`, counted in the metrics) are debug, so an overload does not flood the log;
/// an unreachable or slow upstream is a warning; anything else is an error.
pub fn json_error(status: StatusCode, code: &str, message: impl Into<String>) -> HttpResponse {
    let message = message.into();
    match (status.as_u16(), code) {
        (400..=499, _) | (_, "overloaded" | "shutting_down") => {
            tracing::debug!(status = status.as_u16(), code, %message, "request refused")
        }
        (502..=504, _) => {
            tracing::warn!(status = status.as_u16(), code, %message, "upstream failed")
        }
        _ => tracing::error!(status = status.as_u16(), code, %message, "request failed"),
    }
    HttpResponse::build(status).json(ErrorBody {
        error: code.to_owned(),
        message,
    })
}

impl InputError {
    pub fn code(&self) -> &'static str {
        match self {
            InputError::InvalidCameraId(_) => "invalid_camera_id",
            InputError::Missing(_) => "missing_field",
            InputError::Malformed(_) => "malformed_request",
            InputError::BodyTooLarge { .. } => "body_too_large",
            InputError::UnsupportedMedia => "unsupported_media_type",
            InputError::TooManyPixels { .. } => "image_too_large",
            InputError::Undecodable(_) => "undecodable_image",
            InputError::InvalidIdempotencyKey(_) => "invalid_idempotency_key",
            InputError::InvalidCaptureTime(_) => "invalid_capture_time",
        }
    }
}

impl ResponseError for InputError {
    fn status_code(&self) -> StatusCode {
        match self {
            InputError::InvalidCameraId(_)
            | InputError::Missing(_)
            | InputError::Malformed(_)
            | InputError::InvalidIdempotencyKey(_)
            | InputError::InvalidCaptureTime(_) => StatusCode::BAD_REQUEST,
            InputError::BodyTooLarge { .. } | InputError::TooManyPixels { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            InputError::UnsupportedMedia => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            InputError::Undecodable(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    fn error_response(&self) -> HttpResponse {
        json_error(self.status_code(), self.code(), self.to_string())
    }
}

/// Turns actix's own extractor failures (path, query, JSON, body size) into the JSON error shape.
pub fn extractor_error(status: StatusCode, message: String) -> actix_web::Error {
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ => "malformed_request",
    };
    actix_web::error::InternalError::from_response(
        message.clone(),
        json_error(status, code, message),
    )
    .into()
}

/// `GET /healthz`: the process is alive and its HTTP server answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// `GET /metrics`: the service's registry in the Prometheus text format.
pub async fn metrics(registry: web::Data<Registry>) -> HttpResponse {
    let mut buffer = Vec::new();
    match TextEncoder::new().encode(&registry.gather(), &mut buffer) {
        Ok(()) => HttpResponse::Ok()
            .content_type(prometheus::TEXT_FORMAT)
            .body(buffer),
        Err(e) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics_unavailable",
            e.to_string(),
        ),
    }
}

/// Registers `collector` in `registry`. Names are fixed at compile time, so a clash is a bug.
pub fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("metric names are unique per service");
    collector
}

/// Answers any unknown route with a JSON 404 instead of an empty body.
pub async fn not_found(req: actix_web::HttpRequest) -> HttpResponse {
    json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {} {}", req.method(), req.path()),
    )
}

/// Makes actix's path and query extractors answer malformed input with the JSON error shape.
pub fn json_extractor_errors(config: &mut web::ServiceConfig) {
    config
        .app_data(
            web::PathConfig::default()
                .error_handler(|e, _| extractor_error(StatusCode::BAD_REQUEST, e.to_string())),
        )
        .app_data(
            web::QueryConfig::default()
                .error_handler(|e, _| extractor_error(StatusCode::BAD_REQUEST, e.to_string())),
        )
        .app_data(
            web::JsonConfig::default()
                .error_handler(|e, _| extractor_error(StatusCode::BAD_REQUEST, e.to_string())),
        );
}

/// How long a stopping server lets in-flight requests finish (SIGTERM, then this grace).
pub const SHUTDOWN_GRACE_SECS: u64 = 20;
