//! The models that count people. Each is loaded once at start, with its input shape fixed,
//! optimised and made runnable by tract; then it is run many times, from several threads.
//!
//! - [`centernet`]: a COCO object detector of which we keep the `person` class, run on
//!   overlapping tiles ([`tiling`]); it also yields the "candidate heads" signal.
//! - [`csrnet`]: a crowd-density network, for dense crowds where boxes fail.
//! - [`adaptive`]: picks one of them per photo ([`CountingMode`]).
//! - [`calibration`]: the defaults of all of the above, with how they were measured.

pub mod adaptive;
pub mod calibration;
pub mod centernet;
pub mod csrnet;
pub mod kernels;
mod nms;
pub mod rewrites;
pub mod tiling;

use common::wire::PersonBox;
use image::RgbImage;

pub use adaptive::{AdaptiveCounter, CountingMode, DenseSceneRule, Signals, choose_method};
pub use csrnet::{DensityMap, DensitySettings, Kernels, Products};
pub use nms::non_maximum_suppression;

/// Which model produced a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Boxes of the person detector, counted.
    Detector,
    /// The density model's map, summed.
    Density,
    /// The detector's boxes, plus the density map's mass outside them.
    Fusion,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Detector => "detector",
            Method::Density => "density",
            Method::Fusion => "fusion",
        }
    }
}

/// What the counter found in one photo.
#[derive(Debug, Clone, PartialEq)]
pub struct Counted {
    pub count: u32,
    pub method: Method,
    /// Why `method` was chosen, in words.
    pub reason: String,
    /// The model that produced `count`.
    pub model: &'static str,
    /// The density signal: local maxima of the detector's person heatmap above a low score.
    pub candidate_heads: u32,
    /// People the density model's glance (the whole photo, small) saw, when it looked.
    pub glance_people: Option<f32>,
    /// Person boxes, normalised to the photo (shown even when the density model counted).
    pub boxes: Vec<PersonBox>,
    /// The density map, when the density model counted.
    pub density: Option<DensityMap>,
    /// Scaling the photo and building the models' input tensors, milliseconds.
    pub preprocess_ms: f64,
    /// Time spent in the models themselves (scaling excluded), milliseconds.
    pub inference_ms: f64,
    /// Reading the models' outputs: boxes, NMS, candidate heads, the density sum, milliseconds.
    pub postprocess_ms: f64,
}

#[cfg(test)]
impl Counted {
    /// For tests of what follows counting: `boxes` (the detector's count) or, with a map, the
    /// density method; no timings.
    pub fn made_of(boxes: Vec<PersonBox>, density: Option<DensityMap>) -> Counted {
        Counted {
            count: boxes.len() as u32,
            method: if density.is_some() {
                Method::Density
            } else {
                Method::Detector
            },
            reason: String::new(),
            model: "test",
            candidate_heads: 0,
            glance_people: None,
            boxes,
            density,
            preprocess_ms: 0.0,
            inference_ms: 0.0,
            postprocess_ms: 0.0,
        }
    }
}

/// Counts the people in an upright RGB photo. Implementations are immutable after loading and
/// safe to share between the inference workers.
pub trait PeopleCounter: Send + Sync + 'static {
    /// The models loaded and the counting mode, e.g. `centernet-coco + csrnet, counting auto`.
    fn name(&self) -> &str;
    /// The score a detection needs to be counted.
    fn score_threshold(&self) -> f32;
    /// The smallest size, width by height, an upright `width` x `height` photo may be decoded
    /// at for `count` to give the answer it gives on the full photo: the models' inputs are
    /// then still made by shrinking, never by enlarging (see `imaging::decode_upright_at_least`).
    fn smallest_input(&self, width: u32, height: u32) -> (u32, u32);
    fn count(&self, photo: &RgbImage) -> anyhow::Result<Counted>;
}
