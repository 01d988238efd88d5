//! image-upload's Prometheus metrics, registered in the service's own registry.

use common::http::register;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry, exponential_buckets,
};

#[derive(Clone)]
pub struct UploadMetrics {
    /// Photos forwarded to image-predict, by the status it answered.
    pub forwarded: IntCounterVec,
    /// Requests answered with an error before or instead of a count, by error code.
    pub refused: IntCounterVec,
    pub predict_seconds: Histogram,
    /// Photos sent to image-predict a second time, after a 503 or a refused connection.
    pub predict_retries: IntCounter,
    /// Uploads refused by a key's rate limit, by key id.
    pub rate_limited: IntCounterVec,
}

impl UploadMetrics {
    pub fn register(registry: &Registry) -> Self {
        Self {
            forwarded: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "upload_photos_forwarded_total",
                        "Photos forwarded to image-predict, by its status.",
                    ),
                    &["status"],
                )
                .expect("valid counter vec"),
            ),
            refused: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "upload_requests_refused_total",
                        "Uploads refused, by error code.",
                    ),
                    &["reason"],
                )
                .expect("valid counter vec"),
            ),
            predict_seconds: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new("upload_predict_seconds", "Round trip to image-predict.")
                        .buckets(exponential_buckets(0.01, 2.0, 12).expect("valid buckets")),
                )
                .expect("valid histogram"),
            ),
            rate_limited: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "upload_rate_limited_total",
                        "Uploads refused by their camera key's rate limit (429), by key id.",
                    ),
                    &["key"],
                )
                .expect("valid counter vec"),
            ),
            predict_retries: register(
                registry,
                IntCounter::new(
                    "upload_predict_retries_total",
                    "Photos sent to image-predict again after a 503 or a refused connection.",
                )
                .expect("valid counter"),
            ),
        }
    }
}
