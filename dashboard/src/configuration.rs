//! The dashboard's settings: each is a command-line flag and an environment variable, with the
//! default shown by `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::alerts::AlertRules;
use crate::store::StoreChoice;
use crate::store::embedded::EmbeddedSettings;
use crate::store::shared::SharedStoreSettings;

#[derive(Debug, Clone, clap::Args)]
pub struct DashboardConfig {
    /// Public listener: the page, its static files, the live feed (/ws/live) and the REST API.
    #[arg(
        id = "dashboard_addr",
        long = "dashboard-addr",
        env = "DASHBOARD_ADDR",
        default_value = "0.0.0.0:4400"
    )]
    pub listen: SocketAddr,

    /// Internal listener for image-predict: /ws/ingest (where every count is pushed) and the
    /// lookups under /internal/v1/; every request needs the ingest token. Never expose it.
    #[arg(
        long = "ingest-addr",
        env = "DASHBOARD_INGEST_ADDR",
        default_value = "0.0.0.0:4401"
    )]
    pub ingest_listen: SocketAddr,

    /// Ops listener: /metrics, /healthz, /readyz (for the cluster, not for the public).
    #[arg(
        id = "dashboard_metrics_addr",
        long = "dashboard-metrics-addr",
        env = "DASHBOARD_METRICS_ADDR",
        default_value = "0.0.0.0:9400"
    )]
    pub metrics_listen: SocketAddr,

    /// The token image-predict must send on the ingest listener (`Authorization: Bearer`).
    #[arg(long, env = "INGEST_TOKEN", hide_env_values = true)]
    pub ingest_token: Option<String>,

    /// With a token set, every public route (page, REST, live feed; not /healthz) needs HTTP
    /// Basic authentication with this token as the password, or `Authorization: Bearer`. Off
    /// by default: put an authenticating proxy in front, or set this.
    #[arg(long, env = "VIEWER_TOKEN", hide_env_values = true)]
    pub viewer_token: Option<String>,

    /// Serve viewers without a credential on an address other machines reach: only behind an
    /// authenticating proxy that does the checking. Without it and without VIEWER_TOKEN the
    /// dashboard refuses to start unless its public listener is on loopback (127.0.0.1, ::1).
    #[arg(long, env = "OPEN_VIEWERS")]
    pub open_viewers: bool,

    /// With a token set, `PUT /api/v1/cameras/{camera}/settings` accepts changes of the camera
    /// registry with `Authorization: Bearer <token>`; without one, the registry is read-only.
    #[arg(long, env = "DASHBOARD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// The camera registry (TOML: names, groups, capacities, levels, zones); optional.
    #[arg(long, env = "CAMERAS_FILE")]
    pub cameras_file: Option<PathBuf>,

    /// Where the history is kept: `embedded` (a file under --data-dir, for a dashboard that runs
    /// alone) or a `redis://host:port/db` (or `rediss://`, TLS) URL shared by every replica.
    #[arg(long, env = "DASHBOARD_STORE", default_value = "embedded")]
    pub store: StoreChoice,

    /// Directory of the history file (dashboard.redb) of the embedded store; created if missing.
    #[arg(long, env = "DASHBOARD_DATA_DIR", default_value = "data/dashboard")]
    pub data_dir: PathBuf,

    /// Seconds to wait for the embedded store's file when a previous dashboard still holds it.
    #[arg(long, env = "STORE_LOCK_WAIT_SECS", default_value_t = 30)]
    pub store_lock_wait_secs: u64,

    /// Hours of per-photo history (histogram, series at fine steps, export of events); also how
    /// long an event id and an idempotent answer are remembered. Totals are kept for ever.
    #[arg(long, env = "HISTORY_HOURS", default_value_t = 24)]
    pub history_hours: u32,

    /// Days of 5-minute rollups per camera (series over longer ranges) and of the alert log.
    #[arg(long, env = "ROLLUP_DAYS", default_value_t = 7)]
    pub rollup_days: u32,

    /// Annotated photos kept per camera (the newest; the camera page shows them).
    #[arg(long, env = "PHOTOS_PER_CAMERA", default_value_t = 12)]
    pub photos_per_camera: usize,

    /// With a redis:// store: the prefix of every key, so that several stacks can share a Redis.
    #[arg(long, env = "DASHBOARD_REDIS_PREFIX", default_value = "crowd")]
    pub redis_prefix: String,

    /// With a redis:// store: the password (replaces one in the URL; keep it in a Secret).
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,

    /// With a rediss:// store: a PEM file with the CA of the server's certificate (default:
    /// the system's trusted roots).
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,

    /// With a redis:// store: count events kept in the Redis stream that every replica reads at
    /// start and follows (100,000 take about 18 MB; Redis trims in blocks, so a few more may stay).
    /// Older events leave the histogram but stay in the totals.
    #[arg(long, env = "DASHBOARD_STREAM_MAX_LEN", default_value_t = 100_000)]
    pub stream_max_len: u64,

    /// Webhook URLs each alert is POSTed to as JSON (comma-separated, or the flag repeated).
    #[arg(
        long = "alert-webhook-url",
        env = "ALERT_WEBHOOK_URLS",
        value_delimiter = ','
    )]
    pub alert_webhook_urls: Vec<String>,

    /// Key of the HMAC-SHA256 signature of each webhook body (`X-Crowd-Signature: sha256=…`).
    #[arg(long, env = "ALERT_WEBHOOK_SECRET", hide_env_values = true)]
    pub alert_webhook_secret: Option<String>,

    /// A new level must hold this many seconds (between photo times) before it is raised or
    /// cleared, so that one noisy photo does not flap it.
    #[arg(long, env = "ALERT_MIN_DURATION_SECS", default_value_t = 60)]
    pub alert_min_duration_secs: u64,

    /// A level is left only below its threshold less this fraction (0.1: 10 % below).
    #[arg(long, env = "ALERT_HYSTERESIS", default_value_t = 0.1)]
    pub alert_hysteresis: f64,

    /// Alerts waiting for one webhook at most; beyond it the oldest is dropped (and counted).
    #[arg(long, env = "ALERT_QUEUE", default_value_t = 1000)]
    pub alert_queue: usize,

    /// At most this many cameras get their own series in the Prometheus gauges (people now,
    /// level); the others are summed into camera="_other", so that label cardinality stays
    /// bounded.
    #[arg(long, env = "METRICS_MAX_CAMERAS", default_value_t = 500)]
    pub metrics_max_cameras: usize,

    /// Seconds between prunings of the history beyond its retention.
    #[arg(long, env = "PRUNE_EVERY_SECS", default_value_t = 600)]
    pub prune_every_secs: u64,

    /// Local demos only: no ingest token (anyone who reaches the ingest listener can write).
    #[arg(skip)]
    pub no_auth: bool,
}

impl DashboardConfig {
    /// Per-event history older than this is pruned; an event id is remembered as long.
    pub fn history_retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.history_hours) * 3600)
    }

    pub fn rollup_retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.rollup_days) * 86_400)
    }

    pub fn shared_store_settings(&self) -> SharedStoreSettings {
        SharedStoreSettings {
            key_prefix: self.redis_prefix.clone(),
            stream_max_len: self.stream_max_len,
            id_memory: self.history_retention(),
            rollup_memory: self.rollup_retention(),
            photos_per_camera: self.photos_per_camera,
            password: self.redis_password.clone(),
            ca_file: self.redis_ca_file.clone(),
        }
    }

    pub fn embedded_store_settings(&self) -> EmbeddedSettings {
        EmbeddedSettings {
            photos_per_camera: self.photos_per_camera,
            lock_wait: Duration::from_secs(self.store_lock_wait_secs),
            max_pending_deliveries: self.alert_queue,
        }
    }

    pub fn alert_rules(&self) -> AlertRules {
        AlertRules {
            hysteresis: self.alert_hysteresis.clamp(0.0, 0.9),
            min_duration_ms: (self.alert_min_duration_secs * 1000) as i64,
        }
    }
}
