//! Where the dashboard keeps its history. One [`Store`] with two engines, chosen by `--store`:
//!
//! - `embedded` ([`embedded::EmbeddedStore`], the default): a redb file under the data dir, for a
//!   dashboard that runs alone on one machine.
//! - `redis://…` ([`shared::SharedStore`]): Redis, shared by every dashboard replica. Besides
//!   storing, it keeps a log (a Redis stream) of the stored events that each replica follows
//!   (see `follower`) to update its own view and its own browsers.
//!
//! Either way an event is stored at most once per id, and only a stored event is acknowledged.

pub mod embedded;
pub mod shared;

use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use common::wire::CountEvent;

use crate::configuration::DashboardConfig;
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
}

/// Whether an insert stored a new event or found its id already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New,
    Duplicate,
}

/// Everything needed to rebuild the in-memory view at start.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub people_total: u64,
    pub photos_total: u64,
    /// Newest event per camera (its photo stays in the store: see [`Store::latest_photo`]).
    pub latest: Vec<CountEvent>,
    /// (timestamp ms, people) of every event kept, oldest first.
    pub timeline: Vec<(i64, u64)>,
    /// The shared store's log position this snapshot includes everything up to; following the
    /// log from here misses nothing and repeats nothing. `None` for the embedded store.
    pub log_position: Option<String>,
}

/// The `--store` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    Embedded,
    /// A `redis://host:port/db` URL.
    Redis(String),
}

impl FromStr for StoreChoice {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value == "embedded" {
            Ok(StoreChoice::Embedded)
        } else if value.starts_with("redis://") {
            Ok(StoreChoice::Redis(value.to_owned()))
        } else {
            Err(format!(
                "expected `embedded` or a redis:// URL, not `{value}` (TLS, rediss://, is not built in)"
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

impl Store {
    pub async fn open(config: &DashboardConfig) -> Result<Self, StoreError> {
        match &config.store {
            StoreChoice::Embedded => {
                let data_dir = config.data_dir.clone();
                let store = blocking(move || EmbeddedStore::open(&data_dir)).await?;
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
        match self {
            Store::Embedded(store) => {
                let store = Arc::clone(store);
                blocking(move || store.snapshot(since_ms)).await
            }
            Store::Shared(store) => store.snapshot(since_ms).await,
        }
    }

    /// Stores an event durably, once per id. `Ok` means it is stored (now or before) and may be
    /// acknowledged.
    pub async fn insert(
        &self,
        event: &CountEvent,
        thumbnail: &Bytes,
    ) -> Result<Inserted, StoreError> {
        match self {
            Store::Embedded(store) => {
                let (store, event, thumbnail) =
                    (Arc::clone(store), event.clone(), thumbnail.clone());
                blocking(move || store.insert(&event, &thumbnail)).await
            }
            Store::Shared(store) => store.insert(event, thumbnail).await,
        }
    }

    /// The newest annotated photo of `camera` and the id of its event.
    pub async fn latest_photo(&self, camera: &str) -> Result<Option<(Bytes, String)>, StoreError> {
        match self {
            Store::Embedded(store) => {
                let (store, camera) = (Arc::clone(store), camera.to_owned());
                blocking(move || store.latest_photo(&camera)).await
            }
            Store::Shared(store) => store.latest_photo(camera).await,
        }
    }

    /// Drops per-event history older than `before_ms`; totals and latest photos stay. Returns
    /// how many events were removed.
    pub async fn prune(&self, before_ms: i64) -> Result<u64, StoreError> {
        match self {
            Store::Embedded(store) => {
                let store = Arc::clone(store);
                blocking(move || store.prune(before_ms)).await
            }
            Store::Shared(store) => store.prune(before_ms).await,
        }
    }

    /// `Ok` when the store can take writes now (for `/readyz`).
    pub async fn check(&self) -> Result<(), StoreError> {
        match self {
            Store::Embedded(_) => Ok(()),
            Store::Shared(store) => store.ping().await,
        }
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
        assert!("rediss://redis:6379".parse::<StoreChoice>().is_err());
        assert!("postgres://db".parse::<StoreChoice>().is_err());
    }
}
