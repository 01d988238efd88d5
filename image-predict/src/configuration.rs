//! image-predict's settings: each is a command-line flag and an environment variable, with the
//! default shown by `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::model::centernet::DetectorSettings;

#[derive(Debug, Clone, clap::Args)]
pub struct PredictConfig {
    /// Address the HTTP API listens on.
    #[arg(
        long = "predict-addr",
        env = "PREDICT_ADDR",
        default_value = "0.0.0.0:8002"
    )]
    pub listen: SocketAddr,

    /// The dashboard's WebSocket ingest endpoint, where every count is pushed.
    #[arg(
        long,
        env = "DASHBOARD_INGEST_URL",
        default_value = "ws://127.0.0.1:4400/ws/ingest"
    )]
    pub dashboard_ingest_url: String,

    /// The person detector (CenterNet ONNX).
    #[arg(
        long,
        env = "DETECTOR_MODEL",
        default_value = "models/centernet/centernet.onnx"
    )]
    pub detector_model: PathBuf,

    /// A detection counts as a person when its score is at least this (calibrated on the dev set).
    #[arg(long, env = "SCORE_THRESHOLD", default_value_t = 0.3)]
    pub score_threshold: f32,

    /// Person boxes overlapping more than this intersection-over-union are merged into one.
    #[arg(long, env = "NMS_IOU", default_value_t = 0.5)]
    pub nms_iou: f32,

    /// Threads running the model; default: one per core.
    #[arg(long, env = "INFERENCE_WORKERS")]
    pub inference_workers: Option<usize>,

    /// Photos that may wait for a free worker; beyond it requests get 503 with Retry-After.
    #[arg(long, env = "INFERENCE_QUEUE", default_value_t = 8)]
    pub inference_queue: usize,

    /// Events kept for the dashboard while it is unreachable (about 40 KB each); older ones are
    /// dropped beyond it and counted in predict_dashboard_events_dropped_total.
    #[arg(long, env = "EVENT_BUFFER", default_value_t = 1000)]
    pub event_buffer: usize,

    /// Largest accepted request body, bytes.
    #[arg(long, env = "PREDICT_MAX_BODY_BYTES", default_value_t = 20_000_000)]
    pub predict_max_body_bytes: usize,

    /// Largest accepted image, pixels (width x height, read from the header before decoding).
    #[arg(long, env = "PREDICT_MAX_PIXELS", default_value_t = 50_000_000)]
    pub predict_max_pixels: u64,
}

impl PredictConfig {
    pub fn detector_settings(&self) -> DetectorSettings {
        DetectorSettings {
            score_threshold: self.score_threshold,
            nms_iou: self.nms_iou,
        }
    }

    pub fn worker_count(&self) -> usize {
        self.inference_workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    }
}
