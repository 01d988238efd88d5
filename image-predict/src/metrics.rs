//! image-predict's Prometheus metrics, registered in the service's own registry.

use common::http::register;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    exponential_buckets,
};

use crate::dashboard_link::LinkMetrics;
use crate::pool::PoolGauges;

#[derive(Clone)]
pub struct PredictMetrics {
    pub photos_counted: IntCounter,
    pub people_counted: IntCounter,
    pub decode_seconds: Histogram,
    pub inference_seconds: Histogram,
    pub refused: IntCounterVec,
    /// Uploads answered with the stored answer of an earlier one (same idempotency key).
    pub replayed: IntCounter,
    pub pool: PoolGauges,
    pub link: LinkMetrics,
}

impl PredictMetrics {
    pub fn register(registry: &Registry) -> Self {
        let seconds = |name: &str, help: &str| {
            let opts = HistogramOpts::new(name, help)
                .buckets(exponential_buckets(0.005, 2.0, 12).expect("valid buckets"));
            register(
                registry,
                Histogram::with_opts(opts).expect("valid histogram"),
            )
        };
        let counter = |name: &str, help: &str| {
            register(
                registry,
                IntCounter::new(name, help).expect("valid counter"),
            )
        };
        let gauge = |name: &str, help: &str| {
            register(registry, IntGauge::new(name, help).expect("valid gauge"))
        };
        Self {
            photos_counted: counter("predict_photos_counted_total", "Photos counted."),
            people_counted: counter(
                "predict_people_counted_total",
                "People counted, all photos.",
            ),
            decode_seconds: seconds("predict_decode_seconds", "Time to decode a photo."),
            inference_seconds: seconds("predict_inference_seconds", "Time in the model per photo."),
            replayed: counter(
                "predict_answers_replayed_total",
                "Uploads answered with the stored answer of an earlier upload with the same idempotency key.",
            ),
            refused: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "predict_requests_refused_total",
                        "Requests refused, by reason.",
                    ),
                    &["reason"],
                )
                .expect("valid counter vec"),
            ),
            pool: PoolGauges {
                waiting: gauge(
                    "predict_inference_waiting",
                    "Photos waiting for an inference worker (the autoscaling signal).",
                ),
                running: gauge("predict_inference_running", "Photos being counted now."),
            },
            link: LinkMetrics {
                connected: gauge(
                    "predict_dashboard_connected",
                    "1 while the WebSocket link to the dashboard is up.",
                ),
                buffered: gauge(
                    "predict_dashboard_events_unacknowledged",
                    "Events not yet acknowledged by the dashboard.",
                ),
                sent: counter(
                    "predict_dashboard_events_sent_total",
                    "Event frames sent (resends included).",
                ),
                acknowledged: counter(
                    "predict_dashboard_events_acknowledged_total",
                    "Events the dashboard acknowledged as stored.",
                ),
                rejected: counter(
                    "predict_dashboard_events_rejected_total",
                    "Events the dashboard refused as malformed.",
                ),
                dropped: counter(
                    "predict_dashboard_events_dropped_total",
                    "Events dropped because the outbox was full while the dashboard was away.",
                ),
                not_stored: counter(
                    "predict_counts_not_stored_total",
                    "Counts the dashboard did not acknowledge in time (answered 503 count_not_stored).",
                ),
                reconnects: counter(
                    "predict_dashboard_reconnects_total",
                    "Times the dashboard link was lost after being up.",
                ),
            },
        }
    }
}
