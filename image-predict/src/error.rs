//! image-predict's errors and, in one place, the HTTP answer for each.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use common::http::json_error;
use common::validate::InputError;

use crate::pool::PoolError;

/// Seconds a client is asked to wait when every worker is busy.
const RETRY_AFTER_SECONDS: u32 = 1;
/// Seconds a camera is asked to wait when its count could not be stored (the dashboard away).
const NOT_STORED_RETRY_AFTER_SECONDS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("the model failed on this photo: {0}")]
    Model(String),
    #[error(transparent)]
    Auth(#[from] common::auth::AuthError),
    #[error(
        "the count could not be stored within {0} s (the dashboard is unreachable or slow); nothing was kept: send the photo again, with the same Idempotency-Key"
    )]
    NotStored(u64),
}

impl ResponseError for PredictError {
    fn status_code(&self) -> StatusCode {
        match self {
            PredictError::Input(e) => e.status_code(),
            PredictError::Auth(e) => e.status_code(),
            PredictError::NotStored(_) => StatusCode::SERVICE_UNAVAILABLE,
            PredictError::Pool(PoolError::Busy { .. } | PoolError::Stopped) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            PredictError::Pool(PoolError::Panicked) | PredictError::Model(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            PredictError::Input(e) => e.error_response(),
            PredictError::Auth(e) => e.error_response(),
            PredictError::NotStored(_) => {
                let mut response =
                    json_error(self.status_code(), "count_not_stored", self.to_string());
                response.headers_mut().insert(
                    actix_web::http::header::RETRY_AFTER,
                    NOT_STORED_RETRY_AFTER_SECONDS.into(),
                );
                response
            }
            PredictError::Pool(PoolError::Busy { .. }) => {
                let mut response = json_error(self.status_code(), "overloaded", self.to_string());
                response.headers_mut().insert(
                    actix_web::http::header::RETRY_AFTER,
                    RETRY_AFTER_SECONDS.into(),
                );
                response
            }
            PredictError::Pool(PoolError::Stopped) => {
                json_error(self.status_code(), "shutting_down", self.to_string())
            }
            PredictError::Pool(PoolError::Panicked) | PredictError::Model(_) => {
                json_error(self.status_code(), "model_failed", self.to_string())
            }
        }
    }
}
