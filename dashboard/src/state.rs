//! The dashboard's shared state: the durable store, the in-memory view, and the live hub that
//! fans each new count out to every browser.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::validate::{CameraId, sniff_format};
use common::wire::{CountEvent, IngestReply, decode_event_frame};
use image::ImageFormat;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::history::{CameraView, HistogramView, History, Summary, Totals, Window};
use crate::metrics::DashboardMetrics;
use crate::store::{Inserted, Snapshot, Store, StoreError};

/// Windows shown by default: 30 minutes.
pub const DEFAULT_HISTOGRAM_WINDOWS: usize = 60;
/// Live messages a slow browser may fall behind before it is sent a fresh snapshot instead.
const LIVE_BACKLOG: usize = 256;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What browsers receive on `/ws/live`, as JSON text frames.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveMessage {
    /// The whole current state: sent on connect, and after a browser fell too far behind.
    Snapshot {
        summary: Summary,
        histogram: HistogramView,
    },
    /// A new count. `camera` is absent when the event was older than the camera's current photo.
    Count {
        camera: Option<CameraView>,
        totals: Totals,
        window: Window,
    },
    /// The figures that change with time alone (the last 30 s), sent every few seconds.
    Totals { totals: Totals },
}

pub struct DashboardState {
    store: Store,
    history: Mutex<History>,
    live: broadcast::Sender<Arc<str>>,
    pub metrics: DashboardMetrics,
}

impl DashboardState {
    pub fn new(store: Store, history: History, metrics: DashboardMetrics) -> Self {
        let (live, _) = broadcast::channel(LIVE_BACKLOG);
        Self {
            store,
            history: Mutex::new(history),
            live,
            metrics,
        }
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        // A panic while holding the lock cannot leave History half-updated in a way that matters
        // more than losing the service: keep serving.
        self.history.lock().unwrap_or_else(|e| e.into_inner())
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

    /// The newest annotated photo of `camera` and the id of its event, from the store.
    pub async fn photo(&self, camera: &str) -> Result<Option<(Bytes, String)>, StoreError> {
        self.store.latest_photo(camera).await
    }

    /// `Ok` when the store takes writes (for `/readyz`).
    pub async fn check_store(&self) -> Result<(), StoreError> {
        self.store.check().await
    }

    pub fn snapshot_message(&self) -> LiveMessage {
        let now = now_ms();
        let history = self.history();
        LiveMessage::Snapshot {
            summary: history.summary(now),
            histogram: history.histogram(now, DEFAULT_HISTOGRAM_WINDOWS),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.live.subscribe()
    }

    /// Handles one event frame from image-predict: validate, store durably (once), update the
    /// view and tell the browsers (with the shared store, every replica's follower does that). `Ok` holds the reply to send; `Err` means the store failed and
    /// the event must not be acknowledged (image-predict will resend it).
    pub async fn ingest(&self, frame: Bytes) -> Result<IngestReply, StoreError> {
        let (event, thumbnail) = match decode_event_frame(&frame) {
            Ok(parts) => parts,
            Err(e) => {
                self.metrics.events_rejected.inc();
                return Ok(IngestReply::Reject {
                    id: None,
                    reason: e.to_string(),
                });
            }
        };
        let problem = if let Err(e) = CameraId::parse(&event.camera) {
            Some(e.to_string())
        } else if event.id.is_empty() || event.id.len() > 128 {
            Some("event id must be 1 to 128 characters".to_owned())
        } else if sniff_format(&thumbnail).ok() != Some(ImageFormat::Jpeg) {
            Some("the thumbnail is not a JPEG".to_owned())
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
        let inserted = self.store.insert(&event, &thumbnail).await;
        timer.observe_duration();
        match inserted? {
            Inserted::Duplicate => self.metrics.events_duplicate.inc(),
            Inserted::New => {
                self.metrics.events_stored.inc();
                // With a shared store every replica, this one included, learns of new events by
                // following the store's log (`follower`), so all of them apply the same events
                // once each; the embedded store has no log and this is the only replica.
                if self.store.shared().is_none() {
                    self.apply(&event, None);
                }
            }
        }
        Ok(IngestReply::Ack { id: event.id })
    }

    /// Adds a stored event to the view and tells the browsers. `store_totals` (people, photos):
    /// the shared store's totals right after this event, which replace the view's own sums.
    pub fn apply(&self, event: &CountEvent, store_totals: Option<(u64, u64)>) {
        let message = {
            let mut history = self.history();
            let camera = history.apply(event);
            if let Some((people, photos)) = store_totals {
                history.adopt_totals(people, photos);
            }
            LiveMessage::Count {
                camera,
                totals: history.totals(now_ms()),
                window: history.window(event.timestamp_ms),
            }
        };
        self.broadcast(&message);
    }

    /// Rebuilds the view from a fresh snapshot and sends it to every browser.
    pub fn replace_view(&self, snapshot: Snapshot) {
        *self.history() = History::from_snapshot(snapshot);
        self.broadcast(&self.snapshot_message());
    }

    pub fn broadcast(&self, message: &LiveMessage) {
        let json: Arc<str> = serde_json::to_string(message)
            .expect("live messages always serialise")
            .into();
        // No subscriber is fine: nobody is watching.
        let _ = self.live.send(json);
    }

    /// Drops history older than `before_ms` from the store and the view.
    pub async fn prune(&self, before_ms: i64) -> Result<u64, StoreError> {
        let removed = self.store.prune(before_ms).await?;
        self.history().prune(before_ms, now_ms());
        Ok(removed)
    }
}
