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
//! - `{prefix}:cam:{camera}`: sorted set of the camera's events (JSON) by photo time, for
//!   `--history-hours`: series and export.
//! - `{prefix}:roll:{camera}:{day}`: the camera's 5-minute rollups of one UTC day, 288 records
//!   of 24 bytes (photos, sum, min, max, last count, the last photo's offset in its window, each
//!   a little-endian 32-bit integer), written with SETRANGE; expires after `--rollup-days`.
//! - `{prefix}:photos:{camera}` / `{prefix}:jpeg:{camera}`: sorted set of the camera's kept
//!   photos by time / hash event id → annotated JPEG; the newest `--photos-per-camera`.
//! - `{prefix}:answer:{event id}`: the answer given to an idempotent upload, for
//!   `--history-hours`.
//! - `{prefix}:settings`: hash camera → registry settings changed at run time (JSON).
//! - `{prefix}:alerts`: stream of alerts (the log, and the webhooks' queue through one consumer
//!   group per webhook); `{prefix}:alert:{id}` marks an alert as recorded; `{prefix}:levels`:
//!   subject → its level as the last recorded alert set it, the check that makes replicas
//!   computing the same change record it once.
//!
//! One Lua script does the whole insert, so Redis runs it atomically: two replicas receiving the
//! same resent event store it once, and the totals, the stream, the series, the latest photo and
//! the answer never disagree. The event is acknowledged only after the script has returned.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::wire::{CountEvent, CountResponse, decode_event_frame, encode_event_frame};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use redis::{AsyncConnectionConfig, IntoConnectionInfo, Script};

use super::{
    Inserted, PhotoEntry, ROLLUP_MS, Recorded, Rollup, Snapshot, StoreError, TimelineEntry,
    parse_level, parse_subject_key, rollup_start, subject_key,
};
use crate::alerts::{Alert, Level, SubjectKind};
use crate::registry::CameraSettings;

const DAY_MS: i64 = 86_400_000;
const ROLLUPS_PER_DAY: i64 = DAY_MS / ROLLUP_MS;
const ROLLUP_RECORD: usize = 24;

/// Stores one event once; see the module documentation for the keys.
/// Returns 1 when stored, 0 when the id was already there.
const INSERT_SCRIPT: &str = r#"
-- KEYS: 1 seen marker of this id, 2 stream, 3 totals, 4 latest event per camera, 5 latest frame,
--       6 the camera's events, 7 the camera's rollups of the day, 8 its kept photos (by time),
--       9 its kept photos' JPEGs, 10 the answer
-- ARGV: 1 event JSON, 2 camera, 3 people, 4 timestamp ms, 5 event id, 6 frame,
--       7 seconds the id is remembered, 8 stream max length, 9 rollup record offset,
--       10 offset of the photo in its rollup window (ms), 11 seconds rollups are kept,
--       12 thumbnail JPEG, 13 photos kept per camera, 14 answer JSON or ''
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[7]) then
  return 0
end
local people = tonumber(ARGV[3])
local timestamp = tonumber(ARGV[4])
local people_total = redis.call('HINCRBY', KEYS[3], 'people', people)
local photos_total = redis.call('HINCRBY', KEYS[3], 'photos', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[8], '*',
  'event', ARGV[1], 'people_total', people_total, 'photos_total', photos_total)
local current = redis.call('HGET', KEYS[4], ARGV[2])
local newer = true
if current then
  local latest = cjson.decode(current)
  newer = timestamp > latest.timestamp_ms
    or (timestamp == latest.timestamp_ms and ARGV[5] > latest.id)
end
if newer then
  redis.call('HSET', KEYS[4], ARGV[2], ARGV[1])
  redis.call('HSET', KEYS[5], ARGV[2], ARGV[6])
end
redis.call('ZADD', KEYS[6], timestamp, ARGV[1])
local at = tonumber(ARGV[9])
local offset = tonumber(ARGV[10])
local record = redis.call('GETRANGE', KEYS[7], at, at + 23)
local photos, sum, min, max, last, last_offset = 0, 0, people, 0, 0, -1
if string.len(record) == 24 then
  photos, sum, min, max, last, last_offset = struct.unpack('<I4I4I4I4I4i4', record)
  if photos == 0 then
    last_offset = -1
    min = people
  end
end
photos = photos + 1
sum = sum + people
if people < min then min = people end
if people > max then max = people end
if offset >= last_offset then
  last = people
  last_offset = offset
end
redis.call('SETRANGE', KEYS[7], at, struct.pack('<I4I4I4I4I4i4', photos, sum, min, max, last, last_offset))
redis.call('EXPIRE', KEYS[7], ARGV[11])
redis.call('ZADD', KEYS[8], timestamp, ARGV[5])
redis.call('HSET', KEYS[9], ARGV[5], ARGV[12])
local excess = redis.call('ZCARD', KEYS[8]) - tonumber(ARGV[13])
if excess > 0 then
  local old = redis.call('ZPOPMIN', KEYS[8], excess)
  for i = 1, #old, 2 do
    redis.call('HDEL', KEYS[9], old[i])
  end
end
if ARGV[14] ~= '' then
  redis.call('SET', KEYS[10], ARGV[14], 'EX', ARGV[7])
end
return 1
"#;

/// Records an alert once, if the subject's recorded level is the alert's previous one, and
/// appends it to the alert stream. Returns 'new', 'known', or the recorded level (a conflict).
const ALERT_SCRIPT: &str = r#"
-- KEYS: 1 the alert's marker, 2 the alert stream, 3 the levels hash
-- ARGV: 1 alert JSON, 2 seconds kept, 3 max length, 4 subject, 5 previous level, 6 new level
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 'known'
end
local current = redis.call('HGET', KEYS[3], ARGV[4]) or 'normal'
if current ~= ARGV[5] then
  return current
end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[2])
redis.call('HSET', KEYS[3], ARGV[4], ARGV[6])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'alert', ARGV[1])
return 'new'
"#;

/// How long a follower's XREAD waits for new entries before asking again.
const FOLLOW_BLOCK: Duration = Duration::from_secs(5);
/// Entries read per XREAD.
const FOLLOW_BATCH: usize = 500;
/// Redis answers in well under a millisecond here; a snapshot of a full stream takes longer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Alerts kept in the alert stream.
const ALERT_STREAM_MAX_LEN: u64 = 10_000;

#[derive(Debug, Clone)]
pub struct SharedStoreSettings {
    pub key_prefix: String,
    /// Stream entries kept (approximately: Redis trims whole blocks).
    pub stream_max_len: u64,
    /// How long an event id is remembered, so that a resend within it is recognised; also how
    /// long per-photo events and answers are kept.
    pub id_memory: Duration,
    /// How long rollups and alerts are kept.
    pub rollup_memory: Duration,
    pub photos_per_camera: usize,
    /// Replaces a password given in the URL (from a Secret: `REDIS_PASSWORD`).
    pub password: Option<String>,
    /// A PEM file of the CA that signed the server's certificate, for `rediss://` with a private
    /// CA (the system's roots otherwise).
    pub ca_file: Option<std::path::PathBuf>,
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
    settings: String,
    alerts: String,
    levels: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            stream: format!("{prefix}:events"),
            totals: format!("{prefix}:totals"),
            latest_event: format!("{prefix}:latest:event"),
            latest_frame: format!("{prefix}:latest:frame"),
            settings: format!("{prefix}:settings"),
            alerts: format!("{prefix}:alerts"),
            levels: format!("{prefix}:levels"),
        }
    }

    fn seen(&self, event_id: &str) -> String {
        format!("{}:seen:{event_id}", self.prefix)
    }

    fn camera_events(&self, camera: &str) -> String {
        format!("{}:cam:{camera}", self.prefix)
    }

    fn rollups(&self, camera: &str, day: i64) -> String {
        format!("{}:roll:{camera}:{day}", self.prefix)
    }

    fn photos(&self, camera: &str) -> String {
        format!("{}:photos:{camera}", self.prefix)
    }

    fn jpegs(&self, camera: &str) -> String {
        format!("{}:jpeg:{camera}", self.prefix)
    }

    fn answer(&self, event_id: &str) -> String {
        format!("{}:answer:{event_id}", self.prefix)
    }

    fn alert(&self, alert_id: &str) -> String {
        format!("{}:alert:{alert_id}", self.prefix)
    }

    pub fn named(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.prefix)
    }
}

#[derive(Clone)]
pub struct SharedStore {
    client: redis::Client,
    /// Reconnects by itself after Redis went away; shared by every request.
    commands: ConnectionManager,
    keys: Arc<Keys>,
    insert: Arc<Script>,
    alert: Arc<Script>,
    settings: SharedStoreSettings,
}

/// The client for `url` with the settings' password and CA.
pub fn client(url: &str, settings: &SharedStoreSettings) -> Result<redis::Client, StoreError> {
    let mut info = url.into_connection_info()?;
    if let Some(password) = &settings.password {
        let redis = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(redis);
    }
    match &settings.ca_file {
        Some(path) => {
            let root_cert = std::fs::read(path).map_err(|e| {
                StoreError::Unavailable(format!(
                    "reading the Redis CA file {}: {e}",
                    path.display()
                ))
            })?;
            Ok(redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                },
            )?)
        }
        None => Ok(redis::Client::open(info)?),
    }
}

impl SharedStore {
    /// Connects to Redis at `url` (`redis://host:port/db` or `rediss://` for TLS); fails when it
    /// is unreachable.
    pub async fn connect(url: &str, settings: SharedStoreSettings) -> Result<Self, StoreError> {
        let client = client(url, &settings)?;
        let commands = client
            .get_connection_manager_with_config(
                ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(3),
            )
            .await?;
        // The connection manager connects lazily enough that a wrong or missing password would
        // only show on the first write; a PING here turns it into a start-up error that names
        // the cause (NOAUTH / WRONGPASS).
        let mut ping = commands.clone();
        redis::cmd("PING").query_async::<()>(&mut ping).await?;
        Ok(Self {
            client,
            commands,
            keys: Arc::new(Keys::new(&settings.key_prefix)),
            insert: Arc::new(Script::new(INSERT_SCRIPT)),
            alert: Arc::new(Script::new(ALERT_SCRIPT)),
            settings,
        })
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    pub fn connection(&self) -> ConnectionManager {
        self.commands.clone()
    }

    pub fn key(&self, suffix: &str) -> String {
        self.keys.named(suffix)
    }

    pub async fn insert(
        &self,
        event: &CountEvent,
        thumbnail: &Bytes,
        answer: Option<&CountResponse>,
    ) -> Result<Inserted, StoreError> {
        let json = serde_json::to_string(event).expect("CountEvent always serialises");
        let frame = encode_event_frame(event, None, thumbnail);
        let ts = event.timestamp_ms;
        let day = ts.div_euclid(DAY_MS);
        let window = rollup_start(ts);
        let record_offset = ((window - day * DAY_MS) / ROLLUP_MS) as usize * ROLLUP_RECORD;
        let answer = answer.map_or_else(String::new, |a| {
            serde_json::to_string(a).expect("CountResponse always serialises")
        });
        let stored: i64 = self
            .insert
            .key(self.keys.seen(&event.id))
            .key(&self.keys.stream)
            .key(&self.keys.totals)
            .key(&self.keys.latest_event)
            .key(&self.keys.latest_frame)
            .key(self.keys.camera_events(&event.camera))
            .key(self.keys.rollups(&event.camera, day))
            .key(self.keys.photos(&event.camera))
            .key(self.keys.jpegs(&event.camera))
            .key(self.keys.answer(&event.id))
            .arg(json)
            .arg(&event.camera)
            .arg(event.count)
            .arg(ts)
            .arg(&event.id)
            .arg(&frame[..])
            .arg(self.settings.id_memory.as_secs().max(1))
            .arg(self.settings.stream_max_len.max(1))
            .arg(record_offset)
            .arg(ts - window)
            .arg(self.settings.rollup_memory.as_secs().max(1) + 86_400)
            .arg(&thumbnail[..])
            .arg(self.settings.photos_per_camera.max(1))
            .arg(answer)
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
                .map(|e| TimelineEntry {
                    timestamp_ms: e.event.timestamp_ms,
                    camera: e.event.camera.clone(),
                    count: e.event.count,
                })
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
        let (header, jpeg) = decode_event_frame(&Bytes::from(frame))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Some((jpeg, header.event.id)))
    }

    /// The camera's kept photos, newest first.
    pub async fn recent_photos(&self, camera: &str) -> Result<Vec<PhotoEntry>, StoreError> {
        let ids: Vec<(String, f64)> = redis::cmd("ZREVRANGE")
            .arg(self.keys.photos(camera))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut self.commands.clone())
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, score) in ids {
            let timestamp_ms = score as i64;
            // The count is in the camera's event of that id, at that time.
            let events: Vec<String> = redis::cmd("ZRANGEBYSCORE")
                .arg(self.keys.camera_events(camera))
                .arg(timestamp_ms)
                .arg(timestamp_ms)
                .query_async(&mut self.commands.clone())
                .await?;
            let count = events
                .iter()
                .filter_map(|json| serde_json::from_str::<CountEvent>(json).ok())
                .find(|e| e.id == id)
                .map_or(0, |e| e.count);
            out.push(PhotoEntry {
                event_id: id,
                timestamp_ms,
                count,
            });
        }
        Ok(out)
    }

    pub async fn photo(&self, camera: &str, event_id: &str) -> Result<Option<Bytes>, StoreError> {
        let jpeg: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(self.keys.jpegs(camera))
            .arg(event_id)
            .query_async(&mut self.commands.clone())
            .await?;
        Ok(jpeg.map(Bytes::from))
    }

    pub async fn answer(&self, event_id: &str) -> Result<Option<CountResponse>, StoreError> {
        let json: Option<String> = redis::cmd("GET")
            .arg(self.keys.answer(event_id))
            .query_async(&mut self.commands.clone())
            .await?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    pub async fn camera_events(
        &self,
        camera: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<CountEvent>, StoreError> {
        let members: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.keys.camera_events(camera))
            .arg(from_ms)
            .arg(format!("({to_ms}"))
            .query_async(&mut self.commands.clone())
            .await?;
        members
            .iter()
            .map(|json| serde_json::from_str(json).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    }

    pub async fn rollups(
        &self,
        camera: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Rollup>, StoreError> {
        let first_day = rollup_start(from_ms).div_euclid(DAY_MS);
        let last_day = (to_ms - 1).div_euclid(DAY_MS);
        let mut pipe = redis::pipe();
        for day in first_day..=last_day {
            pipe.get(self.keys.rollups(camera, day));
        }
        let days: Vec<Option<Vec<u8>>> = pipe.query_async(&mut self.commands.clone()).await?;
        let mut out = Vec::new();
        for (day, bytes) in (first_day..=last_day).zip(days) {
            let Some(bytes) = bytes else { continue };
            for (index, record) in bytes
                .chunks_exact(ROLLUP_RECORD)
                .enumerate()
                .take(ROLLUPS_PER_DAY as usize)
            {
                let field = |i: usize| {
                    u32::from_le_bytes(record[4 * i..4 * i + 4].try_into().expect("4 bytes"))
                };
                let photos = field(0);
                if photos == 0 {
                    continue;
                }
                let start_ms = day * DAY_MS + index as i64 * ROLLUP_MS;
                if start_ms < rollup_start(from_ms) || start_ms >= to_ms {
                    continue;
                }
                out.push(Rollup {
                    start_ms,
                    photos,
                    sum: u64::from(field(1)),
                    min: field(2),
                    max: field(3),
                    last: field(4),
                    last_ms: start_ms + i64::from(field(5) as i32),
                });
            }
        }
        Ok(out)
    }

    pub async fn camera_settings(&self) -> Result<BTreeMap<String, CameraSettings>, StoreError> {
        let all: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&self.keys.settings)
            .query_async(&mut self.commands.clone())
            .await?;
        all.into_iter()
            .map(|(camera, json)| {
                serde_json::from_str(&json)
                    .map(|s| (camera, s))
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect()
    }

    pub async fn put_camera_settings(
        &self,
        camera: &str,
        settings: &CameraSettings,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(settings).expect("settings always serialise");
        redis::cmd("HSET")
            .arg(&self.keys.settings)
            .arg(camera)
            .arg(json)
            .query_async::<i64>(&mut self.commands.clone())
            .await?;
        Ok(())
    }

    /// Records an alert once, if the subject's recorded level is still its previous one, and
    /// appends it to the alert stream (the log and the webhooks' queue).
    pub async fn record_alert(&self, alert: &Alert) -> Result<Recorded, StoreError> {
        let json = serde_json::to_string(alert).expect("alerts always serialise");
        let outcome: String = self
            .alert
            .key(self.keys.alert(&alert.id))
            .key(&self.keys.alerts)
            .key(&self.keys.levels)
            .arg(json)
            .arg(self.settings.rollup_memory.as_secs().max(1))
            .arg(ALERT_STREAM_MAX_LEN)
            .arg(subject_key(alert.subject_kind, &alert.subject))
            .arg(alert.previous_level.as_str())
            .arg(alert.level.as_str())
            .invoke_async(&mut self.commands.clone())
            .await?;
        Ok(match outcome.as_str() {
            "new" => Recorded::New,
            "known" => Recorded::Known,
            level => Recorded::Conflict(parse_level(level).unwrap_or_default()),
        })
    }

    pub async fn levels(&self) -> Result<BTreeMap<(SubjectKind, String), Level>, StoreError> {
        let all: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&self.keys.levels)
            .query_async(&mut self.commands.clone())
            .await?;
        Ok(all
            .iter()
            .filter_map(|(subject, level)| Some((parse_subject_key(subject)?, parse_level(level)?)))
            .collect())
    }

    /// The newest alerts, newest first.
    pub async fn recent_alerts(&self, limit: usize) -> Result<Vec<Alert>, StoreError> {
        let reply: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(&self.keys.alerts)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut self.commands.clone())
            .await?;
        reply
            .ids
            .iter()
            .map(alert_entry)
            .map(|r| r.map(|(_, a)| a))
            .collect()
    }

    /// The alert stream's key (for the webhooks' consumer groups and followers).
    pub fn alert_stream(&self) -> &str {
        &self.keys.alerts
    }

    /// Trims stream entries added before `events_before_ms` (Redis's clock) and every camera's
    /// per-photo events before it. Totals, latest photos, rollups (they expire) and id markers
    /// (they expire) stay.
    pub async fn prune(&self, events_before_ms: i64) -> Result<u64, StoreError> {
        let mut connection = self.commands.clone();
        let removed: u64 = redis::cmd("XTRIM")
            .arg(&self.keys.stream)
            .arg("MINID")
            .arg("~")
            .arg(events_before_ms.max(0))
            .query_async(&mut connection)
            .await?;
        let cameras: Vec<String> = redis::cmd("HKEYS")
            .arg(&self.keys.latest_event)
            .query_async(&mut connection)
            .await?;
        let mut events_removed = 0u64;
        for chunk in cameras.chunks(100) {
            let mut pipe = redis::pipe();
            for camera in chunk {
                pipe.cmd("ZREMRANGEBYSCORE")
                    .arg(self.keys.camera_events(camera))
                    .arg("-inf")
                    .arg(format!("({events_before_ms}"));
            }
            let counts: Vec<u64> = pipe.query_async(&mut connection).await?;
            events_removed += counts.iter().sum::<u64>();
        }
        Ok(removed.max(events_removed))
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
        Ok(LogReader {
            connection: self.blocking_connection().await?,
            stream: self.keys.stream.clone(),
        })
    }

    /// A reader of the alert stream, on its own connection.
    pub async fn alert_reader(&self) -> Result<AlertReader, StoreError> {
        Ok(AlertReader {
            connection: self.blocking_connection().await?,
            stream: self.keys.alerts.clone(),
        })
    }

    /// A connection of its own, for commands that block.
    pub async fn blocking_connection(&self) -> Result<MultiplexedConnection, StoreError> {
        Ok(self
            .client
            .get_multiplexed_async_connection_with_config(
                &AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(FOLLOW_BLOCK + RESPONSE_TIMEOUT)),
            )
            .await?)
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

pub struct AlertReader {
    connection: MultiplexedConnection,
    stream: String,
}

impl AlertReader {
    /// The alerts after `position` (stream id), oldest first, waiting a few seconds for one.
    pub async fn read_after(&mut self, position: &str) -> Result<Vec<(String, Alert)>, StoreError> {
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
            .map(|entry| alert_entry(&entry))
            .collect()
    }
}

pub fn alert_entry(entry: &StreamId) -> Result<(String, Alert), StoreError> {
    let json: String = entry
        .get("alert")
        .ok_or_else(|| StoreError::Corrupt(format!("alert entry {} has no alert", entry.id)))?;
    let alert = serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok((entry.id.clone(), alert))
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
