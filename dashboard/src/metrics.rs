//! The dashboard's Prometheus metrics, registered in the service's own registry (served on the
//! ops listener only).
//!
//! Besides the service's own counters, the crowd itself: people now and the level (0 normal,
//! 1 warning, 2 critical) per camera and per group, for Alertmanager rules. Label cardinality
//! is capped: the first `--metrics-max-cameras` cameras seen get their own series, the others
//! are summed (people) and maxed (level) into `camera="_other"`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use common::http::register;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    exponential_buckets,
};

use crate::alerts::Level;

/// The label value of the cameras (or groups) beyond the cap.
pub const OTHER: &str = "_other";

#[derive(Clone)]
pub struct DashboardMetrics {
    pub events_stored: IntCounter,
    pub events_duplicate: IntCounter,
    pub events_rejected: IntCounter,
    pub store_write_seconds: Histogram,
    pub ingest_connections: IntGauge,
    pub ingest_refused: IntCounter,
    pub live_clients: IntGauge,
    /// Alerts recorded, by level and kind (raised, cleared).
    pub alerts: IntCounterVec,
    /// Webhook deliveries by outcome (delivered, failed, dropped).
    pub deliveries: IntCounterVec,
    pub cameras: std::sync::Arc<CappedGauges>,
    pub groups: std::sync::Arc<CappedGauges>,
}

/// People now and level per subject, with a cap on how many subjects get their own labels.
pub struct CappedGauges {
    people: IntGaugeVec,
    level: IntGaugeVec,
    cap: usize,
    state: Mutex<CapState>,
}

#[derive(Default)]
struct CapState {
    admitted: BTreeSet<String>,
    /// Subjects beyond the cap: their latest people and level, summed into `_other`.
    others: BTreeMap<String, (u32, Level)>,
}

impl CappedGauges {
    fn new(registry: &Registry, what: &str, label: &str, cap: usize) -> Self {
        let people = register(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    format!("crowd_{what}_people_now"),
                    format!("People in the {what}'s latest photo(s)."),
                ),
                &[label],
            )
            .expect("valid gauge vec"),
        );
        let level = register(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    format!("crowd_{what}_level"),
                    format!("The {what}'s crowding level: 0 normal, 1 warning, 2 critical."),
                ),
                &[label],
            )
            .expect("valid gauge vec"),
        );
        Self {
            people,
            level,
            cap,
            state: Mutex::new(CapState::default()),
        }
    }

    pub fn set(&self, subject: &str, people: u32, level: Level) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !state.admitted.contains(subject) && state.admitted.len() < self.cap {
            state.admitted.insert(subject.to_owned());
        }
        if state.admitted.contains(subject) {
            self.people
                .with_label_values(&[subject])
                .set(i64::from(people));
            self.level.with_label_values(&[subject]).set(level.rank());
            return;
        }
        state.others.insert(subject.to_owned(), (people, level));
        let sum: i64 = state.others.values().map(|(p, _)| i64::from(*p)).sum();
        let max = state
            .others
            .values()
            .map(|(_, l)| *l)
            .max()
            .unwrap_or_default();
        self.people.with_label_values(&[OTHER]).set(sum);
        self.level.with_label_values(&[OTHER]).set(max.rank());
    }
}

impl DashboardMetrics {
    pub fn register(registry: &Registry, max_cameras: usize) -> Self {
        let counter = |name: &str, help: &str| {
            register(
                registry,
                IntCounter::new(name, help).expect("valid counter"),
            )
        };
        let gauge = |name: &str, help: &str| {
            register(registry, IntGauge::new(name, help).expect("valid gauge"))
        };
        let counters = |name: &str, help: &str, labels: &[&str]| {
            register(
                registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter vec"),
            )
        };
        Self {
            events_stored: counter("dashboard_events_stored_total", "Count events stored."),
            events_duplicate: counter(
                "dashboard_events_duplicate_total",
                "Events received again (resent by image-predict, or a camera's retry) and not stored twice.",
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
            ingest_refused: counter(
                "dashboard_ingest_refused_total",
                "Requests to the ingest listener refused for a missing or wrong token.",
            ),
            live_clients: gauge(
                "dashboard_live_clients",
                "Browsers connected to the live feed.",
            ),
            alerts: counters(
                "dashboard_alerts_total",
                "Alerts recorded by this replica, by level and kind (raised, cleared).",
                &["level", "kind"],
            ),
            deliveries: counters(
                "dashboard_alert_deliveries_total",
                "Webhook delivery attempts of alerts, by outcome (delivered, failed, dropped).",
                &["outcome"],
            ),
            cameras: std::sync::Arc::new(CappedGauges::new(
                registry,
                "camera",
                "camera",
                max_cameras,
            )),
            groups: std::sync::Arc::new(CappedGauges::new(registry, "group", "group", max_cameras)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cameras_beyond_the_cap_are_summed_into_other() {
        let registry = Registry::new();
        let metrics = DashboardMetrics::register(&registry, 2);
        metrics.cameras.set("a", 5, Level::Normal);
        metrics.cameras.set("b", 6, Level::Warning);
        metrics.cameras.set("c", 7, Level::Normal);
        metrics.cameras.set("d", 8, Level::Critical);
        metrics.cameras.set("c", 1, Level::Normal);
        let text = {
            use prometheus::Encoder;
            let mut out = Vec::new();
            prometheus::TextEncoder::new()
                .encode(&registry.gather(), &mut out)
                .unwrap();
            String::from_utf8(out).unwrap()
        };
        assert!(
            text.contains(r#"crowd_camera_people_now{camera="a"} 5"#),
            "{text}"
        );
        assert!(
            text.contains(r#"crowd_camera_people_now{camera="_other"} 9"#),
            "{text}"
        );
        assert!(
            text.contains(r#"crowd_camera_level{camera="_other"} 2"#),
            "{text}"
        );
        assert!(!text.contains(r#"camera="c""#), "c is beyond the cap");
    }
}
