//! The shared store: Redis, for several dashboard replicas behind one Service.
//!
//! Keys, all under one prefix (`--redis-prefix`) so that several stacks or tests can share a
//! Redis:
//! - `{prefix}:events`: a stream with one entry per stored event: `event` (the `CountEvent` as
//!   JSON) and the running totals right after it (`people_total`, `photos_total`). Every replica
//!   reads it at start to rebuild its view and follows it (XREAD BLOCK) to update its view and
//!   its browsers. Bounded: `MAXLEN ~ --stream-max-len` on each insert, and trimmed by age
//!   (`--history-hours`) by the pruner.
//! - `{prefix}:totals`: hash `people`, `photos`: counted since the store was created; never
//!   trimmed, so "people counted" stays right after old entries have left the stream.
//! - `{prefix}:latest:event` / `{prefix}:latest:frame`: hashes camera → the newest event of that
//!   camera as JSON / as a wire frame with its annotated JPEG (served by the photo endpoint).
//! - `{prefix}:seen:{event id}`: marks an id as stored, for `--history-hours`.
//!
//! One Lua script does the whole insert, so Redis runs it atomically: two replicas receiving the
//! same resent event store it once, and the totals, the stream and the latest photo never
//! disagree. The event is acknowledged only after the script has returned.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::wire::{CountEvent, decode_event_frame, encode_event_frame};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use redis::{AsyncConnectionConfig, Script};

use super::{Inserted, Snapshot, StoreError};

/// Stores one event once; see the module documentation for the keys.
/// Returns 1 when stored, 0 when the id was already there.
const INSERT_SCRIPT: &str = r#"
-- KEYS: 1 seen marker of this id, 2 stream, 3 totals, 4 latest event per camera, 5 latest frame
-- ARGV: 1 event JSON, 2 camera, 3 people, 4 timestamp ms, 5 event id, 6 frame,
--       7 seconds the id is remembered, 8 stream max length
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[7]) then
  return 0
end
local people_total = redis.call('HINCRBY', KEYS[3], 'people', ARGV[3])
local photos_total = redis.call('HINCRBY', KEYS[3], 'photos', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[8], '*',
  'event', ARGV[1], 'people_total', people_total, 'photos_total', photos_total)
local current = redis.call('HGET', KEYS[4], ARGV[2])
local newer = true
if current then
  local latest = cjson.decode(current)
  local timestamp = tonumber(ARGV[4])
  newer = timestamp > latest.timestamp_ms
    or (timestamp == latest.timestamp_ms and ARGV[5] > latest.id)
end
if newer then
  redis.call('HSET', KEYS[4], ARGV[2], ARGV[1])
  redis.call('HSET', KEYS[5], ARGV[2], ARGV[6])
end
return 1
"#;

/// How long a follower's XREAD waits for new entries before asking again.
const FOLLOW_BLOCK: Duration = Duration::from_secs(5);
/// Entries read per XREAD.
const FOLLOW_BATCH: usize = 500;
/// Redis answers in well under a millisecond here; a snapshot of a full stream takes longer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct SharedStoreSettings {
    pub key_prefix: String,
    /// Stream entries kept (approximately: Redis trims whole blocks).
    pub stream_max_len: u64,
    /// How long an event id is remembered, so that a resend within it is recognised.
    pub id_memory: Duration,
}

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// The stream id: where a follower goes on from.
    pub position: String,
    pub event: CountEvent,
    /// The store's totals right after this event.
    pub people_total: u64,
    pub photos_total: u64,
}

struct Keys {
    prefix: String,
    stream: String,
    totals: String,
    latest_event: String,
    latest_frame: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            stream: format!("{prefix}:events"),
            totals: format!("{prefix}:totals"),
            latest_event: format!("{prefix}:latest:event"),
            latest_frame: format!("{prefix}:latest:frame"),
        }
    }

    fn seen(&self, event_id: &str) -> String {
        format!("{}:seen:{event_id}", self.prefix)
    }
}

#[derive(Clone)]
pub struct SharedStore {
    client: redis::Client,
    /// Reconnects by itself after Redis went away; shared by every request.
    commands: ConnectionManager,
    keys: Arc<Keys>,
    insert: Arc<Script>,
    settings: SharedStoreSettings,
}

impl SharedStore {
    /// Connects to Redis at `url` (e.g. `redis://redis:6379/0`); fails when it is unreachable.
    pub async fn connect(url: &str, settings: SharedStoreSettings) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)?;
        let commands = client
            .get_connection_manager_with_config(
                ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(3),
            )
            .await?;
        Ok(Self {
            client,
            commands,
            keys: Arc::new(Keys::new(&settings.key_prefix)),
            insert: Arc::new(Script::new(INSERT_SCRIPT)),
            settings,
        })
    }

    pub async fn insert(
        &self,
        event: &CountEvent,
        thumbnail: &Bytes,
    ) -> Result<Inserted, StoreError> {
        let json = serde_json::to_string(event).expect("CountEvent always serialises");
        let frame = encode_event_frame(event, thumbnail);
        let stored: i64 = self
            .insert
            .key(self.keys.seen(&event.id))
            .key(&self.keys.stream)
            .key(&self.keys.totals)
            .key(&self.keys.latest_event)
            .key(&self.keys.latest_frame)
            .arg(json)
            .arg(&event.camera)
            .arg(event.count)
            .arg(event.timestamp_ms)
            .arg(&event.id)
            .arg(&frame[..])
            .arg(self.settings.id_memory.as_secs().max(1))
            .arg(self.settings.stream_max_len.max(1))
            .invoke_async(&mut self.commands.clone())
            .await?;
        Ok(if stored == 1 {
            Inserted::New
        } else {
            Inserted::Duplicate
        })
    }

    /// Totals, latest events and the whole stream, read in one transaction so that they agree
    /// with each other and with the returned log position.
    pub async fn snapshot(&self, since_ms: i64) -> Result<Snapshot, StoreError> {
        let (totals, latest, log): (
            HashMap<String, u64>,
            HashMap<String, String>,
            StreamRangeReply,
        ) = redis::pipe()
            .atomic()
            .hgetall(&self.keys.totals)
            .hgetall(&self.keys.latest_event)
            .xrange_all(&self.keys.stream)
            .query_async(&mut self.commands.clone())
            .await?;
        let mut latest: Vec<CountEvent> = latest
            .values()
            .map(|json| serde_json::from_str(json).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect::<Result<_, _>>()?;
        latest.sort_by(|a, b| a.camera.cmp(&b.camera));
        let entries: Vec<LogEntry> = log.ids.iter().map(log_entry).collect::<Result<_, _>>()?;
        Ok(Snapshot {
            people_total: totals.get("people").copied().unwrap_or(0),
            photos_total: totals.get("photos").copied().unwrap_or(0),
            latest,
            timeline: entries
                .iter()
                .filter(|e| e.event.timestamp_ms >= since_ms)
                .map(|e| (e.event.timestamp_ms, u64::from(e.event.count)))
                .collect(),
            // "0-0" is before any entry: with an empty stream, everything that comes is new.
            log_position: Some(
                entries
                    .last()
                    .map_or_else(|| "0-0".to_owned(), |e| e.position.clone()),
            ),
        })
    }

    pub async fn latest_photo(&self, camera: &str) -> Result<Option<(Bytes, String)>, StoreError> {
        let frame: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(&self.keys.latest_frame)
            .arg(camera)
            .query_async(&mut self.commands.clone())
            .await?;
        let Some(frame) = frame else {
            return Ok(None);
        };
        let (event, jpeg) = decode_event_frame(&Bytes::from(frame))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Some((jpeg, event.id)))
    }

    /// Trims stream entries added before `before_ms` (Redis's clock). Totals, latest photos and
    /// id markers (they expire by themselves) stay.
    pub async fn prune(&self, before_ms: i64) -> Result<u64, StoreError> {
        let removed: u64 = redis::cmd("XTRIM")
            .arg(&self.keys.stream)
            .arg("MINID")
            .arg("~")
            .arg(before_ms.max(0))
            .query_async(&mut self.commands.clone())
            .await?;
        Ok(removed)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.commands.clone())
            .await?;
        Ok(())
    }

    /// A reader of the event log on a connection of its own: XREAD BLOCK holds its connection
    /// while it waits, which would stall every other command sharing it.
    pub async fn log_reader(&self) -> Result<LogReader, StoreError> {
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(
                &AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(FOLLOW_BLOCK + RESPONSE_TIMEOUT)),
            )
            .await?;
        Ok(LogReader {
            connection,
            stream: self.keys.stream.clone(),
        })
    }
}

pub struct LogReader {
    connection: MultiplexedConnection,
    stream: String,
}

impl LogReader {
    /// The entries after `position`, oldest first; waits up to a few seconds for the first one
    /// and returns an empty list if none came.
    pub async fn read_after(&mut self, position: &str) -> Result<Vec<LogEntry>, StoreError> {
        let reply: Option<StreamReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(FOLLOW_BATCH)
            .arg("BLOCK")
            .arg(FOLLOW_BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(position)
            .query_async(&mut self.connection)
            .await?;
        reply
            .into_iter()
            .flat_map(|reply| reply.keys)
            .flat_map(|key| key.ids)
            .map(|entry| log_entry(&entry))
            .collect()
    }
}

fn log_entry(entry: &StreamId) -> Result<LogEntry, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("stream entry {}: {what}", entry.id));
    let json: String = entry.get("event").ok_or_else(|| corrupt("no event"))?;
    Ok(LogEntry {
        position: entry.id.clone(),
        event: serde_json::from_str(&json).map_err(|e| corrupt(&e.to_string()))?,
        people_total: entry
            .get("people_total")
            .ok_or_else(|| corrupt("no people_total"))?,
        photos_total: entry
            .get("photos_total")
            .ok_or_else(|| corrupt("no photos_total"))?,
    })
}
