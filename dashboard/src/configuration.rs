//! The dashboard's settings: each is a command-line flag and an environment variable, with the
//! default shown by `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct DashboardConfig {
    /// Address the page, the REST API and both WebSockets listen on.
    #[arg(
        long = "dashboard-addr",
        env = "DASHBOARD_ADDR",
        default_value = "0.0.0.0:4400"
    )]
    pub listen: SocketAddr,

    /// Directory of the history file (dashboard.redb); created if missing.
    #[arg(long, env = "DASHBOARD_DATA_DIR", default_value = "data/dashboard")]
    pub data_dir: PathBuf,

    /// Hours of per-event history kept for the histogram; the totals are kept for ever.
    #[arg(long, env = "HISTORY_HOURS", default_value_t = 24)]
    pub history_hours: u32,
}
