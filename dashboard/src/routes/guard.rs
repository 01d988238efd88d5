//! The token checks in front of a listener's routes: the ingest token on the ingest listener
//! (always, unless `--no-auth`), the viewer token on the public one (when set). A request
//! without the right token is answered 401 with the JSON error body and never reaches a route.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{Error, web};
use common::auth::SharedToken;
use common::http::json_error;

use crate::metrics::DashboardMetrics;

/// What a listener's guard checks.
pub struct Guard {
    pub token: Option<SharedToken>,
    /// A second token this listener admits: the admin token on the public listener, so that an
    /// administrator's one credential opens the pages and the settings route alike.
    pub also: Option<SharedToken>,
    /// `WWW-Authenticate` of a refusal: `Basic` for the browsers (so that they ask for it),
    /// `Bearer` for services.
    pub challenge: &'static str,
    /// Paths served without a token (liveness only).
    pub open_paths: &'static [&'static str],
}

pub async fn check_token<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, Error> {
    let guard = req.app_data::<web::Data<Guard>>().cloned();
    let admitted = match guard.as_deref() {
        None => true,
        Some(guard) => {
            guard.token.as_ref().is_none_or(|t| t.admits(req.request()))
                || guard.also.as_ref().is_some_and(|t| t.admits(req.request()))
                || guard.open_paths.contains(&req.path())
        }
    };
    if admitted {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    if let Some(metrics) = req.app_data::<web::Data<DashboardMetrics>>() {
        metrics.ingest_refused.inc();
    }
    let challenge = guard.map_or("Bearer realm=\"crowd\"", |g| g.challenge);
    let mut response = json_error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or wrong credentials for this listener",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static(challenge),
    );
    Ok(req.into_response(response).map_into_right_body())
}
