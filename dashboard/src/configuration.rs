//! The dashboard's settings: each is a command-line flag and an environment variable, with the
//! default shown by `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::store::StoreChoice;
use crate::store::shared::SharedStoreSettings;

#[derive(Debug, Clone, clap::Args)]
pub struct DashboardConfig {
    /// Address the page, the REST API and both WebSockets listen on.
    #[arg(
        id = "dashboard_addr",
        long = "dashboard-addr",
        env = "DASHBOARD_ADDR",
        default_value = "0.0.0.0:4400"
    )]
    pub listen: SocketAddr,

    /// Where the history is kept: `embedded` (a file under --data-dir, for a dashboard that runs
    /// alone) or a `redis://host:port/db` URL shared by every dashboard replica.
    #[arg(long, env = "DASHBOARD_STORE", default_value = "embedded")]
    pub store: StoreChoice,

    /// Directory of the history file (dashboard.redb) of the embedded store; created if missing.
    #[arg(long, env = "DASHBOARD_DATA_DIR", default_value = "data/dashboard")]
    pub data_dir: PathBuf,

    /// Hours of per-event history kept for the histogram; the totals are kept for ever.
    #[arg(long, env = "HISTORY_HOURS", default_value_t = 24)]
    pub history_hours: u32,

    /// With a redis:// store: the prefix of every key, so that several stacks can share a Redis.
    #[arg(long, env = "DASHBOARD_REDIS_PREFIX", default_value = "crowd")]
    pub redis_prefix: String,

    /// With a redis:// store: count events kept in the Redis stream that every replica reads at
    /// start and follows (100,000 take about 18 MB; Redis trims in blocks, so a few more may stay).
    /// Older events leave the histogram but stay in the totals.
    #[arg(long, env = "DASHBOARD_STREAM_MAX_LEN", default_value_t = 100_000)]
    pub stream_max_len: u64,
}

impl DashboardConfig {
    /// Per-event history older than this is pruned; an event id is remembered as long.
    pub fn history_retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.history_hours) * 3600)
    }

    pub fn shared_store_settings(&self) -> SharedStoreSettings {
        SharedStoreSettings {
            key_prefix: self.redis_prefix.clone(),
            stream_max_len: self.stream_max_len,
            id_memory: self.history_retention(),
        }
    }
}
