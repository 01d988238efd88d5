//! The HTTP client to image-predict.

use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use bytes::Bytes;
use common::validate::{CameraId, PhotoHeader};

use crate::error::UploadError;

/// Connection attempts to image-predict give up after this (the answer is then 503).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub struct PredictClient {
    http: reqwest::Client,
    base_url: String,
    timeout: Duration,
}

impl PredictClient {
    pub fn new(base_url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(timeout)
            .build()?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            timeout,
        })
    }

    /// Sends a validated photo to image-predict and passes its answer through: the count on
    /// success, or image-predict's own JSON error (with `Retry-After` when it is overloaded).
    pub async fn count(
        &self,
        camera: &CameraId,
        header: PhotoHeader,
        photo: Bytes,
    ) -> Result<HttpResponse, UploadError> {
        let url = format!("{}/api/v1/cameras/{}/photos", self.base_url, camera);
        let response = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, header.format.to_mime_type())
            .body(photo)
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        let status = StatusCode::from_u16(response.status().as_u16())
            .map_err(|e| UploadError::PredictFailed(e.to_string()))?;
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.bytes().await.map_err(|e| self.classify(e))?;
        let mut answer = HttpResponse::build(status);
        answer.content_type("application/json");
        if let Some(retry_after) = retry_after {
            answer.insert_header(("Retry-After", retry_after));
        }
        Ok(answer.body(body))
    }

    /// `Ok` when image-predict answers its readiness probe.
    pub async fn ready(&self) -> Result<(), UploadError> {
        let response = self
            .http
            .get(format!("{}/readyz", self.base_url))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(UploadError::PredictUnavailable(format!(
                "readiness answered {}",
                response.status()
            )))
        }
    }

    fn classify(&self, error: reqwest::Error) -> UploadError {
        if error.is_timeout() {
            UploadError::PredictTimeout(self.timeout.as_secs())
        } else if error.is_connect() {
            UploadError::PredictUnavailable(error.to_string())
        } else {
            UploadError::PredictFailed(error.to_string())
        }
    }
}
