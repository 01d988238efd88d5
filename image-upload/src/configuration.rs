//! image-upload's settings: each is a command-line flag and an environment variable, with the
//! default shown by `--help`.

use std::net::SocketAddr;
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
