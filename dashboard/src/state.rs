//! The dashboard's shared state: the durable store, the in-memory view, the alert engine, and
//! the live hub that fans each new count out to every browser.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::validate::{CameraId, sniff_format};
use common::wire::{CountEvent, IngestReply, decode_event_frame};
use image::ImageFormat;
use serde::Serialize;
use tokio::sync::{Notify, broadcast, mpsc};

use crate::alerts::{Alert, AlertRules, Engine, Level, SubjectKind};
use crate::history::{CameraView, GroupView, HistogramView, History, Summary, Totals, Window};
use crate::metrics::DashboardMetrics;
use crate::registry::{CameraSettings, Registry, RegistryFile};
use crate::store::{Inserted, Recorded, Snapshot, Store, StoreError};

/// Windows shown by default: 30 minutes.
pub const DEFAULT_HISTOGRAM_WINDOWS: usize = 60;
/// Live messages a slow browser may fall behind before it is sent a fresh snapshot instead.
const LIVE_BACKLOG: usize = 256;
/// Alerts the page's log starts with.
pub const ALERT_LOG_LENGTH: usize = 50;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What browsers receive on `/ws/live`, as JSON text frames.
// Each message is serialised once and sent; none is kept in bulk, so the snapshot's size
// against the others' costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveMessage {
    /// The whole current state: sent on connect, and after a browser fell too far behind.
    Snapshot {
        summary: Summary,
        histogram: HistogramView,
        alerts: Vec<Alert>,
    },
    /// A new count. `camera` is absent when the event was older than the camera's current photo.
    Count {
        camera: Option<CameraView>,
        /// The camera's group, now.
        group: Option<GroupView>,
        totals: Totals,
        window: Window,
    },
    /// The figures that change with time alone (the last 30 s), sent every few seconds.
    Totals { totals: Totals },
    /// A camera or group changed level.
    Alert { alert: Alert },
    /// The camera registry changed: the page fetches a fresh summary.
    Registry,
}

pub struct DashboardState {
    store: Store,
    history: Mutex<History>,
    engine: Mutex<Engine>,
    rules: AlertRules,
    /// The registry file, under the run-time changes kept by the store.
    registry_file: RegistryFile,
    /// Alerts computed, in order, for the recorder task.
    alerts: mpsc::UnboundedSender<Alert>,
    /// Wakes the webhook workers when an alert is recorded.
    pub new_alert: Arc<Notify>,
    pub webhooks: usize,
    live: broadcast::Sender<Arc<str>>,
    pub metrics: DashboardMetrics,
}

impl DashboardState {
    /// The state, and the receiving end of the alerts it computes (for [`record_alerts`]).
    pub fn new(
        store: Store,
        history: History,
        registry_file: RegistryFile,
        levels: BTreeMap<(SubjectKind, String), Level>,
        rules: AlertRules,
        webhooks: usize,
        metrics: DashboardMetrics,
    ) -> (Self, mpsc::UnboundedReceiver<Alert>) {
        let (live, _) = broadcast::channel(LIVE_BACKLOG);
        let (alerts, receiver) = mpsc::unbounded_channel();
        let mut history = history;
        let mut engine = Engine::default();
        for ((kind, subject), level) in levels {
            history.set_level(kind, &subject, level);
            engine.subjects.entry((kind, subject)).or_default().level = level;
        }
        let state = Self {
            store,
            history: Mutex::new(history),
            engine: Mutex::new(engine),
            rules,
            registry_file,
            alerts,
            new_alert: Arc::new(Notify::new()),
            webhooks,
            live,
            metrics,
        };
        state.refresh_gauges();
        (state, receiver)
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        // A panic while holding the lock cannot leave History half-updated in a way that matters
        // more than losing the service: keep serving.
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn summary(&self) -> Summary {
        self.history().summary(now_ms())
    }

    pub fn totals(&self) -> Totals {
        self.history().totals(now_ms())
    }

    pub fn histogram(&self, windows: usize) -> HistogramView {
        self.history().histogram(now_ms(), windows)
    }

    pub fn camera(&self, camera: &str) -> Option<CameraView> {
        self.history().camera(camera, now_ms())
    }

    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(self.history().registry())
    }

    /// The cameras of a group that have sent photos.
    pub fn group_cameras(&self, group: &str) -> Vec<String> {
        self.history().group_cameras(group)
    }

    /// Every camera that has sent a photo.
    pub fn camera_ids(&self) -> Vec<String> {
        self.history().camera_ids().cloned().collect()
    }

    /// The newest annotated photo of `camera` and the id of its event, from the store.
    pub async fn photo(&self, camera: &str) -> Result<Option<(Bytes, String)>, StoreError> {
        self.store.latest_photo(camera).await
    }

    pub async fn snapshot_message(&self) -> LiveMessage {
        let alerts = match self.store.recent_alerts(ALERT_LOG_LENGTH).await {
            Ok(alerts) => alerts,
            Err(error) => {
                tracing::warn!(%error, "reading the alert log for a snapshot failed");
                Vec::new()
            }
        };
        let now = now_ms();
        let history = self.history();
        LiveMessage::Snapshot {
            summary: history.summary(now),
            histogram: history.histogram(now, DEFAULT_HISTOGRAM_WINDOWS),
            alerts,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.live.subscribe()
    }

    /// Handles one event frame from image-predict: validate, store durably (once), update the
    /// view and tell the browsers (with the shared store, every replica's follower does that).
    /// `Ok` holds the reply to send; `Err` means the store failed and the event must not be
    /// acknowledged (image-predict answers its camera 503, and the camera sends it again).
    pub async fn ingest(&self, frame: Bytes) -> Result<IngestReply, StoreError> {
        let (header, thumbnail) = match decode_event_frame(&frame) {
            Ok(parts) => parts,
            Err(e) => {
                self.metrics.events_rejected.inc();
                return Ok(IngestReply::Reject {
                    id: None,
                    reason: e.to_string(),
                });
            }
        };
        let event = header.event;
        let problem = if let Err(e) = CameraId::parse(&event.camera) {
            Some(e.to_string())
        } else if event.id.is_empty() || event.id.len() > 128 {
            Some("event id must be 1 to 128 characters".to_owned())
        } else if sniff_format(&thumbnail).ok() != Some(ImageFormat::Jpeg) {
            Some("the thumbnail is not a JPEG".to_owned())
        } else if header
            .answer
            .as_ref()
            .is_some_and(|a| a.event_id != event.id || a.camera != event.camera)
        {
            Some("the answer is not this event's".to_owned())
        } else {
            None
        };
        if let Some(reason) = problem {
            self.metrics.events_rejected.inc();
            return Ok(IngestReply::Reject {
                id: Some(event.id),
                reason,
            });
        }

        let timer = self.metrics.store_write_seconds.start_timer();
        let inserted = self
            .store
            .insert(&event, &thumbnail, header.answer.as_ref())
            .await;
        timer.observe_duration();
        let duplicate = match inserted? {
            Inserted::Duplicate => {
                self.metrics.events_duplicate.inc();
                true
            }
            Inserted::New => {
                self.metrics.events_stored.inc();
                // With a shared store every replica, this one included, learns of new events by
                // following the store's log (`follower`), so all of them apply the same events
                // once each; the embedded store has no log and this is the only replica.
                if self.store.shared().is_none() {
                    self.apply(&event, None);
                }
                false
            }
        };
        Ok(IngestReply::Ack {
            id: event.id,
            duplicate,
        })
    }

    /// Adds a stored event to the view, tells the browsers, and feeds the alert engine (in the
    /// store's order). `store_totals` (people, photos): the shared store's totals right after
    /// this event, which replace the view's own sums.
    pub fn apply(&self, event: &CountEvent, store_totals: Option<(u64, u64)>) {
        let now = now_ms();
        let (message, registry) = {
            let mut history = self.history();
            let camera = history.apply(event, now);
            if let Some((people, photos)) = store_totals {
                history.adopt_totals(people, photos);
            }
            let registry = Arc::clone(history.registry());
            let group = registry
                .group_of(&event.camera)
                .map(|g| history.group_view(g));
            (
                LiveMessage::Count {
                    camera,
                    group,
                    totals: history.totals(now),
                    window: history.window(event.timestamp_ms),
                },
                registry,
            )
        };
        self.broadcast(&message);
        self.update_gauges(&event.camera);
        let alerts = self.engine().observe(
            &event.camera,
            event.count,
            event.timestamp_ms,
            &registry,
            &self.rules,
        );
        for alert in alerts {
            // The recorder task stops only with the state.
            let _ = self.alerts.send(alert);
        }
    }

    /// Sets a subject's level in the view (and its gauge).
    pub fn show_level(&self, kind: SubjectKind, subject: &str, level: Level) {
        self.history().set_level(kind, subject, level);
        match kind {
            SubjectKind::Camera => self.update_gauges(subject),
            SubjectKind::Group => self.update_group_gauges(subject),
        }
    }

    /// Another replica recorded a different level for this subject: the engine and the view
    /// take it.
    pub fn adopt_level(&self, kind: SubjectKind, subject: &str, level: Level) {
        self.engine()
            .subjects
            .entry((kind, subject.to_owned()))
            .or_default()
            .level = level;
        self.show_level(kind, subject, level);
    }

    /// Rebuilds the view from a fresh snapshot and sends it to every browser.
    pub async fn replace_view(&self, snapshot: Snapshot) {
        {
            let mut history = self.history();
            let registry = Arc::clone(history.registry());
            let mut fresh = History::from_snapshot(snapshot, registry);
            for (camera, _) in history.latest_counts() {
                fresh.set_level(
                    SubjectKind::Camera,
                    camera,
                    history.level(SubjectKind::Camera, camera),
                );
            }
            for group in history.registry().groups() {
                fresh.set_level(
                    SubjectKind::Group,
                    &group,
                    history.level(SubjectKind::Group, &group),
                );
            }
            *history = fresh;
        }
        let message = self.snapshot_message().await;
        self.broadcast(&message);
    }

    /// The registry from the file and the store's run-time changes, now; sent to the browsers.
    pub async fn reload_registry(&self) -> Result<(), StoreError> {
        let changed = self.store.camera_settings().await?;
        let registry = Arc::new(Registry::new(self.registry_file.clone(), changed));
        let unchanged = **self.history().registry() == *registry;
        if !unchanged {
            self.history().set_registry(registry);
            self.broadcast(&LiveMessage::Registry);
            self.refresh_gauges();
        }
        Ok(())
    }

    /// Stores a camera's new settings and puts them in effect.
    pub async fn set_camera_settings(
        &self,
        camera: &str,
        settings: CameraSettings,
    ) -> Result<(), StoreError> {
        self.store.put_camera_settings(camera, &settings).await?;
        self.reload_registry().await
    }

    pub fn broadcast(&self, message: &LiveMessage) {
        let json: Arc<str> = serde_json::to_string(message)
            .expect("live messages always serialise")
            .into();
        // No subscriber is fine: nobody is watching.
        let _ = self.live.send(json);
    }

    /// Drops history older than the retentions from the store and the view.
    pub async fn prune(
        &self,
        events_before_ms: i64,
        rollups_before_ms: i64,
    ) -> Result<u64, StoreError> {
        let removed = self
            .store
            .prune(events_before_ms, rollups_before_ms)
            .await?;
        self.history().prune(events_before_ms, now_ms());
        Ok(removed)
    }

    fn update_gauges(&self, camera: &str) {
        let history = self.history();
        let count = history.camera(camera, now_ms()).map_or(0, |v| v.count);
        let level = history.level(SubjectKind::Camera, camera);
        self.metrics.cameras.set(camera, count, level);
        if let Some(group) = history.registry().group_of(camera).map(str::to_owned) {
            let view = history.group_view(&group);
            self.metrics.groups.set(
                &group,
                view.people_now.min(u64::from(u32::MAX)) as u32,
                view.level,
            );
        }
    }

    fn update_group_gauges(&self, group: &str) {
        let view = self.history().group_view(group);
        self.metrics.groups.set(
            group,
            view.people_now.min(u64::from(u32::MAX)) as u32,
            view.level,
        );
    }

    fn refresh_gauges(&self) {
        let cameras: Vec<String> = self.history().camera_ids().cloned().collect();
        for camera in cameras {
            self.update_gauges(&camera);
        }
        let groups = self.history().registry().groups();
        for group in groups {
            self.update_group_gauges(&group);
        }
    }
}

/// Records the alerts the state computes, one after the other in the order they were computed,
/// until the state is gone. A recorded alert is shown and its webhooks woken; with the shared
/// store, the browsers hear of it through the alert stream's follower, whichever replica
/// recorded it. A conflict (another replica moved the level first) makes this replica adopt
/// the recorded level.
pub async fn record_alerts(
    state: std::sync::Weak<DashboardState>,
    mut alerts: mpsc::UnboundedReceiver<Alert>,
) {
    while let Some(alert) = alerts.recv().await {
        let Some(state) = state.upgrade() else {
            return;
        };
        let mut attempt = 0u32;
        let recorded = loop {
            match state.store.record_alert(&alert, state.webhooks).await {
                Ok(recorded) => break Some(recorded),
                Err(error) if attempt < 5 => {
                    attempt += 1;
                    tracing::warn!(%error, alert = %alert.id, attempt, "recording an alert failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)))
                        .await;
                }
                Err(error) => {
                    tracing::error!(%error, alert = %alert.id, "recording an alert failed; it is lost");
                    break None;
                }
            }
        };
        match recorded {
            Some(Recorded::New) => {
                tracing::info!(
                    alert = %alert.id, subject = %alert.subject, level = alert.level.as_str(),
                    previous = alert.previous_level.as_str(), count = alert.count, "alert"
                );
                state
                    .metrics
                    .alerts
                    .with_label_values(&[
                        alert.level.as_str(),
                        if alert.level > alert.previous_level {
                            "raised"
                        } else {
                            "cleared"
                        },
                    ])
                    .inc();
                state.show_level(alert.subject_kind, &alert.subject, alert.level);
                if state.store.shared().is_none() {
                    state.broadcast(&LiveMessage::Alert {
                        alert: alert.clone(),
                    });
                }
                state.new_alert.notify_waiters();
            }
            Some(Recorded::Known) => {
                state.show_level(alert.subject_kind, &alert.subject, alert.level)
            }
            Some(Recorded::Conflict(level)) => {
                state.adopt_level(alert.subject_kind, &alert.subject, level)
            }
            None => {}
        }
    }
}
