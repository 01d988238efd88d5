//! Where the dashboard keeps its history. One [`Store`] with two engines, chosen by `--store`:
//!
//! - `embedded` ([`embedded::EmbeddedStore`], the default): a redb file under the data dir, for a
//!   dashboard that runs alone on one machine.
//! - `redis://…` ([`shared::SharedStore`]): Redis, shared by every dashboard replica. Besides
//!   storing, it keeps a log (a Redis stream) of the stored events that each replica follows
//!   (see `follower`) to update its own view and its own browsers.
//!
//! Either way an event is stored at most once per id, and only a stored event is acknowledged.
//! Besides the events, both keep what the analysts' views need: per camera its events in time
//! order, 5-minute rollups for longer ranges, its newest annotated photos, the registry settings
//! changed at run time, the answers of idempotent uploads, and the alert log.

pub mod embedded;
pub mod shared;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use common::wire::{CountEvent, CountResponse};
use serde::{Deserialize, Serialize};

use crate::alerts::{Alert, Level, SubjectKind};
use crate::configuration::DashboardConfig;
use crate::registry::CameraSettings;
use embedded::EmbeddedStore;
use shared::SharedStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("dashboard store: {0}")]
    Redb(#[from] redb::Error),
    #[error("dashboard store (Redis): {0}")]
    Redis(#[from] redis::RedisError),
    #[error("dashboard store holds an unreadable record: {0}")]
    Corrupt(String),
    #[error("dashboard store: {0}")]
    Unavailable(String),
}

/// What recording an alert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded (and queued for the webhooks); the subject's level is now the alert's.
    New,
    /// This alert (its id) was recorded before: by another replica, or before a restart.
    Known,
    /// The subject's recorded level is not the alert's previous level (another replica moved it
    /// first): nothing recorded; the recorded level is given, to adopt.
    Conflict(Level),
}

/// Whether an insert stored a new event or found its id already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New,
    Duplicate,
}

/// Width of a rollup: per camera, per 5 minutes, the photos, their sum, maximum and last count,
/// kept for `--rollup-days` when per-photo events are kept for `--history-hours` only.
pub const ROLLUP_MS: i64 = 5 * 60 * 1000;

/// Start of the rollup holding `timestamp_ms`.
pub fn rollup_start(timestamp_ms: i64) -> i64 {
    timestamp_ms.div_euclid(ROLLUP_MS) * ROLLUP_MS
}

/// One camera's photos in one [`ROLLUP_MS`] window: how many, their sum, lowest, highest and
/// latest count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollup {
    pub start_ms: i64,
    pub photos: u32,
    pub sum: u64,
    pub min: u32,
    pub max: u32,
    /// The count of the latest photo in the window, and that photo's time.
    pub last: u32,
    pub last_ms: i64,
}

impl Rollup {
    /// The rollup after adding one photo to `self` (or to an empty window).
    pub fn add(previous: Option<Rollup>, count: u32, timestamp_ms: i64) -> Rollup {
        match previous {
            None => Rollup {
                start_ms: rollup_start(timestamp_ms),
                photos: 1,
                sum: u64::from(count),
                min: count,
                max: count,
                last: count,
                last_ms: timestamp_ms,
            },
            Some(r) => Rollup {
                photos: r.photos + 1,
                sum: r.sum + u64::from(count),
                min: r.min.min(count),
                max: r.max.max(count),
                last: if timestamp_ms >= r.last_ms {
                    count
                } else {
                    r.last
                },
                last_ms: r.last_ms.max(timestamp_ms),
                ..r
            },
        }
    }
}

/// A kept annotated photo of a camera.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhotoEntry {
    pub event_id: String,
    pub timestamp_ms: i64,
    pub count: u32,
}

/// One event of the per-event history, as the view needs it at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    pub timestamp_ms: i64,
    pub camera: String,
    pub count: u32,
}

/// Everything needed to rebuild the in-memory view at start.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub people_total: u64,
    pub photos_total: u64,
    /// Newest event per camera (its photo stays in the store: see [`Store::latest_photo`]).
    pub latest: Vec<CountEvent>,
    /// Every event kept since the snapshot's start, oldest first.
    pub timeline: Vec<TimelineEntry>,
    /// The shared store's log position this snapshot includes everything up to; following the
    /// log from here misses nothing and repeats nothing. `None` for the embedded store.
    pub log_position: Option<String>,
}

/// The `--store` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    Embedded,
    /// A `redis://host:port/db` or `rediss://host:port/db` (TLS) URL.
    Redis(String),
}

impl FromStr for StoreChoice {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value == "embedded" {
            Ok(StoreChoice::Embedded)
        } else if value.starts_with("redis://") || value.starts_with("rediss://") {
            Ok(StoreChoice::Redis(value.to_owned()))
        } else {
            Err(format!(
                "expected `embedded` or a redis:// (or rediss://, TLS) URL, not `{value}`"
            ))
        }
    }
}

/// The store the dashboard runs on; the rest of the code does not care which.
#[derive(Clone)]
pub enum Store {
    Embedded(Arc<EmbeddedStore>),
    Shared(Arc<SharedStore>),
}

macro_rules! dispatch {
    ($self:ident, $store:ident => $embedded:expr, $shared:expr) => {
        match $self {
            Store::Embedded(store) => {
                let $store = Arc::clone(store);
                blocking(move || $embedded).await
            }
            Store::Shared($store) => $shared.await,
        }
    };
}

impl Store {
    pub async fn open(config: &DashboardConfig) -> Result<Self, StoreError> {
        match &config.store {
            StoreChoice::Embedded => {
                let data_dir = config.data_dir.clone();
                let settings = config.embedded_store_settings();
                let store = blocking(move || EmbeddedStore::open(&data_dir, settings)).await?;
                Ok(Store::Embedded(Arc::new(store)))
            }
            StoreChoice::Redis(url) => Ok(Store::Shared(Arc::new(
                SharedStore::connect(url, config.shared_store_settings()).await?,
            ))),
        }
    }

    /// What a log follower reads from, when the store has a log (the shared store).
    pub fn shared(&self) -> Option<&Arc<SharedStore>> {
        match self {
            Store::Embedded(_) => None,
            Store::Shared(shared) => Some(shared),
        }
    }

    /// Totals, newest event per camera, and the timeline since `since_ms`.
    pub async fn snapshot(&self, since_ms: i64) -> Result<Snapshot, StoreError> {
        dispatch!(self, store => store.snapshot(since_ms), store.snapshot(since_ms))
    }

    /// Stores an event durably, once per id, with the answer of an idempotent upload. `Ok`
    /// means it is stored (now or before) and may be acknowledged.
    pub async fn insert(
        &self,
        event: &CountEvent,
        thumbnail: &Bytes,
        answer: Option<&CountResponse>,
    ) -> Result<Inserted, StoreError> {
        match self {
            Store::Embedded(store) => {
                let (store, event, thumbnail, answer) = (
                    Arc::clone(store),
                    event.clone(),
                    thumbnail.clone(),
                    answer.cloned(),
                );
                blocking(move || store.insert(&event, &thumbnail, answer.as_ref())).await
            }
            Store::Shared(store) => store.insert(event, thumbnail, answer).await,
        }
    }

    /// The newest annotated photo of `camera` and the id of its event.
    pub async fn latest_photo(&self, camera: &str) -> Result<Option<(Bytes, String)>, StoreError> {
        let camera = camera.to_owned();
        dispatch!(self, store => store.latest_photo(&camera), store.latest_photo(&camera))
    }

    /// The camera's kept annotated photos, newest first.
    pub async fn recent_photos(&self, camera: &str) -> Result<Vec<PhotoEntry>, StoreError> {
        let camera = camera.to_owned();
        dispatch!(self, store => store.recent_photos(&camera), store.recent_photos(&camera))
    }

    /// One kept photo of `camera`.
    pub async fn photo(&self, camera: &str, event_id: &str) -> Result<Option<Bytes>, StoreError> {
        let (camera, event_id) = (camera.to_owned(), event_id.to_owned());
        dispatch!(self, store => store.photo(&camera, &event_id), store.photo(&camera, &event_id))
    }

    /// The answer kept for an idempotent upload.
    pub async fn answer(&self, event_id: &str) -> Result<Option<CountResponse>, StoreError> {
        let event_id = event_id.to_owned();
        dispatch!(self, store => store.answer(&event_id), store.answer(&event_id))
    }

    /// The camera's per-photo events with `from_ms <= time < to_ms`, in time order.
    pub async fn camera_events(
        &self,
        camera: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<CountEvent>, StoreError> {
        let camera = camera.to_owned();
        dispatch!(self, store => store.camera_events(&camera, from_ms, to_ms), store.camera_events(&camera, from_ms, to_ms))
    }

    /// The camera's 5-minute rollups from the one holding `from_ms` to `to_ms`.
    pub async fn rollups(
        &self,
        camera: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Rollup>, StoreError> {
        let camera = camera.to_owned();
        dispatch!(self, store => store.rollups(&camera, from_ms, to_ms), store.rollups(&camera, from_ms, to_ms))
    }

    /// Registry settings changed at run time, by camera.
    pub async fn camera_settings(&self) -> Result<BTreeMap<String, CameraSettings>, StoreError> {
        dispatch!(self, store => store.camera_settings(), store.camera_settings())
    }

    pub async fn put_camera_settings(
        &self,
        camera: &str,
        settings: &CameraSettings,
    ) -> Result<(), StoreError> {
        let (camera, settings) = (camera.to_owned(), settings.clone());
        dispatch!(self, store => store.put_camera_settings(&camera, &settings), store.put_camera_settings(&camera, &settings))
    }

    /// Records an alert once, if its subject's recorded level is still the alert's previous
    /// level (so that replicas computing the same change record it once), and queues it for each
    /// of `webhooks` webhooks.
    pub async fn record_alert(
        &self,
        alert: &Alert,
        webhooks: usize,
    ) -> Result<Recorded, StoreError> {
        let alert = alert.clone();
        dispatch!(self, store => store.record_alert(&alert, webhooks), store.record_alert(&alert))
    }

    /// The recorded level of every camera and group not at `normal`.
    pub async fn levels(&self) -> Result<BTreeMap<(SubjectKind, String), Level>, StoreError> {
        dispatch!(self, store => store.levels(), store.levels())
    }

    /// The newest alerts, newest first.
    pub async fn recent_alerts(&self, limit: usize) -> Result<Vec<Alert>, StoreError> {
        dispatch!(self, store => store.recent_alerts(limit), store.recent_alerts(limit))
    }

    /// Drops per-event history older than `events_before_ms` and rollups and alerts older
    /// than `rollups_before_ms` (the shared store's expire by themselves); totals and latest
    /// photos stay. Returns how many events were removed.
    pub async fn prune(
        &self,
        events_before_ms: i64,
        rollups_before_ms: i64,
    ) -> Result<u64, StoreError> {
        dispatch!(self, store => store.prune(events_before_ms, rollups_before_ms), store.prune(events_before_ms))
    }

    /// `Ok` when the store can take writes now.
    pub async fn check(&self) -> Result<(), StoreError> {
        match self {
            Store::Embedded(_) => Ok(()),
            Store::Shared(store) => store.ping().await,
        }
    }
}

/// A subject's key in the stores' level records: `camera:gate-1`, `group:north entrance`.
pub fn subject_key(kind: SubjectKind, subject: &str) -> String {
    match kind {
        SubjectKind::Camera => format!("camera:{subject}"),
        SubjectKind::Group => format!("group:{subject}"),
    }
}

/// The subject of a key made by [`subject_key`].
pub fn parse_subject_key(key: &str) -> Option<(SubjectKind, String)> {
    let (kind, subject) = key.split_once(':')?;
    let kind = match kind {
        "camera" => SubjectKind::Camera,
        "group" => SubjectKind::Group,
        _ => return None,
    };
    Some((kind, subject.to_owned()))
}

pub fn parse_level(text: &str) -> Option<Level> {
    match text {
        "normal" => Some(Level::Normal),
        "warning" => Some(Level::Warning),
        "critical" => Some(Level::Critical),
        _ => None,
    }
}

/// redb waits for the disk: its calls run off the async reactor.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .expect("store calls do not panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_setting_is_embedded_or_a_redis_url() {
        assert_eq!("embedded".parse(), Ok(StoreChoice::Embedded));
        assert_eq!(
            "redis://redis:6379/0".parse(),
            Ok(StoreChoice::Redis("redis://redis:6379/0".into()))
        );
        assert_eq!(
            "rediss://:pw@redis:6380/0".parse(),
            Ok(StoreChoice::Redis("rediss://:pw@redis:6380/0".into()))
        );
        assert!("postgres://db".parse::<StoreChoice>().is_err());
    }
}
