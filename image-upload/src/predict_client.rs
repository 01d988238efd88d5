//! The HTTP client to image-predict.
//!
//! Spreading the load over image-predict replicas: image-predict is reached through a Kubernetes
//! Service, which balances *connections*, not requests; a pooled keep-alive connection would
//! stay with the replica it first reached, and replicas added by the autoscaler would get
//! nothing. So no connection is kept idle: each photo goes on a connection of its own, which the
//! Service places afresh. A connection costs a TCP handshake inside the cluster, small beside
//! the model's time per photo. A photo that image-predict refused with 503 (that replica's queue
//! is full) or whose connection was refused (a replica going away) is sent once more, on a new
//! connection; both are safe to repeat, as the photo was not counted.

use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use bytes::Bytes;
use common::validate::{CameraId, PhotoHeader};
use prometheus::IntCounter;

use crate::error::UploadError;

/// Connection attempts to image-predict give up after this (the answer is then 503).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub struct PredictClient {
    http: reqwest::Client,
    base_url: String,
    timeout: Duration,
    retries: IntCounter,
}

/// image-predict's answer to one attempt, before it is passed through.
struct PredictAnswer {
    status: StatusCode,
    retry_after: Option<String>,
    body: Bytes,
}

impl PredictClient {
    /// `retries` counts photos sent a second time (see the module documentation).
    pub fn new(base_url: &str, timeout: Duration, retries: IntCounter) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(timeout)
            .pool_max_idle_per_host(0)
            .build()?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            timeout,
            retries,
        })
    }

    /// Sends a validated photo to image-predict and passes its answer through: the count on
    /// success, or image-predict's own JSON error (with `Retry-After` when it is overloaded).
    /// A 503 or a refused connection is retried once, on a new connection.
    pub async fn count(
        &self,
        camera: &CameraId,
        header: PhotoHeader,
        photo: Bytes,
    ) -> Result<HttpResponse, UploadError> {
        let first = self.send(camera, header, photo.clone()).await;
        let worth_another_replica = match &first {
            Ok(answer) => answer.status == StatusCode::SERVICE_UNAVAILABLE,
            Err(error) => matches!(error, UploadError::PredictUnavailable(_)),
        };
        let answer = if worth_another_replica {
            self.retries.inc();
            self.send(camera, header, photo).await?
        } else {
            first?
        };
        let mut response = HttpResponse::build(answer.status);
        response.content_type("application/json");
        if let Some(retry_after) = answer.retry_after {
            response.insert_header(("Retry-After", retry_after));
        }
        Ok(response.body(answer.body))
    }

    async fn send(
        &self,
        camera: &CameraId,
        header: PhotoHeader,
        photo: Bytes,
    ) -> Result<PredictAnswer, UploadError> {
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
        Ok(PredictAnswer {
            status,
            retry_after,
            body,
        })
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
            // Nothing reached image-predict: safe to send again.
            UploadError::PredictUnavailable(error.to_string())
        } else {
            UploadError::PredictFailed(error.to_string())
        }
    }
}
