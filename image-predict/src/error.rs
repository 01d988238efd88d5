//! image-predict's errors and, in one place, the HTTP answer for each.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use common::http::json_error;
use common::validate::InputError;

use crate::pool::PoolError;

/// Seconds a client is asked to wait when every worker is busy.
const RETRY_AFTER_SECONDS: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("the model failed on this photo: {0}")]
    Model(String),
}

impl ResponseError for PredictError {
    fn status_code(&self) -> StatusCode {
        match self {
            PredictError::Input(e) => e.status_code(),
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
