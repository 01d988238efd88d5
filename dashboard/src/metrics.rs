//! The dashboard's Prometheus metrics, registered in the service's own registry.

use common::http::register;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry, exponential_buckets};

#[derive(Clone)]
pub struct DashboardMetrics {
    pub events_stored: IntCounter,
    pub events_duplicate: IntCounter,
    pub events_rejected: IntCounter,
    pub store_write_seconds: Histogram,
    pub ingest_connections: IntGauge,
    pub live_clients: IntGauge,
}

impl DashboardMetrics {
    pub fn register(registry: &Registry) -> Self {
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
            events_stored: counter("dashboard_events_stored_total", "Count events stored."),
            events_duplicate: counter(
                "dashboard_events_duplicate_total",
                "Events received again (resent by image-predict) and ignored.",
            ),
            events_rejected: counter(
                "dashboard_events_rejected_total",
                "Malformed events refused.",
            ),
            store_write_seconds: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "dashboard_store_write_seconds",
                        "Durable write of one event.",
                    )
                    .buckets(exponential_buckets(0.0005, 2.0, 14).expect("valid buckets")),
                )
                .expect("valid histogram"),
            ),
            ingest_connections: gauge(
                "dashboard_ingest_connections",
                "image-predict connections now open.",
            ),
            live_clients: gauge(
                "dashboard_live_clients",
                "Browsers connected to the live feed.",
            ),
        }
    }
}
