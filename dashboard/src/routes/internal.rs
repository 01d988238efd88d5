//! The lookups image-predict makes on the ingest listener (with the ingest token): the answer
//! kept for an idempotent upload, and a camera's counting zones.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use common::http::json_error;

use super::api::store_unavailable;
use crate::state::DashboardState;

/// `GET /internal/v1/answers/{event}`: the answer first given for this event, if kept.
pub async fn answer(event_id: web::Path<String>, state: web::Data<DashboardState>) -> HttpResponse {
    match state.store().answer(&event_id).await {
        Ok(Some(answer)) => HttpResponse::Ok().json(answer),
        Ok(None) => json_error(
            StatusCode::NOT_FOUND,
            "unknown_event",
            "no answer kept for this event",
        ),
        Err(error) => store_unavailable(&error),
    }
}

/// `GET /internal/v1/cameras/{camera}/zones`: `{"zones": [...]}` (none configured: empty).
pub async fn zones(camera: web::Path<String>, state: web::Data<DashboardState>) -> HttpResponse {
    let zones = state
        .registry()
        .camera(&camera)
        .map(|s| s.zones.clone())
        .unwrap_or_default();
    HttpResponse::Ok().json(serde_json::json!({ "zones": zones }))
}
