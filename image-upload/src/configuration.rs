//! image-upload's settings: each is a command-line flag and an environment variable, with the
//! default shown by `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct UploadConfig {
    /// Address the upload page and API listen on.
    #[arg(
        id = "upload_addr",
        long = "upload-addr",
        env = "UPLOAD_ADDR",
        default_value = "0.0.0.0:8003"
    )]
    pub listen: SocketAddr,

    /// Ops listener: /metrics, /healthz, /readyz (for the cluster, not for the public).
    #[arg(
        id = "upload_metrics_addr",
        long = "upload-metrics-addr",
        env = "UPLOAD_METRICS_ADDR",
        default_value = "0.0.0.0:9003"
    )]
    pub metrics_listen: SocketAddr,

    /// The camera key file (one line per key: id, SHA-256 of the key, cameras; `crowd keys new`
    /// makes them). Every upload needs `Authorization: Bearer <key>` of one of its keys.
    #[arg(long, env = "API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,

    /// Photos a minute each camera key may upload on average (a token bucket per key; a key's
    /// own `rate=` in the key file wins).
    #[arg(long, env = "RATE_LIMIT_PER_MINUTE", default_value_t = 120)]
    pub rate_limit_per_minute: u32,

    /// Photos a camera key may upload at once, above its average (the bucket's size).
    #[arg(long, env = "RATE_LIMIT_BURST", default_value_t = 20)]
    pub rate_limit_burst: u32,

    /// A capture time may be this many hours old at most (the dashboard's history hours).
    #[arg(long, env = "MAX_CAPTURE_AGE_HOURS", default_value_t = 24)]
    pub max_capture_age_hours: u32,

    /// Local demos only: no camera keys.
    #[arg(skip)]
    pub no_auth: bool,

    /// Base URL of image-predict.
    #[arg(long, env = "PREDICT_URL", default_value = "http://127.0.0.1:8002")]
    pub predict_url: String,

    /// Largest accepted request body, bytes (the whole form for multipart uploads).
    #[arg(long, env = "UPLOAD_MAX_BODY_BYTES", default_value_t = 20_000_000)]
    pub upload_max_body_bytes: usize,

    /// Largest accepted image, pixels (width x height, read from the header before decoding).
    #[arg(long, env = "UPLOAD_MAX_PIXELS", default_value_t = 50_000_000)]
    pub upload_max_pixels: u64,

    /// How long image-predict may take to answer before the upload fails with 504, seconds.
    #[arg(long, env = "PREDICT_TIMEOUT_SECS", default_value_t = 30)]
    pub predict_timeout_secs: u64,
}

impl UploadConfig {
    pub fn predict_timeout(&self) -> Duration {
        Duration::from_secs(self.predict_timeout_secs)
    }
}
