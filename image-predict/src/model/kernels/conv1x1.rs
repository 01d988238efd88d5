//! A 1x1 convolution (a matrix product of the weights with the image's positions), channels
//! first, float32 in, out and in every sum, on AVX-512 F: the detector's pointwise
//! convolutions, which were half its time in tract (BENCHMARKS.md).
//!
//! Why our own: tract runs each as a matrix product whose right-hand side (the image, a few
//! hundred to 65,536 positions of 16 to 960 channels) it first packs into panels, then
//! multiplies; on the detector's small and oddly shaped products the packing alone was 11 % of
//! the model and the products ran far below the core's FMA peak. In channels-first order the
//! image already is what a micro-kernel wants: each channel's positions are contiguous, so the
//! kernel reads them in place. It keeps [`MR`] output channels x [`NB`] positions in 24
//! registers and, per input channel, loads three 16-position vectors and broadcasts each output
//! channel's weight: 24 FMAs for 11 loads. The last block of positions is read and written
//! with masks.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::NV;
pub use super::activation::Activation;
pub use super::{MR, NB, OutputPlanes};

/// Weights of a group of output-channel blocks are kept to about this size, so that they and
/// the input channels of a block of positions stay in the core's L2 cache together.
const WEIGHT_GROUP_BYTES: usize = 256 * 1024;

/// Whether this CPU runs the kernel (AVX-512 F), checked at run time.
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The convolution's weights in the micro-kernel's order, and its bias.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedWeights {
    pub out_channels: usize,
    pub in_channels: usize,
    /// `[block of MR outputs][input channel][MR]`, zero past the last output channel.
    data: Vec<f32>,
    bias: Vec<f32>,
}

impl PackedWeights {
    /// `weights`: `[out][in]` (ONNX's `[out][in][1][1]`), `bias`: one per output channel.
    pub fn new(weights: &[f32], bias: &[f32], out_channels: usize, in_channels: usize) -> Self {
        assert_eq!(weights.len(), out_channels * in_channels, "1x1 weights");
        assert_eq!(bias.len(), out_channels, "one bias per output channel");
        let blocks = out_channels.div_ceil(MR);
        let mut data = vec![0f32; blocks * in_channels * MR];
        for out in 0..out_channels {
            let (block, m) = (out / MR, out % MR);
            for channel in 0..in_channels {
                data[(block * in_channels + channel) * MR + m] =
                    weights[out * in_channels + channel];
            }
        }
        Self {
            out_channels,
            in_channels,
            data,
            bias: bias.to_vec(),
        }
    }
}

/// Multiply-adds per task when a convolution is split between threads: some 20 to 40 µs of this
/// kernel's work, so that the detector's smallest convolutions (16 x 16 positions, 720 x 120
/// channels: 22 Mi multiply-adds) still give every core several tasks.
const MACS_PER_TASK: usize = 1 << 21;

/// One task's share of a convolution: a range of positions (whole blocks of [`NB`] but at the
/// image's end) and a range of blocks of [`MR`] output channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub positions: std::ops::Range<usize>,
    pub channel_blocks: std::ops::Range<usize>,
}

/// The tasks of a convolution of an image of `positions` positions, about [`MACS_PER_TASK`]
/// multiply-adds each, which together cover every position of every output channel once. The
/// positions are split first; the output channels too when `split_channels` and the image has
/// too few positions for the tasks wanted (a task of a channels-last output writes whole rows
/// of it, so it must own all their channels).
pub fn tasks(positions: usize, weights: &PackedWeights, split_channels: bool) -> Vec<Task> {
    let position_blocks = positions.div_ceil(NB);
    let channel_blocks = weights.out_channels.div_ceil(MR);
    if position_blocks == 0 || channel_blocks == 0 {
        return Vec::new();
    }
    let macs = positions * weights.in_channels.max(1) * weights.out_channels;
    let wanted = macs.div_ceil(MACS_PER_TASK).max(1);
    let position_parts = wanted.min(position_blocks);
    let channel_parts = if split_channels {
        wanted.div_ceil(position_parts).min(channel_blocks)
    } else {
        1
    };
    let blocks_per_part = position_blocks.div_ceil(position_parts);
    let channel_blocks_per_part = channel_blocks.div_ceil(channel_parts);
    let mut tasks = Vec::new();
    for first in (0..position_blocks).step_by(blocks_per_part) {
        let positions = first * NB..((first + blocks_per_part) * NB).min(positions);
        for first_channel in (0..channel_blocks).step_by(channel_blocks_per_part) {
            tasks.push(Task {
                positions: positions.clone(),
                channel_blocks: first_channel
                    ..(first_channel + channel_blocks_per_part).min(channel_blocks),
            });
        }
    }
    tasks
}

/// Where a task's channels-first planes are in a buffer: row `c` (an input or output channel)
/// holds `len` positions from `offset + c * stride`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planes {
    pub offset: usize,
    pub stride: usize,
    pub len: usize,
}

impl Planes {
    /// Positions `range` of an image whose planes are `positions` long.
    pub fn of_image(positions: usize, range: &std::ops::Range<usize>) -> Self {
        Self {
            offset: range.start,
            stride: positions,
            len: range.len(),
        }
    }

    /// A buffer of `len` positions per channel, all its own.
    pub fn packed(len: usize) -> Self {
        Self {
            offset: 0,
            stride: len,
            len,
        }
    }

    /// The buffer length these planes need for `rows` rows.
    fn extent(&self, rows: usize) -> usize {
        if rows == 0 {
            0
        } else {
            self.offset + (rows - 1) * self.stride + self.len
        }
    }
}

/// Runs the convolution of the positions of `input` that `input_planes` locates (every input
/// channel) into the output channel blocks `channel_blocks` of `out` at `out_planes`, adding
/// the bias and applying `activation`. Callers split an image into [`tasks`] and run them on
/// several threads, each writing its own part of `out`.
///
/// # Panics
/// If the CPU lacks AVX-512 F ([`supported`]), the two planes differ in length or a buffer is
/// too short for them.
#[allow(clippy::too_many_arguments)]
pub fn convolve(
    input: &[f32],
    input_planes: Planes,
    weights: &PackedWeights,
    activation: Activation,
    channel_blocks: std::ops::Range<usize>,
    out: &OutputPlanes<'_>,
    out_planes: Planes,
) {
    assert!(supported(), "the CPU lacks AVX-512 F");
    assert_eq!(
        input_planes.len, out_planes.len,
        "as many positions out as in"
    );
    assert!(
        input.len() >= input_planes.extent(weights.in_channels),
        "input"
    );
    let last_channel = (channel_blocks.end * MR).min(weights.out_channels);
    assert!(out.len >= out_planes.extent(last_channel), "output");
    let len = input_planes.len;
    let panel = weights.in_channels * MR;
    let group = (WEIGHT_GROUP_BYTES / (panel * 4).max(1)).max(1);
    for first_block in channel_blocks.clone().step_by(group) {
        let last_block = (first_block + group).min(channel_blocks.end);
        for n in (0..len).step_by(NB) {
            let lanes = (len - n).min(NB);
            for block in first_block..last_block {
                let channels = (weights.out_channels - block * MR).min(MR);
                let mut bias = [0f32; MR];
                bias[..channels].copy_from_slice(&weights.bias[block * MR..][..channels]);
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the features were checked; the panel holds `in_channels` x MR weights;
                // every read is of an input row at positions n..n + lanes of `len` and every
                // write of this block's output rows at those positions, inside the buffers by
                // the extents asserted above.
                unsafe {
                    micro_kernel(
                        &weights.data[block * panel..][..panel],
                        input.as_ptr().add(input_planes.offset + n),
                        input_planes.stride,
                        weights.in_channels,
                        &bias,
                        activation,
                        lanes,
                        channels,
                        out.ptr
                            .add(out_planes.offset + block * MR * out_planes.stride + n),
                        out_planes.stride,
                    );
                }
            }
        }
    }
}

/// Lane masks of the NV vectors for `lanes` valid positions.
#[cfg(target_arch = "x86_64")]
fn lane_masks(lanes: usize) -> [__mmask16; NV] {
    std::array::from_fn(|v| {
        let valid = lanes.saturating_sub(16 * v).min(16);
        ((1u32 << valid) - 1) as __mmask16
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_kernel(
    panel: &[f32],
    input: *const f32,
    input_stride: usize,
    in_channels: usize,
    bias: &[f32; MR],
    activation: Activation,
    lanes: usize,
    channels: usize,
    out: *mut f32,
    out_stride: usize,
) {
    let masks = lane_masks(lanes);
    // SAFETY: see `convolve`. Index loops of constant trip counts over fixed-size arrays, so
    // that the 24 accumulators live in registers only.
    #[allow(clippy::needless_range_loop)]
    unsafe {
        let mut acc: [[__m512; NV]; MR] = [[_mm512_setzero_ps(); NV]; MR];
        for m in 0..MR {
            for v in 0..NV {
                acc[m][v] = _mm512_set1_ps(bias[m]);
            }
        }
        let mut weights = panel.as_ptr();
        for channel in 0..in_channels {
            let source = input.add(channel * input_stride);
            let mut inputs = [_mm512_setzero_ps(); NV];
            for v in 0..NV {
                inputs[v] = _mm512_maskz_loadu_ps(masks[v], source.add(16 * v));
            }
            for m in 0..MR {
                let weight = _mm512_set1_ps(*weights.add(m));
                for v in 0..NV {
                    acc[m][v] = _mm512_fmadd_ps(weight, inputs[v], acc[m][v]);
                }
            }
            weights = weights.add(MR);
        }
        for m in 0..channels {
            let row = out.add(m * out_stride);
            for v in 0..NV {
                let value = activation.apply_avx512(acc[m][v]);
                _mm512_mask_storeu_ps(row.add(16 * v), masks[v], value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::pseudo_random;
    use super::*;

    /// Against the definition in float64, on channel counts that are not multiples of MR and
    /// position counts that are not multiples of the block; with each activation; run task by
    /// task, with and without the output channels split, reading the image in place or a task's
    /// positions copied to a buffer of their own.
    #[test]
    fn matches_the_definition() {
        if !supported() {
            eprintln!("skipped: this CPU has no AVX-512, and the kernel is not used on it");
            return;
        }
        let mut seed = 5;
        for (c, k, positions) in [(16, 64, 4096), (7, 9, 50), (960, 160, 256), (3, 1, 1)] {
            let input = pseudo_random(c * positions, &mut seed);
            let weights = pseudo_random(k * c, &mut seed);
            let bias = pseudo_random(k, &mut seed);
            let packed = PackedWeights::new(&weights, &bias, k, c);
            let hard_swish = Activation::HardSwish {
                scale: 1.0 / 6.0,
                shift: 3.0,
                cap: 6.0,
            };
            for (activation, split_channels) in [
                (Activation::None, true),
                (Activation::Relu, false),
                (hard_swish, true),
            ] {
                let mut out = vec![f32::NAN; k * positions];
                let planes = OutputPlanes::new(&mut out);
                for (index, task) in tasks(positions, &packed, split_channels).iter().enumerate() {
                    let in_place = Planes::of_image(positions, &task.positions);
                    let out_planes = Planes::of_image(positions, &task.positions);
                    if index % 2 == 0 {
                        convolve(
                            &input,
                            in_place,
                            &packed,
                            activation,
                            task.channel_blocks.clone(),
                            &planes,
                            out_planes,
                        );
                    } else {
                        let own: Vec<f32> = (0..c)
                            .flat_map(|i| &input[i * positions..][task.positions.clone()])
                            .copied()
                            .collect();
                        convolve(
                            &own,
                            Planes::packed(task.positions.len()),
                            &packed,
                            activation,
                            task.channel_blocks.clone(),
                            &planes,
                            out_planes,
                        );
                    }
                }
                for o in 0..k {
                    for n in 0..positions {
                        let mut want = f64::from(bias[o]);
                        for i in 0..c {
                            want +=
                                f64::from(weights[o * c + i]) * f64::from(input[i * positions + n]);
                        }
                        want = f64::from(activation.apply(want as f32));
                        let got = out[o * positions + n];
                        assert!(
                            (f64::from(got) - want).abs() <= 1e-5 * (c as f64).sqrt() * 4.0,
                            "{c}->{k} x {positions}, {activation:?}, output {o} at {n}: {got} against {want}"
                        );
                    }
                }
            }
        }
    }

    /// The tasks cover every position of every output channel block exactly once, split the
    /// channels only when allowed, and give a convolution of many multiply-adds several tasks
    /// even when it has few positions.
    #[test]
    fn tasks_cover_the_output_once() {
        for (c, k, positions) in [(120, 720, 256), (16, 64, 65536), (7, 9, 50), (3, 1, 1)] {
            let packed = PackedWeights::new(&vec![0.0; k * c], &vec![0.0; k], k, c);
            for split_channels in [true, false] {
                let tasks = tasks(positions, &packed, split_channels);
                let blocks = k.div_ceil(MR);
                let mut covered = vec![0u8; blocks * positions];
                for task in &tasks {
                    assert!(task.positions.start % NB == 0, "{task:?}");
                    if !split_channels {
                        assert_eq!(task.channel_blocks, 0..blocks);
                    }
                    for block in task.channel_blocks.clone() {
                        for n in task.positions.clone() {
                            covered[block * positions + n] += 1;
                        }
                    }
                }
                assert!(covered.iter().all(|&n| n == 1), "{c}->{k} x {positions}");
                let macs = c * k * positions;
                if macs >= 4 * MACS_PER_TASK && split_channels {
                    assert!(tasks.len() >= 4, "{c}->{k} x {positions}: {}", tasks.len());
                }
            }
        }
        let none = PackedWeights::new(&[], &[], 0, 0);
        assert!(tasks(100, &none, true).is_empty());
        let some = PackedWeights::new(&[1.0], &[0.0], 1, 1);
        assert!(tasks(0, &some, true).is_empty());
    }
}
