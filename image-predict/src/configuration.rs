//! image-predict's settings: each is a command-line flag and an environment variable, with the
//! default shown by `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

use crate::model::calibration as calibrated;
use crate::model::centernet::{CenterNet, DetectorSettings};
use crate::model::csrnet::CsrNet;
use crate::model::{AdaptiveCounter, CountingMode, DenseSceneRule};

#[derive(Debug, Clone, clap::Args)]
pub struct PredictConfig {
    /// Address the HTTP API listens on.
    #[arg(
        id = "predict_addr",
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

    #[command(flatten)]
    pub model: ModelConfig,

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
    pub fn worker_count(&self) -> usize {
        self.inference_workers.unwrap_or_else(cores).max(1)
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The models and how they count: shared by the service and by `crowd eval`, so that both count
/// the same way. Defaults come from `model::calibration`, where their measurements are recorded.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelConfig {
    /// The person detector (CenterNet ONNX).
    #[arg(
        long,
        env = "DETECTOR_MODEL",
        default_value = "models/centernet/centernet.onnx"
    )]
    pub detector_model: PathBuf,

    /// The crowd-density model (CSRNet ONNX); not loaded with --counting detector.
    #[arg(
        long,
        env = "DENSITY_MODEL",
        default_value = "models/csrnet/csrnet.onnx"
    )]
    pub density_model: PathBuf,

    /// How the model is chosen per photo: auto (the detector's candidate heads decide),
    /// detector, or density.
    #[arg(long, env = "COUNTING", value_enum, default_value_t = CountingMode::Auto)]
    pub counting: CountingMode,

    /// A detection counts as a person when its score is at least this.
    #[arg(long, env = "SCORE_THRESHOLD", default_value_t = calibrated::SCORE_THRESHOLD)]
    pub score_threshold: f32,

    /// Person boxes overlapping more than this intersection-over-union are merged into one.
    #[arg(long, env = "NMS_IOU", default_value_t = calibrated::NMS_IOU)]
    pub nms_iou: f32,

    /// The detector sees the photo scaled to this short side, in 512-pixel tiles.
    #[arg(long, env = "DETECTOR_SHORT_SIDE", default_value_t = calibrated::DETECTOR_SHORT_SIDE)]
    pub detector_short_side: u32,

    /// At most this many detector tiles per photo (a longer photo is scaled down to fit).
    #[arg(long, env = "DETECTOR_MAX_TILES", default_value_t = calibrated::DETECTOR_MAX_TILES)]
    pub detector_max_tiles: usize,

    /// Least overlap between neighbouring tiles, pixels (at most 448).
    #[arg(long, env = "TILE_MIN_OVERLAP", default_value_t = calibrated::TILE_MIN_OVERLAP)]
    pub tile_min_overlap: u32,

    /// Heatmap peaks at least this high are candidate heads (the density signal).
    #[arg(long, env = "CANDIDATE_HEAD_SCORE", default_value_t = calibrated::CANDIDATE_HEAD_SCORE)]
    pub candidate_head_score: f32,

    /// With --counting auto, photos with at least this many candidate heads go to the density model.
    #[arg(long, env = "DENSE_MIN_CANDIDATE_HEADS", default_value_t = calibrated::DENSE_MIN_CANDIDATE_HEADS)]
    pub dense_min_candidate_heads: u32,

    /// The density model's square input side, pixels (a multiple of 8).
    #[arg(long, env = "DENSITY_INPUT_SIDE", default_value_t = calibrated::DENSITY_INPUT_SIDE)]
    pub density_input_side: u32,

    /// Threads that share the matrix multiplications of one model run (default: the cores).
    /// With one photo in flight it gets every core; with several, they share the same threads,
    /// so the machine is never oversubscribed.
    #[arg(long, env = "INFERENCE_THREADS")]
    pub inference_threads: Option<usize>,
}

impl ModelConfig {
    pub fn detector_settings(&self) -> DetectorSettings {
        DetectorSettings {
            score_threshold: self.score_threshold,
            nms_iou: self.nms_iou,
            short_side: self.detector_short_side,
            max_tiles: self.detector_max_tiles,
            min_overlap: self.tile_min_overlap,
            candidate_score: self.candidate_head_score,
        }
    }

    /// Loads the models this configuration needs.
    pub fn load(&self) -> anyhow::Result<AdaptiveCounter> {
        anyhow::ensure!(
            self.tile_min_overlap <= 448 && self.detector_short_side > 0,
            "--tile-min-overlap must be at most 448 and --detector-short-side positive"
        );
        // Process-wide: tract reads its executor from a global, and every model run in this
        // process shares the same threads.
        let threads = self.inference_threads.unwrap_or_else(cores).max(1);
        tract_linalg::multithread::set_default_executor(if threads > 1 {
            tract_linalg::multithread::Executor::multithread(threads)
        } else {
            tract_linalg::multithread::Executor::SingleThread
        });
        let detector = CenterNet::load(&self.detector_model, self.detector_settings())
            .with_context(|| format!("loading {}", self.detector_model.display()))?;
        let density = match self.counting {
            CountingMode::Detector => None,
            CountingMode::Auto | CountingMode::Density => Some(
                CsrNet::load(&self.density_model, self.density_input_side)
                    .with_context(|| format!("loading {}", self.density_model.display()))?,
            ),
        };
        let rule = DenseSceneRule {
            min_candidate_heads: self.dense_min_candidate_heads,
        };
        AdaptiveCounter::new(detector, density, self.counting, rule)
    }
}
