//! image-predict's settings: each is a command-line flag and an environment variable, with the
//! default shown by `--help`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::model::calibration as calibrated;
use crate::model::centernet::{CenterNet, DetectorSettings};
use crate::model::csrnet::CsrNet;
use crate::model::{
    AdaptiveCounter, CountingMode, DenseSceneRule, DensitySettings, Kernels, Products,
};

#[derive(Debug, Clone, clap::Args)]
pub struct PredictConfig {
    /// Address the HTTP API listens on (inside the cluster: image-upload calls it).
    #[arg(
        id = "predict_addr",
        long = "predict-addr",
        env = "PREDICT_ADDR",
        default_value = "0.0.0.0:8002"
    )]
    pub listen: SocketAddr,

    /// Ops listener: /metrics, /healthz, /readyz (for the cluster, not for the public).
    #[arg(
        id = "predict_metrics_addr",
        long = "predict-metrics-addr",
        env = "PREDICT_METRICS_ADDR",
        default_value = "0.0.0.0:9002"
    )]
    pub metrics_listen: SocketAddr,

    /// The dashboard's WebSocket ingest endpoint (its internal listener), where every count is
    /// pushed.
    #[arg(
        long,
        env = "DASHBOARD_INGEST_URL",
        default_value = "ws://127.0.0.1:4401/ws/ingest"
    )]
    pub dashboard_ingest_url: String,

    /// The dashboard's internal listener, asked for stored answers and cameras' zones.
    #[arg(
        long,
        env = "DASHBOARD_INTERNAL_URL",
        default_value = "http://127.0.0.1:4401"
    )]
    pub dashboard_internal_url: String,

    /// The token of the dashboard's ingest listener (`Authorization: Bearer`).
    #[arg(
        id = "predict_ingest_token",
        long = "predict-ingest-token",
        env = "INGEST_TOKEN",
        hide_env_values = true
    )]
    pub ingest_token: Option<String>,

    /// The camera key file (hashes only; see `crowd keys new`); each upload needs one of its keys.
    #[arg(
        id = "predict_api_keys_file",
        long = "predict-api-keys-file",
        env = "API_KEYS_FILE"
    )]
    pub api_keys_file: Option<PathBuf>,

    /// Seconds the dashboard has to acknowledge a count; past them the photo is answered 503
    /// count_not_stored (with Retry-After), so that the camera sends it again.
    #[arg(long, env = "DELIVERY_TIMEOUT_SECS", default_value_t = 10)]
    pub delivery_timeout_secs: u64,

    /// A capture time may be this many hours old at most (the dashboard's history hours).
    #[arg(
        id = "predict_max_capture_age_hours",
        long = "predict-max-capture-age-hours",
        env = "MAX_CAPTURE_AGE_HOURS",
        default_value_t = 24
    )]
    pub max_capture_age_hours: u32,

    /// Local demos only: no camera keys and no ingest token.
    #[arg(skip)]
    pub no_auth: bool,

    #[command(flatten)]
    pub model: ModelConfig,

    /// Threads running the model; default: one per core.
    #[arg(long, env = "INFERENCE_WORKERS")]
    pub inference_workers: Option<usize>,

    /// Photos that may wait for a free worker; beyond it requests get 503 with Retry-After.
    #[arg(long, env = "INFERENCE_QUEUE", default_value_t = 8)]
    pub inference_queue: usize,

    /// Counts waiting at once for the dashboard's acknowledgement (about 40 KB each); beyond it
    /// the oldest is answered count_not_stored and counted in
    /// predict_dashboard_events_dropped_total.
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

    pub fn delivery_timeout(&self) -> Duration {
        Duration::from_secs(self.delivery_timeout_secs.max(1))
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The models and how they count: shared by the service and by `crowd eval`, so that both count
/// the same way. Defaults come from `model::calibration`, where their measurements are recorded.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelConfig {
    /// The person detector (CenterNet ONNX); default: `centernet/centernet.onnx` in the models
    /// folder (see --models-dir).
    #[arg(long, env = "DETECTOR_MODEL")]
    pub detector_model: Option<PathBuf>,

    /// The crowd-density model (CSRNet ONNX); not loaded with --counting detector. Default:
    /// `csrnet/csrnet.onnx` in the models folder.
    #[arg(long, env = "DENSITY_MODEL")]
    pub density_model: Option<PathBuf>,

    /// The folder holding `centernet/` and `csrnet/`. Default: the first that has them of
    /// `models` beside the executable, `../share/crowd/models` beside it, /usr/share/crowd/models,
    /// /opt/crowd/models, ./models, and the repository the binary was built from.
    #[arg(long, env = "CROWD_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,

    /// How the model is chosen per photo: auto (the density model's glance decides), detector,
    /// density, or fusion (boxes plus the density outside them, on every photo: slower, and
    /// less accurate on the labelled photos; docs/calibration.md).
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

    /// Heatmap peaks at least this high are candidate heads (reported with each count).
    #[arg(long, env = "CANDIDATE_HEAD_SCORE", default_value_t = calibrated::CANDIDATE_HEAD_SCORE)]
    pub candidate_head_score: f32,

    /// With --counting auto, photos whose density glance sees at least this many people go to
    /// the density model.
    #[arg(long, env = "DENSE_MIN_GLANCE_PEOPLE", default_value_t = calibrated::DENSE_MIN_GLANCE_PEOPLE)]
    pub dense_min_glance_people: f32,

    /// The density glance: the whole photo with its long side scaled to this many pixels.
    #[arg(long, env = "GLANCE_SIDE", default_value_t = calibrated::GLANCE_SIDE)]
    pub glance_side: u32,

    /// The density model counts at the photo's resolution, scaled down beyond this many pixels.
    #[arg(long, env = "DENSITY_MAX_PIXELS", default_value_t = calibrated::DENSITY_MAX_PIXELS)]
    pub density_max_pixels: u64,

    /// A density tile holds at most this many pixels.
    #[arg(long, env = "DENSITY_TILE_MAX_PIXELS", default_value_t = calibrated::DENSITY_TILE_MAX_PIXELS)]
    pub density_tile_max_pixels: u64,

    /// Context a density tile sees beyond the cells it owns, pixels (a multiple of 8).
    #[arg(long, env = "DENSITY_TILE_MARGIN", default_value_t = calibrated::DENSITY_TILE_MARGIN)]
    pub density_tile_margin: u32,

    /// Convolution kernels: own (ours where the CPU runs them: 3x3 convolutions with AVX-512,
    /// bfloat16 or float32 products, whichever this CPU runs faster; float32 1x1 ones with
    /// AVX-512 F; vectorised depthwise convolutions and 2x2 max poolings) or tract (tract's only).
    #[arg(long, env = "KERNELS", value_enum, default_value_t = Kernels::Own)]
    pub kernels: Kernels,

    /// Products of our 3x3 convolutions (with `--kernels own`): bf16 or f32. Unset (the
    /// default): whichever this CPU runs faster, timed once at start-up on one layer (logged as
    /// "3x3 convolution products measured"). Set it for the same arithmetic on every node.
    #[arg(long, env = "CONV3X3_PRODUCTS", value_enum)]
    pub conv3x3_products: Option<Products>,

    /// Threads that share the matrix multiplications of one model run (default: the cores).
    /// With one photo in flight it gets every core; with several, they share the same threads,
    /// so the machine is never oversubscribed.
    #[arg(long, env = "INFERENCE_THREADS")]
    pub inference_threads: Option<usize>,
}

/// Where each bundled model lives inside a models folder.
pub const DETECTOR_FILE: &str = "centernet/centernet.onnx";
pub const DENSITY_FILE: &str = "csrnet/csrnet.onnx";

impl ModelConfig {
    /// The detector's file: the one named, or found in the models folders.
    pub fn detector_path(&self) -> anyhow::Result<PathBuf> {
        self.model_path(self.detector_model.as_deref(), DETECTOR_FILE)
    }

    /// The density model's file: the one named, or found in the models folders.
    pub fn density_path(&self) -> anyhow::Result<PathBuf> {
        self.model_path(self.density_model.as_deref(), DENSITY_FILE)
    }

    /// The folders a model is looked for in, in order.
    pub fn model_folders(&self) -> Vec<PathBuf> {
        let mut folders = Vec::new();
        if let Some(dir) = &self.models_dir {
            folders.push(dir.clone());
        }
        if let Some(exe_dir) = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf))
        {
            folders.push(exe_dir.join("models"));
            folders.push(exe_dir.join("../share/crowd/models"));
        }
        folders.push(PathBuf::from("/usr/share/crowd/models"));
        folders.push(PathBuf::from("/opt/crowd/models"));
        folders.push(PathBuf::from("models"));
        // A binary built from a checkout (cargo build, cargo install --path) finds the models
        // of that checkout wherever it is started.
        folders.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../models"));
        folders
    }

    fn model_path(&self, named: Option<&Path>, file: &str) -> anyhow::Result<PathBuf> {
        if let Some(path) = named {
            anyhow::ensure!(
                path.is_file(),
                "the model file {} does not exist",
                path.display()
            );
            return Ok(path.to_owned());
        }
        let folders = self.model_folders();
        folders
            .iter()
            .map(|folder| folder.join(file))
            .find(|path| path.is_file())
            .ok_or_else(|| {
                let looked: Vec<String> = folders.iter().map(|f| format!("  {}", f.join(file).display())).collect();
                anyhow::anyhow!(
                    "the model {file} was not found; looked in:\n{}\n(set --models-dir / CROWD_MODELS_DIR, or --detector-model / --density-model)",
                    looked.join("\n")
                )
            })
    }

    pub fn detector_settings(&self) -> DetectorSettings {
        DetectorSettings {
            score_threshold: self.score_threshold,
            nms_iou: self.nms_iou,
            short_side: self.detector_short_side,
            max_tiles: self.detector_max_tiles,
            min_overlap: self.tile_min_overlap,
            candidate_score: self.candidate_head_score,
            kernels: self.kernels,
        }
    }

    pub fn density_settings(&self) -> DensitySettings {
        DensitySettings {
            max_pixels: self.density_max_pixels,
            tile_max_pixels: self.density_tile_max_pixels,
            tile_margin: self.density_tile_margin,
            glance_side: self.glance_side,
            kernels: self.kernels,
            products: self.conv3x3_products,
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
        let detector_path = self.detector_path()?;
        let detector = CenterNet::load(&detector_path, self.detector_settings())
            .with_context(|| format!("loading {}", detector_path.display()))?;
        let density = match self.counting {
            CountingMode::Detector => None,
            CountingMode::Auto | CountingMode::Density | CountingMode::Fusion => {
                let path = self.density_path()?;
                Some(
                    CsrNet::load(&path, self.density_settings())
                        .with_context(|| format!("loading {}", path.display()))?,
                )
            }
        };
        let rule = DenseSceneRule {
            min_glance_people: self.dense_min_glance_people,
        };
        AdaptiveCounter::new(detector, density, self.counting, rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        model: ModelConfig,
    }

    fn config(args: &[&str]) -> ModelConfig {
        Flags::parse_from(std::iter::once("test").chain(args.iter().copied())).model
    }

    /// `--models-dir` comes first, then beside the executable, the share folders, the working
    /// directory and the checkout the binary was built from; a missing model names them all.
    #[test]
    fn models_are_looked_for_in_every_folder_and_the_error_names_them() {
        let dir = std::env::temp_dir().join(format!("crowd-models-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(DETECTOR_FILE).parent().unwrap()).unwrap();
        std::fs::write(dir.join(DETECTOR_FILE), b"not really a model").unwrap();
        let config = config(&["--models-dir", dir.to_str().unwrap()]);
        assert_eq!(config.detector_path().unwrap(), dir.join(DETECTOR_FILE));
        // Not in --models-dir: found in this checkout's models/ wherever the test runs.
        assert!(config.density_path().unwrap().ends_with(DENSITY_FILE));
        let folders = config.model_folders();
        assert_eq!(folders[0], dir);
        assert!(folders.contains(&PathBuf::from("/usr/share/crowd/models")));
        let error = config
            .model_path(None, "missing.onnx")
            .unwrap_err()
            .to_string();
        for folder in &folders {
            let place = folder.join("missing.onnx");
            assert!(error.contains(&place.display().to_string()), "{error}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Unset, the products are measured at load; set, they reach the density model, and a
    /// value that names no products is refused with the choices.
    #[test]
    fn conv3x3_products_are_measured_unless_forced() {
        assert_eq!(config(&[]).density_settings().products, None);
        let forced = config(&["--conv3x3-products", "f32"]).density_settings();
        assert_eq!(forced.products, Some(Products::F32));
        let error = Flags::try_parse_from(["test", "--conv3x3-products", "int8"])
            .err()
            .expect("int8 is not a choice")
            .to_string();
        assert!(error.contains("bf16") && error.contains("f32"), "{error}");
    }
}
