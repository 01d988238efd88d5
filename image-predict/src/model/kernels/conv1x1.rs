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

/// Blocks of [`NB`] positions an image of `positions` positions has (the unit of
/// [`convolve`]'s `blocks`).
pub fn position_blocks(positions: usize) -> usize {
    positions.div_ceil(NB)
}

/// Runs the convolution of `input` (`[in_channels][positions]`) into `out`
/// (`[out_channels][positions]`), adding the bias and applying `activation`. Position blocks
/// `blocks` (in units of [`NB`]) only, so that callers can split the work between threads.
///
/// # Panics
/// If the CPU lacks AVX-512 F ([`supported`]) or the buffers are not of these sizes.
pub fn convolve(
    input: &[f32],
    positions: usize,
    weights: &PackedWeights,
    activation: Activation,
    blocks: std::ops::Range<usize>,
    out: &OutputPlanes<'_>,
) {
    assert!(supported(), "the CPU lacks AVX-512 F");
    assert_eq!(input.len(), weights.in_channels * positions, "input");
    assert_eq!(out.len, weights.out_channels * positions, "output");
    assert!(blocks.end <= position_blocks(positions));
    let channel_blocks = weights.out_channels.div_ceil(MR);
    let panel = weights.in_channels * MR;
    let group = (WEIGHT_GROUP_BYTES / (panel * 4).max(1)).clamp(1, channel_blocks);
    for first_block in (0..channel_blocks).step_by(group) {
        let last_block = (first_block + group).min(channel_blocks);
        for position_block in blocks.clone() {
            let n = position_block * NB;
            let lanes = (positions - n).min(NB);
            for block in first_block..last_block {
                let channels = (weights.out_channels - block * MR).min(MR);
                let mut bias = [0f32; MR];
                bias[..channels].copy_from_slice(&weights.bias[block * MR..][..channels]);
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the features were checked; the panel holds `in_channels` x MR weights;
                // every read is of input channels at positions n..n + lanes and every write of
                // this block's output channels at those positions, all inside the buffers,
                // whose sizes were asserted.
                unsafe {
                    micro_kernel(
                        &weights.data[block * panel..][..panel],
                        input.as_ptr().add(n),
                        positions,
                        weights.in_channels,
                        &bias,
                        activation,
                        lanes,
                        channels,
                        out.ptr.add(block * MR * positions + n),
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
    positions: usize,
    in_channels: usize,
    bias: &[f32; MR],
    activation: Activation,
    lanes: usize,
    channels: usize,
    out: *mut f32,
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
            let source = input.add(channel * positions);
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
            let row = out.add(m * positions);
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
    /// position counts that are not multiples of the block; with each activation; split in two
    /// calls.
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
            for activation in [Activation::None, Activation::Relu, hard_swish] {
                let mut out = vec![f32::NAN; k * positions];
                let planes = OutputPlanes::new(&mut out);
                let blocks = position_blocks(positions);
                convolve(
                    &input,
                    positions,
                    &packed,
                    activation,
                    0..blocks / 2,
                    &planes,
                );
                convolve(
                    &input,
                    positions,
                    &packed,
                    activation,
                    blocks / 2..blocks,
                    &planes,
                );
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
}
