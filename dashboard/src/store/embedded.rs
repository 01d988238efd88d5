//! The embedded store: the history on disk, in one file (`dashboard.redb` under the data dir),
//! for a dashboard that runs alone.
//!
//! Crate: `redb`, an embedded key-value store in pure Rust: ACID transactions with a durable
//! commit (the event is on disk before the dashboard acknowledges it to image-predict), one file,
//! no server and no C toolchain. Tables:
//! - `events`: event id → event JSON. Also the idempotence check: a known id is not stored twice.
//! - `timeline`: (timestamp ms, event id) → people, for the histogram and for pruning by age.
//! - `latest`: camera → the newest event of that camera with its annotated JPEG (a wire frame).
//! - `totals`: "people" and "photos" counted since the store was created (never pruned).

use std::path::Path;

use bytes::Bytes;
use common::wire::{CountEvent, decode_event_frame, encode_event_frame};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Inserted, Snapshot, StoreError};

const EVENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("events");
const TIMELINE: TableDefinition<(i64, &str), u64> = TableDefinition::new("timeline");
const LATEST: TableDefinition<&str, &[u8]> = TableDefinition::new("latest");
const TOTALS: TableDefinition<&str, u64> = TableDefinition::new("totals");
const PEOPLE: &str = "people";
const PHOTOS: &str = "photos";

/// redb has one error type per operation; all convert into `redb::Error`.
trait OrStoreError<T> {
    fn db(self) -> Result<T, StoreError>;
}

impl<T, E: Into<redb::Error>> OrStoreError<T> for Result<T, E> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Redb(e.into()))
    }
}

pub struct EmbeddedStore {
    db: Database,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Corrupt(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let db = Database::create(data_dir.join("dashboard.redb")).db()?;
        let txn = db.begin_write().db()?;
        {
            txn.open_table(EVENTS).db()?;
            txn.open_table(TIMELINE).db()?;
            txn.open_table(LATEST).db()?;
            txn.open_table(TOTALS).db()?;
        }
        txn.commit().db()?;
        Ok(Self { db })
    }

    /// Stores an event durably, once: a second insert of the same id changes nothing.
    /// Blocking (it waits for the disk): call it off the async reactor.
    pub fn insert(&self, event: &CountEvent, thumbnail: &[u8]) -> Result<Inserted, StoreError> {
        let txn = self.db.begin_write().db()?;
        {
            let mut events = txn.open_table(EVENTS).db()?;
            if events.get(event.id.as_str()).db()?.is_some() {
                return Ok(Inserted::Duplicate);
            }
            let json = serde_json::to_vec(event).expect("CountEvent always serialises");
            events.insert(event.id.as_str(), json.as_slice()).db()?;
            txn.open_table(TIMELINE)
                .db()?
                .insert(
                    (event.timestamp_ms, event.id.as_str()),
                    u64::from(event.count),
                )
                .db()?;
            let mut totals = txn.open_table(TOTALS).db()?;
            let people = totals.get(PEOPLE).db()?.map_or(0, |v| v.value());
            let photos = totals.get(PHOTOS).db()?.map_or(0, |v| v.value());
            totals
                .insert(PEOPLE, people + u64::from(event.count))
                .db()?;
            totals.insert(PHOTOS, photos + 1).db()?;
            let mut latest = txn.open_table(LATEST).db()?;
            let newer = match latest.get(event.camera.as_str()).db()? {
                None => true,
                Some(stored) => {
                    let frame = Bytes::copy_from_slice(stored.value());
                    let (current, _) = decode_event_frame(&frame)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    (event.timestamp_ms, &event.id) > (current.timestamp_ms, &current.id)
                }
            };
            if newer {
                let frame = encode_event_frame(event, thumbnail);
                latest.insert(event.camera.as_str(), &frame[..]).db()?;
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
            photos_total: totals.get(PHOTOS).db()?.map_or(0, |v| v.value()),
            ..Snapshot::default()
        };
        for entry in txn.open_table(LATEST).db()?.iter().db()? {
            let (_, frame) = entry.db()?;
            let frame = Bytes::copy_from_slice(frame.value());
            let (event, _jpeg) =
                decode_event_frame(&frame).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            snapshot.latest.push(event);
        }
        let timeline = txn.open_table(TIMELINE).db()?;
        for entry in timeline.range((since_ms, "")..).db()? {
            let (key, people) = entry.db()?;
            snapshot.timeline.push((key.value().0, people.value()));
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
        let (event, jpeg) =
            decode_event_frame(&frame).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Some((jpeg, event.id)))
    }

    /// Deletes events older than `before_ms` from the timeline and the id index. Totals and the
    /// latest photo per camera are kept. Returns how many events were removed.
    pub fn prune(&self, before_ms: i64) -> Result<u64, StoreError> {
        let txn = self.db.begin_write().db()?;
        let mut removed = 0;
        {
            let mut timeline = txn.open_table(TIMELINE).db()?;
            let mut events = txn.open_table(EVENTS).db()?;
            let old: Vec<(i64, String)> = timeline
                .range(..(before_ms, ""))
                .db()?
                .map(|entry| entry.map(|(k, _)| (k.value().0, k.value().1.to_owned())))
                .collect::<Result<_, _>>()
                .db()?;
            for (timestamp, id) in old {
                timeline.remove((timestamp, id.as_str())).db()?;
                events.remove(id.as_str()).db()?;
                removed += 1;
            }
        }
        txn.commit().db()?;
        Ok(removed)
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
            model: "test".into(),
        }
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "crowd-store-{name}-{}-{}",
            std::process::id(),
            uuid_like()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn uuid_like() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    }

    #[test]
    fn events_survive_reopening_and_duplicates_count_once() {
        let dir = temp_dir("reopen");
        {
            let store = EmbeddedStore::open(&dir).unwrap();
            assert_eq!(
                store
                    .insert(&event("a", "cam1", 5, 1_000), b"jpeg-a")
                    .unwrap(),
                Inserted::New
            );
            assert_eq!(
                store
                    .insert(&event("b", "cam1", 7, 2_000), b"jpeg-b")
                    .unwrap(),
                Inserted::New
            );
            assert_eq!(
                store
                    .insert(&event("a", "cam1", 5, 1_000), b"jpeg-a")
                    .unwrap(),
                Inserted::Duplicate
            );
        }
        let store = EmbeddedStore::open(&dir).unwrap();
        let snapshot = store.snapshot(0).unwrap();
        assert_eq!(snapshot.people_total, 12);
        assert_eq!(snapshot.photos_total, 2);
        assert_eq!(snapshot.timeline, vec![(1_000, 5), (2_000, 7)]);
        assert_eq!(snapshot.latest.len(), 1);
        assert_eq!(snapshot.latest[0].id, "b");
        let (jpeg, id) = store.latest_photo("cam1").unwrap().unwrap();
        assert_eq!((&jpeg[..], id.as_str()), (&b"jpeg-b"[..], "b"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_late_older_event_does_not_replace_the_latest_photo() {
        let dir = temp_dir("late");
        let store = EmbeddedStore::open(&dir).unwrap();
        store
            .insert(&event("new", "cam", 3, 5_000), b"new")
            .unwrap();
        store
            .insert(&event("old", "cam", 9, 4_000), b"old")
            .unwrap();
        let snapshot = store.snapshot(0).unwrap();
        assert_eq!(snapshot.latest[0].id, "new");
        assert_eq!(store.latest_photo("cam").unwrap().unwrap().1, "new");
        assert_eq!(snapshot.people_total, 12);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn pruning_drops_old_events_but_keeps_totals() {
        let dir = temp_dir("prune");
        let store = EmbeddedStore::open(&dir).unwrap();
        store.insert(&event("a", "cam", 1, 1_000), b"a").unwrap();
        store.insert(&event("b", "cam", 2, 3_000), b"b").unwrap();
        assert_eq!(store.prune(2_000).unwrap(), 1);
        let snapshot = store.snapshot(0).unwrap();
        assert_eq!(snapshot.timeline, vec![(3_000, 2)]);
        assert_eq!(snapshot.people_total, 3);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
