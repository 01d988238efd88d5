//! image-upload's errors and, in one place, the HTTP answer for each.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use common::http::json_error;
use common::validate::InputError;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Auth(#[from] common::auth::AuthError),
    #[error("image-predict is unreachable: {0}")]
    PredictUnavailable(String),
    #[error("image-predict did not answer within {0} seconds")]
    PredictTimeout(u64),
    #[error("image-predict failed: {0}")]
    PredictFailed(String),
}

impl UploadError {
    pub fn code(&self) -> &'static str {
        match self {
            UploadError::Input(e) => e.code(),
            UploadError::Auth(e) => e.code(),
            UploadError::PredictUnavailable(_) => "predict_unavailable",
            UploadError::PredictTimeout(_) => "predict_timeout",
            UploadError::PredictFailed(_) => "predict_failed",
        }
    }
}

impl ResponseError for UploadError {
    fn status_code(&self) -> StatusCode {
        match self {
            UploadError::Input(e) => e.status_code(),
            UploadError::Auth(e) => e.status_code(),
            UploadError::PredictUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            UploadError::PredictTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            UploadError::PredictFailed(_) => StatusCode::BAD_GATEWAY,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            UploadError::Auth(e) => e.error_response(),
            _ => json_error(self.status_code(), self.code(), self.to_string()),
        }
    }
}
