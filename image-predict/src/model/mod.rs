//! The models that count people. Each is loaded once at start, with its input shape fixed,
//! optimised and made runnable by tract; then it is run many times, from several threads.
//!
//! Today: [`centernet::CenterNet`], a COCO object detector of which we keep the `person` class.
//! A second model (e.g. a crowd-density network) sits beside it as another module implementing
//! [`PeopleCounter`].

pub mod centernet;
mod nms;

use common::wire::PersonBox;
use image::RgbImage;

pub use nms::non_maximum_suppression;

/// What a model found in one photo.
#[derive(Debug, Clone, PartialEq)]
pub struct Counted {
    pub count: u32,
    /// Person boxes, normalised to the photo (empty for models that do not localise people).
    pub boxes: Vec<PersonBox>,
    /// Time spent in the model itself (letterbox excluded), milliseconds.
    pub inference_ms: f64,
}

/// A model that counts the people in an upright RGB photo. Implementations are immutable after
/// loading and safe to share between the inference workers.
pub trait PeopleCounter: Send + Sync + 'static {
    /// Short model name reported in answers and events, e.g. `centernet-coco-512`.
    fn name(&self) -> &str;
    /// The score a detection needs to be counted, if the model uses one.
    fn score_threshold(&self) -> f32;
    fn count(&self, photo: &RgbImage) -> anyhow::Result<Counted>;
}
