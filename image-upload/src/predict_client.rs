//! The HTTP client to image-predict.
//!
//! Spreading the load over image-predict replicas: image-predict is reached through a Kubernetes
//! Service, which balances *connections*, not requests; a pooled keep-alive connection would
//! stay with the replica it first reached, and replicas added by the autoscaler would get
//! nothing. So no connection is kept idle: each photo goes on a connection of its own, which the
//! Service places afresh. A connection costs a TCP handshake inside the cluster, small beside
//! the model's time per photo. A photo that image-predict refused with 503 `overloaded` (that
//! replica's queue is full) or whose connection was refused (a replica going away) is sent once
//! more, on a new connection; both are safe to repeat, as the photo was not counted.

use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use bytes::Bytes;
use common::upload::{CAPTURE_TIME_HEADER, IDEMPOTENCY_KEY_HEADER, UploadOptions};
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
    replayed: Option<String>,
    body: Bytes,
}

impl PredictAnswer {
    /// image-predict refused the photo before counting it: its inference queue was full.
    fn refused_before_counting(&self) -> bool {
        self.status == StatusCode::SERVICE_UNAVAILABLE
            && serde_json::from_slice::<serde_json::Value>(&self.body)
                .is_ok_and(|body| body["error"] == "overloaded")
    }
}

/// Unix milliseconds as RFC 3339 in UTC.
fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
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

    /// Sends a validated photo to image-predict, with the camera's `Authorization` (image-predict
    /// checks the key too) and its idempotency key and capture time, and passes the answer
    /// through: the count on success, or image-predict's own JSON error (with `Retry-After` when
    /// it is overloaded or could not store the count). A full queue (503 `overloaded`) or a
    /// refused connection is retried once, on a new connection: nothing was counted for it. A
    /// count that could not be stored (503 `count_not_stored`) is not: it already waited for the
    /// dashboard, and the camera, holding the photo, resends it with its idempotency key.
    pub async fn count(
        &self,
        camera: &CameraId,
        header: PhotoHeader,
        photo: Bytes,
        authorization: Option<&str>,
        options: &UploadOptions,
    ) -> Result<HttpResponse, UploadError> {
        let first = self
            .send(camera, header, photo.clone(), authorization, options)
            .await;
        let worth_another_replica = match &first {
            Ok(answer) => answer.refused_before_counting(),
            Err(error) => matches!(error, UploadError::PredictUnavailable(_)),
        };
        let answer = if worth_another_replica {
            self.retries.inc();
            self.send(camera, header, photo, authorization, options)
                .await?
        } else {
            first?
        };
        let mut response = HttpResponse::build(answer.status);
        response.content_type("application/json");
        if let Some(retry_after) = answer.retry_after {
            response.insert_header(("Retry-After", retry_after));
        }
        if let Some(replayed) = answer.replayed {
            response.insert_header(("Idempotent-Replayed", replayed));
        }
        Ok(response.body(answer.body))
    }

    async fn send(
        &self,
        camera: &CameraId,
        header: PhotoHeader,
        photo: Bytes,
        authorization: Option<&str>,
        options: &UploadOptions,
    ) -> Result<PredictAnswer, UploadError> {
        let url = format!("{}/api/v1/cameras/{}/photos", self.base_url, camera);
        let mut request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, header.format.to_mime_type());
        if let Some(authorization) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        if let Some(key) = &options.idempotency_key {
            request = request.header(IDEMPOTENCY_KEY_HEADER, key.as_str());
        }
        if let Some(at) = options.captured_at_ms {
            request = request.header(CAPTURE_TIME_HEADER, rfc3339(at));
        }
        let response = request
            .body(photo)
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        let status = StatusCode::from_u16(response.status().as_u16())
            .map_err(|e| UploadError::PredictFailed(e.to_string()))?;
        let header_text = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let retry_after = header_text(reqwest::header::RETRY_AFTER.as_str());
        let replayed = header_text("idempotent-replayed");
        let body = response.bytes().await.map_err(|e| self.classify(e))?;
        Ok(PredictAnswer {
            status,
            retry_after,
            replayed,
            body,
        })
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
