//! The embedded store: the history on disk, in one file (`dashboard.redb` under the data dir),
//! for a dashboard that runs alone.
//!
//! Crate: `redb`, an embedded key-value store in pure Rust: ACID transactions with a durable
//! commit (the event is on disk before the dashboard acknowledges it to image-predict), one file,
//! no server and no C toolchain. Tables:
//! - `events`: event id → event JSON. Also the idempotence check: a known id is not stored twice.
//! - `timeline`: (timestamp ms, event id) → people, for the histogram and for pruning by age.
//! - `camera_events`: (camera, timestamp ms, event id) → (), a camera's events in time order
//!   (series, export).
//! - `rollups`: (camera, 5-minute window start) → photos, sum, min, max, last count and its time:
//!   the series beyond the per-event history, kept for `--rollup-days`.
//! - `latest`: camera → the newest event of that camera with its annotated JPEG (a wire frame).
//! - `photos`: (camera, timestamp ms, event id) → annotated JPEG, the newest few per camera.
//! - `answers`: event id → the answer given to a camera that sent an idempotency key.
//! - `totals`: "people" and "photos" counted since the store was created (never pruned).
//! - `settings`: camera → its registry settings changed at run time (JSON).
//! - `alerts`: (time ms, alert id) → alert JSON, the alert log; `alert_ids`: alert id → ().
//! - `deliveries`: (webhook index, time ms, alert id) → alert JSON, waiting for delivery.
//! - `levels`: subject (`camera:…`, `group:…`) → its level as the last recorded alert set it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::wire::{CountEvent, CountResponse, decode_event_frame, encode_event_frame};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{
    Inserted, PhotoEntry, Recorded, Rollup, Snapshot, StoreError, TimelineEntry, parse_level,
    parse_subject_key, rollup_start, subject_key,
};
use crate::alerts::{Alert, Level, SubjectKind};
use crate::registry::CameraSettings;

const EVENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("events");
const TIMELINE: TableDefinition<(i64, &str), u64> = TableDefinition::new("timeline");
const CAMERA_EVENTS: TableDefinition<(&str, i64, &str), ()> = TableDefinition::new("camera_events");
/// A stored [`Rollup`] without its start (the key's): photos, sum, min, max, last, last_ms.
type RollupValue = (u32, u64, u32, u32, u32, i64);
const ROLLUPS: TableDefinition<(&str, i64), RollupValue> = TableDefinition::new("rollups");
const LATEST: TableDefinition<&str, &[u8]> = TableDefinition::new("latest");
const PHOTOS: TableDefinition<(&str, i64, &str), &[u8]> = TableDefinition::new("photos");
const ANSWERS: TableDefinition<&str, &[u8]> = TableDefinition::new("answers");
const TOTALS: TableDefinition<&str, u64> = TableDefinition::new("totals");
const SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("settings");
const ALERTS: TableDefinition<(i64, &str), &[u8]> = TableDefinition::new("alerts");
const ALERT_IDS: TableDefinition<&str, ()> = TableDefinition::new("alert_ids");
const DELIVERIES: TableDefinition<(u32, i64, &str), &[u8]> = TableDefinition::new("deliveries");
const LEVELS: TableDefinition<&str, &str> = TableDefinition::new("levels");
const PEOPLE: &str = "people";
const PHOTOS_TOTAL: &str = "photos";

/// redb has one error type per operation; all convert into `redb::Error`.
trait OrStoreError<T> {
    fn db(self) -> Result<T, StoreError>;
}

impl<T, E: Into<redb::Error>> OrStoreError<T> for Result<T, E> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Redb(e.into()))
    }
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// How the embedded store keeps things.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedSettings {
    /// Annotated photos kept per camera.
    pub photos_per_camera: usize,
    /// How long to wait for the file's lock, held by a dashboard still shutting down.
    pub lock_wait: Duration,
    /// Alerts waiting for one webhook at most; beyond it the oldest is dropped.
    pub max_pending_deliveries: usize,
}

pub struct EmbeddedStore {
    db: Database,
    settings: EmbeddedSettings,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `data_dir`. When another dashboard still holds the file
    /// (finishing its graceful shutdown), waits for it up to `lock_wait`, saying so in the log.
    pub fn open(data_dir: &Path, settings: EmbeddedSettings) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| corrupt(format!("cannot create {}: {e}", data_dir.display())))?;
        let path = data_dir.join("dashboard.redb");
        let started = Instant::now();
        let mut said = false;
        let db = loop {
            match Database::create(&path) {
                Ok(db) => break db,
                Err(redb::DatabaseError::DatabaseAlreadyOpen)
                    if started.elapsed() < settings.lock_wait =>
                {
                    if !said {
                        tracing::warn!(
                            path = %path.display(),
                            wait_secs = settings.lock_wait.as_secs(),
                            "the history file is still open by another dashboard (shutting down?); waiting for it"
                        );
                        said = true;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                    return Err(StoreError::Unavailable(format!(
                        "{} is still open by another process after {} s",
                        path.display(),
                        settings.lock_wait.as_secs()
                    )));
                }
                Err(e) => return Err(StoreError::Redb(e.into())),
            }
        };
        if said {
            tracing::info!(
                waited_ms = started.elapsed().as_millis() as u64,
                "history file opened"
            );
        }
        let txn = db.begin_write().db()?;
        {
            txn.open_table(EVENTS).db()?;
            txn.open_table(TIMELINE).db()?;
            txn.open_table(CAMERA_EVENTS).db()?;
            txn.open_table(ROLLUPS).db()?;
            txn.open_table(LATEST).db()?;
            txn.open_table(PHOTOS).db()?;
            txn.open_table(ANSWERS).db()?;
            txn.open_table(TOTALS).db()?;
            txn.open_table(SETTINGS).db()?;
            txn.open_table(ALERTS).db()?;
            txn.open_table(ALERT_IDS).db()?;
            txn.open_table(DELIVERIES).db()?;
            txn.open_table(LEVELS).db()?;
        }
        txn.commit().db()?;
        Ok(Self { db, settings })
    }

    /// Stores an event durably, once: a second insert of the same id changes nothing.
    /// Blocking (it waits for the disk): call it off the async reactor.
    pub fn insert(
        &self,
        event: &CountEvent,
        thumbnail: &[u8],
        answer: Option<&CountResponse>,
    ) -> Result<Inserted, StoreError> {
        let txn = self.db.begin_write().db()?;
        {
            let mut events = txn.open_table(EVENTS).db()?;
            if events.get(event.id.as_str()).db()?.is_some() {
                return Ok(Inserted::Duplicate);
            }
            let json = serde_json::to_vec(event).expect("CountEvent always serialises");
            events.insert(event.id.as_str(), json.as_slice()).db()?;
            let (id, camera, ts) = (event.id.as_str(), event.camera.as_str(), event.timestamp_ms);
            txn.open_table(TIMELINE)
                .db()?
                .insert((ts, id), u64::from(event.count))
                .db()?;
            txn.open_table(CAMERA_EVENTS)
                .db()?
                .insert((camera, ts, id), ())
                .db()?;
            {
                let mut rollups = txn.open_table(ROLLUPS).db()?;
                let key = (camera, rollup_start(ts));
                let previous = rollups
                    .get(key)
                    .db()?
                    .map(|v| rollup_from(key.1, v.value()));
                let r = Rollup::add(previous, event.count, ts);
                rollups
                    .insert(key, (r.photos, r.sum, r.min, r.max, r.last, r.last_ms))
                    .db()?;
            }
            if let Some(answer) = answer {
                let json = serde_json::to_vec(answer).expect("CountResponse always serialises");
                txn.open_table(ANSWERS)
                    .db()?
                    .insert(id, json.as_slice())
                    .db()?;
            }
            let mut totals = txn.open_table(TOTALS).db()?;
            let people = totals.get(PEOPLE).db()?.map_or(0, |v| v.value());
            let photos = totals.get(PHOTOS_TOTAL).db()?.map_or(0, |v| v.value());
            totals
                .insert(PEOPLE, people + u64::from(event.count))
                .db()?;
            totals.insert(PHOTOS_TOTAL, photos + 1).db()?;
            let mut latest = txn.open_table(LATEST).db()?;
            let newer = match latest.get(camera).db()? {
                None => true,
                Some(stored) => {
                    let frame = Bytes::copy_from_slice(stored.value());
                    let (current, _) = decode_event_frame(&frame).map_err(corrupt)?;
                    (ts, id) > (current.event.timestamp_ms, current.event.id.as_str())
                }
            };
            if newer {
                let frame = encode_event_frame(event, None, thumbnail);
                latest.insert(camera, &frame[..]).db()?;
            }
            let mut photos = txn.open_table(PHOTOS).db()?;
            photos.insert((camera, ts, id), thumbnail).db()?;
            let kept: Vec<(i64, String)> = photos
                .range((camera, i64::MIN, "")..=(camera, i64::MAX, "\u{10ffff}"))
                .db()?
                .map(|entry| entry.map(|(k, _)| (k.value().1, k.value().2.to_owned())))
                .collect::<Result<_, _>>()
                .db()?;
            let excess = kept
                .len()
                .saturating_sub(self.settings.photos_per_camera.max(1));
            for (old_ts, old_id) in &kept[..excess] {
                photos.remove((camera, *old_ts, old_id.as_str())).db()?;
            }
        }
        txn.commit().db()?;
        Ok(Inserted::New)
    }

    /// Reads what the in-memory view needs: totals, latest per camera, and the timeline since
    /// `since_ms`.
    pub fn snapshot(&self, since_ms: i64) -> Result<Snapshot, StoreError> {
        let txn = self.db.begin_read().db()?;
        let totals = txn.open_table(TOTALS).db()?;
        let mut snapshot = Snapshot {
            people_total: totals.get(PEOPLE).db()?.map_or(0, |v| v.value()),
            photos_total: totals.get(PHOTOS_TOTAL).db()?.map_or(0, |v| v.value()),
            ..Snapshot::default()
        };
        for entry in txn.open_table(LATEST).db()?.iter().db()? {
            let (_, frame) = entry.db()?;
            let frame = Bytes::copy_from_slice(frame.value());
            let (header, _jpeg) = decode_event_frame(&frame).map_err(corrupt)?;
            snapshot.latest.push(header.event);
        }
        let timeline = txn.open_table(TIMELINE).db()?;
        let events = txn.open_table(EVENTS).db()?;
        for entry in timeline.range((since_ms, "")..).db()? {
            let (key, people) = entry.db()?;
            let (timestamp_ms, id) = key.value();
            let camera = match events.get(id).db()? {
                Some(json) => {
                    serde_json::from_slice::<CountEvent>(json.value())
                        .map_err(corrupt)?
                        .camera
                }
                None => continue,
            };
            snapshot.timeline.push(TimelineEntry {
                timestamp_ms,
                camera,
                count: people.value() as u32,
            });
        }
        Ok(snapshot)
    }

    /// The newest annotated photo of `camera` and the id of its event.
    pub fn latest_photo(&self, camera: &str) -> Result<Option<(Bytes, String)>, StoreError> {
        let txn = self.db.begin_read().db()?;
        let latest = txn.open_table(LATEST).db()?;
        let Some(stored) = latest.get(camera).db()? else {
            return Ok(None);
        };
        let frame = Bytes::copy_from_slice(stored.value());
        let (header, jpeg) = decode_event_frame(&frame).map_err(corrupt)?;
        Ok(Some((jpeg, header.event.id)))
    }

    /// The camera's kept photos, newest first.
    pub fn recent_photos(&self, camera: &str) -> Result<Vec<PhotoEntry>, StoreError> {
        let txn = self.db.begin_read().db()?;
        let photos = txn.open_table(PHOTOS).db()?;
        let events = txn.open_table(EVENTS).db()?;
        let mut out = Vec::new();
        for entry in photos
            .range((camera, i64::MIN, "")..=(camera, i64::MAX, "\u{10ffff}"))
            .db()?
            .rev()
        {
            let (key, _) = entry.db()?;
            let (_, timestamp_ms, id) = key.value();
            let count = events
                .get(id)
                .db()?
                .map(|json| serde_json::from_slice::<CountEvent>(json.value()).map(|e| e.count))
                .transpose()
                .map_err(corrupt)?
                .unwrap_or(0);
            out.push(PhotoEntry {
                event_id: id.to_owned(),
                timestamp_ms,
                count,
            });
        }
        Ok(out)
    }

    /// One kept photo of `camera`.
    pub fn photo(&self, camera: &str, event_id: &str) -> Result<Option<Bytes>, StoreError> {
        let txn = self.db.begin_read().db()?;
        let events = txn.open_table(EVENTS).db()?;
        let Some(json) = events.get(event_id).db()? else {
            return Ok(None);
        };
        let event: CountEvent = serde_json::from_slice(json.value()).map_err(corrupt)?;
        if event.camera != camera {
            return Ok(None);
        }
        let photos = txn.open_table(PHOTOS).db()?;
        Ok(photos
            .get((camera, event.timestamp_ms, event_id))
            .db()?
            .map(|jpeg| Bytes::copy_from_slice(jpeg.value())))
    }

    /// The answer kept for an idempotent upload's event.
    pub fn answer(&self, event_id: &str) -> Result<Option<CountResponse>, StoreError> {
        let txn = self.db.begin_read().db()?;
        let answers = txn.open_table(ANSWERS).db()?;
        answers
            .get(event_id)
            .db()?
            .map(|json| serde_json::from_slice(json.value()).map_err(corrupt))
            .transpose()
    }

    /// The camera's events with `from_ms <= timestamp < to_ms`, in time order.
    pub fn camera_events(
        &self,
        camera: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<CountEvent>, StoreError> {
        let txn = self.db.begin_read().db()?;
        let index = txn.open_table(CAMERA_EVENTS).db()?;
        let events = txn.open_table(EVENTS).db()?;
        let mut out = Vec::new();
        for entry in index
            .range((camera, from_ms, "")..(camera, to_ms, ""))
            .db()?
        {
            let (key, _) = entry.db()?;
            if let Some(json) = events.get(key.value().2).db()? {
                out.push(serde_json::from_slice(json.value()).map_err(corrupt)?);
            }
        }
        Ok(out)
    }

    /// The camera's rollups from the one holding `from_ms` to those starting before `to_ms`,
    /// in time order.
    pub fn rollups(
        &self,
        camera: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Rollup>, StoreError> {
        let txn = self.db.begin_read().db()?;
        let rollups = txn.open_table(ROLLUPS).db()?;
        let mut out = Vec::new();
        for entry in rollups
            .range((camera, rollup_start(from_ms))..(camera, to_ms))
            .db()?
        {
            let (key, value) = entry.db()?;
            out.push(rollup_from(key.value().1, value.value()));
        }
        Ok(out)
    }

    pub fn camera_settings(&self) -> Result<BTreeMap<String, CameraSettings>, StoreError> {
        let txn = self.db.begin_read().db()?;
        let table = txn.open_table(SETTINGS).db()?;
        let mut out = BTreeMap::new();
        for entry in table.iter().db()? {
            let (camera, json) = entry.db()?;
            out.insert(
                camera.value().to_owned(),
                serde_json::from_slice(json.value()).map_err(corrupt)?,
            );
        }
        Ok(out)
    }

    pub fn put_camera_settings(
        &self,
        camera: &str,
        settings: &CameraSettings,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_vec(settings).expect("settings always serialise");
        let txn = self.db.begin_write().db()?;
        txn.open_table(SETTINGS)
            .db()?
            .insert(camera, json.as_slice())
            .db()?;
        txn.commit().db()
    }

    /// Records an alert once (by id), if the subject's recorded level is the alert's previous
    /// one, and queues it for each of `webhooks` webhooks.
    pub fn record_alert(&self, alert: &Alert, webhooks: usize) -> Result<Recorded, StoreError> {
        let json = serde_json::to_vec(alert).expect("alerts always serialise");
        let subject = subject_key(alert.subject_kind, &alert.subject);
        let txn = self.db.begin_write().db()?;
        {
            let mut ids = txn.open_table(ALERT_IDS).db()?;
            if ids.get(alert.id.as_str()).db()?.is_some() {
                return Ok(Recorded::Known);
            }
            let mut levels = txn.open_table(LEVELS).db()?;
            let current = levels
                .get(subject.as_str())
                .db()?
                .and_then(|l| parse_level(l.value()))
                .unwrap_or_default();
            if current != alert.previous_level {
                return Ok(Recorded::Conflict(current));
            }
            levels.insert(subject.as_str(), alert.level.as_str()).db()?;
            ids.insert(alert.id.as_str(), ()).db()?;
            txn.open_table(ALERTS)
                .db()?
                .insert((alert.time_ms, alert.id.as_str()), json.as_slice())
                .db()?;
            let mut deliveries = txn.open_table(DELIVERIES).db()?;
            for target in 0..webhooks as u32 {
                deliveries
                    .insert((target, alert.time_ms, alert.id.as_str()), json.as_slice())
                    .db()?;
                // Bounded: the oldest waiting alert of this webhook goes first.
                let waiting: Vec<(i64, String)> = deliveries
                    .range((target, i64::MIN, "")..=(target, i64::MAX, "\u{10ffff}"))
                    .db()?
                    .map(|e| e.map(|(k, _)| (k.value().1, k.value().2.to_owned())))
                    .collect::<Result<_, _>>()
                    .db()?;
                let excess = waiting
                    .len()
                    .saturating_sub(self.settings.max_pending_deliveries.max(1));
                for (time, id) in &waiting[..excess] {
                    tracing::warn!(alert = %id, webhook = target, "alert queue full: dropping the oldest undelivered alert");
                    deliveries.remove((target, *time, id.as_str())).db()?;
                }
            }
        }
        txn.commit().db()?;
        Ok(Recorded::New)
    }

    pub fn levels(&self) -> Result<BTreeMap<(SubjectKind, String), Level>, StoreError> {
        let txn = self.db.begin_read().db()?;
        let mut out = BTreeMap::new();
        for entry in txn.open_table(LEVELS).db()?.iter().db()? {
            let (subject, level) = entry.db()?;
            if let (Some(subject), Some(level)) = (
                parse_subject_key(subject.value()),
                parse_level(level.value()),
            ) {
                out.insert(subject, level);
            }
        }
        Ok(out)
    }

    /// The newest alerts, newest first.
    pub fn recent_alerts(&self, limit: usize) -> Result<Vec<Alert>, StoreError> {
        let txn = self.db.begin_read().db()?;
        let alerts = txn.open_table(ALERTS).db()?;
        let mut out = Vec::new();
        for entry in alerts.iter().db()?.rev().take(limit) {
            let (_, json) = entry.db()?;
            out.push(serde_json::from_slice(json.value()).map_err(corrupt)?);
        }
        Ok(out)
    }

    /// Alerts waiting for webhook `target`, oldest first.
    pub fn pending_deliveries(
        &self,
        target: usize,
        limit: usize,
    ) -> Result<Vec<Alert>, StoreError> {
        let target = target as u32;
        let txn = self.db.begin_read().db()?;
        let deliveries = txn.open_table(DELIVERIES).db()?;
        let mut out = Vec::new();
        for entry in deliveries
            .range((target, i64::MIN, "")..=(target, i64::MAX, "\u{10ffff}"))
            .db()?
            .take(limit)
        {
            let (_, json) = entry.db()?;
            out.push(serde_json::from_slice(json.value()).map_err(corrupt)?);
        }
        Ok(out)
    }

    pub fn delivered(&self, target: usize, alert: &Alert) -> Result<(), StoreError> {
        let txn = self.db.begin_write().db()?;
        txn.open_table(DELIVERIES)
            .db()?
            .remove((target as u32, alert.time_ms, alert.id.as_str()))
            .db()?;
        txn.commit().db()
    }

    /// Deletes per-event history older than `events_before_ms` (timeline, id index, per-camera
    /// index, answers) and rollups and alerts older than `rollups_before_ms`. Totals, the latest
    /// and the kept photos per camera stay. Returns how many events were removed.
    pub fn prune(&self, events_before_ms: i64, rollups_before_ms: i64) -> Result<u64, StoreError> {
        let txn = self.db.begin_write().db()?;
        let mut removed = 0;
        {
            let mut timeline = txn.open_table(TIMELINE).db()?;
            let mut events = txn.open_table(EVENTS).db()?;
            let mut index = txn.open_table(CAMERA_EVENTS).db()?;
            let mut answers = txn.open_table(ANSWERS).db()?;
            let old: Vec<(i64, String)> = timeline
                .range(..(events_before_ms, ""))
                .db()?
                .map(|entry| entry.map(|(k, _)| (k.value().0, k.value().1.to_owned())))
                .collect::<Result<_, _>>()
                .db()?;
            for (timestamp, id) in old {
                timeline.remove((timestamp, id.as_str())).db()?;
                let camera = events
                    .remove(id.as_str())
                    .db()?
                    .and_then(|json| serde_json::from_slice::<CountEvent>(json.value()).ok())
                    .map(|e| e.camera);
                if let Some(camera) = camera {
                    index
                        .remove((camera.as_str(), timestamp, id.as_str()))
                        .db()?;
                }
                answers.remove(id.as_str()).db()?;
                removed += 1;
            }
            let cameras: Vec<String> = txn
                .open_table(LATEST)
                .db()?
                .iter()
                .db()?
                .map(|e| e.map(|(k, _)| k.value().to_owned()))
                .collect::<Result<_, _>>()
                .db()?;
            let mut rollups = txn.open_table(ROLLUPS).db()?;
            for camera in &cameras {
                let old: Vec<i64> = rollups
                    .range((camera.as_str(), i64::MIN)..(camera.as_str(), rollups_before_ms))
                    .db()?
                    .map(|e| e.map(|(k, _)| k.value().1))
                    .collect::<Result<_, _>>()
                    .db()?;
                for start in old {
                    rollups.remove((camera.as_str(), start)).db()?;
                }
            }
            let mut alerts = txn.open_table(ALERTS).db()?;
            let mut alert_ids = txn.open_table(ALERT_IDS).db()?;
            let old: Vec<(i64, String)> = alerts
                .range(..(rollups_before_ms, ""))
                .db()?
                .map(|e| e.map(|(k, _)| (k.value().0, k.value().1.to_owned())))
                .collect::<Result<_, _>>()
                .db()?;
            for (time, id) in old {
                alerts.remove((time, id.as_str())).db()?;
                alert_ids.remove(id.as_str()).db()?;
            }
        }
        txn.commit().db()?;
        Ok(removed)
    }

    /// Events kept in the per-event history.
    pub fn stored_events(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().db()?;
        txn.open_table(EVENTS).db()?.len().db()
    }
}

fn rollup_from(start_ms: i64, (photos, sum, min, max, last, last_ms): RollupValue) -> Rollup {
    Rollup {
        start_ms,
        photos,
        sum,
        min,
        max,
        last,
        last_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, camera: &str, count: u32, timestamp_ms: i64) -> CountEvent {
        CountEvent {
            id: id.into(),
            camera: camera.into(),
            count,
            timestamp_ms,
            counted_at_ms: timestamp_ms,
            model: "test".into(),
            zones: Vec::new(),
        }
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("crowd-store-{name}-{}-{nanos}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn settings() -> EmbeddedSettings {
        EmbeddedSettings {
            photos_per_camera: 3,
            lock_wait: Duration::from_millis(300),
            max_pending_deliveries: 2,
        }
    }

    #[test]
    fn events_survive_reopening_and_duplicates_count_once() {
        let dir = temp_dir("reopen");
        {
            let store = EmbeddedStore::open(&dir, settings()).unwrap();
            assert_eq!(
                store
                    .insert(&event("a", "cam1", 5, 1_000), b"jpeg-a", None)
                    .unwrap(),
                Inserted::New
            );
            assert_eq!(
                store
                    .insert(&event("b", "cam1", 7, 2_000), b"jpeg-b", None)
                    .unwrap(),
                Inserted::New
            );
            assert_eq!(
                store
                    .insert(&event("a", "cam1", 5, 1_000), b"jpeg-a", None)
                    .unwrap(),
                Inserted::Duplicate
            );
        }
        let store = EmbeddedStore::open(&dir, settings()).unwrap();
        let snapshot = store.snapshot(0).unwrap();
        assert_eq!(snapshot.people_total, 12);
        assert_eq!(snapshot.photos_total, 2);
        let timeline: Vec<(i64, u32)> = snapshot
            .timeline
            .iter()
            .map(|e| (e.timestamp_ms, e.count))
            .collect();
        assert_eq!(timeline, vec![(1_000, 5), (2_000, 7)]);
        assert_eq!(snapshot.timeline[0].camera, "cam1");
        assert_eq!(snapshot.latest.len(), 1);
        assert_eq!(snapshot.latest[0].id, "b");
        let (jpeg, id) = store.latest_photo("cam1").unwrap().unwrap();
        assert_eq!((&jpeg[..], id.as_str()), (&b"jpeg-b"[..], "b"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_second_dashboard_waits_for_the_lock_then_gives_up_with_a_clear_error() {
        let dir = temp_dir("lock");
        let first = EmbeddedStore::open(&dir, settings()).unwrap();
        let started = Instant::now();
        let Err(error) = EmbeddedStore::open(&dir, settings()) else {
            panic!("opened a file another store holds");
        };
        assert!(started.elapsed() >= Duration::from_millis(300), "it waited");
        assert!(error.to_string().contains("still open"), "{error}");
        // Released while the second one waits: it opens.
        let (dir2, waiter) = (
            dir.clone(),
            std::thread::spawn(move || {
                EmbeddedStore::open(
                    &dir,
                    EmbeddedSettings {
                        lock_wait: Duration::from_secs(5),
                        ..settings()
                    },
                )
                .map(|_| ())
            }),
        );
        std::thread::sleep(Duration::from_millis(300));
        drop(first);
        waiter.join().unwrap().unwrap();
        std::fs::remove_dir_all(dir2).unwrap();
    }

    #[test]
    fn series_data_photos_and_answers() {
        let dir = temp_dir("series");
        let store = EmbeddedStore::open(&dir, settings()).unwrap();
        let minute = 60_000;
        for i in 0..8 {
            let e = event(&format!("e{i}"), "cam", 10 + i, i64::from(i) * minute);
            store
                .insert(&e, format!("jpeg{i}").as_bytes(), None)
                .unwrap();
        }
        store
            .insert(&event("other", "cam2", 99, minute), b"x", None)
            .unwrap();
        let events = store.camera_events("cam", 2 * minute, 5 * minute).unwrap();
        let counts: Vec<u32> = events.iter().map(|e| e.count).collect();
        assert_eq!(counts, vec![12, 13, 14]);
        let rollups = store.rollups("cam", 0, 10 * minute).unwrap();
        assert_eq!(rollups.len(), 2);
        assert_eq!(
            (
                rollups[0].start_ms,
                rollups[0].photos,
                rollups[0].sum,
                rollups[0].max,
                rollups[0].last
            ),
            (0, 5, 60, 14, 14)
        );
        assert_eq!((rollups[1].photos, rollups[1].last), (3, 17));
        let photos = store.recent_photos("cam").unwrap();
        let ids: Vec<&str> = photos.iter().map(|p| p.event_id.as_str()).collect();
        assert_eq!(
            ids,
            vec!["e7", "e6", "e5"],
            "the newest three, newest first"
        );
        assert_eq!(&store.photo("cam", "e6").unwrap().unwrap()[..], b"jpeg6");
        assert!(
            store.photo("cam", "e1").unwrap().is_none(),
            "beyond the kept photos"
        );
        assert!(
            store.photo("cam2", "e6").unwrap().is_none(),
            "another camera's event"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn pruning_drops_old_events_and_rollups_but_keeps_totals() {
        let dir = temp_dir("prune");
        let store = EmbeddedStore::open(&dir, settings()).unwrap();
        store
            .insert(&event("a", "cam", 1, 1_000), b"a", None)
            .unwrap();
        store
            .insert(&event("b", "cam", 2, 400_000), b"b", None)
            .unwrap();
        assert_eq!(store.prune(2_000, 300_000).unwrap(), 1);
        let snapshot = store.snapshot(0).unwrap();
        assert_eq!(snapshot.timeline.len(), 1);
        assert_eq!(snapshot.people_total, 3);
        assert!(store.camera_events("cam", 0, 2_000).unwrap().is_empty());
        let rollups = store.rollups("cam", 0, 1_000_000).unwrap();
        assert_eq!(rollups.len(), 1);
        assert_eq!(rollups[0].start_ms, 300_000);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
