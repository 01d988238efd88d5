//! A dense convolution of an image with few input channels, channels last in and out, float32,
//! on AVX-512 F: a network's first layer (the detector's 3x3, stride-2 convolution of the RGB
//! photo to 16 channels, followed by a hard swish).
//!
//! Why our own: tract pads the photo into a copy, unfolds it (im2col) into a matrix of 27
//! values per output position and multiplies that by the weights; with 3 input channels the
//! product is tiny per position and the copies, the packing and the separate activation pass
//! cost more than the arithmetic (4.5 ms of the detector's 56 on one thread: BENCHMARKS.md).
//! Here each output position's channels are one 16-lane vector: the kernel broadcasts each of
//! the position's `kernel² x in_channels` input values and multiplies it with that tap's
//! weights, skipping the taps that fall in the padding, and applies the activation before the
//! one store.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::activation::Activation;

/// Output channels per vector.
const LANES: usize = 16;

/// Input channels at most: each has its own accumulator, so that the products of a position are
/// four chains of dependent multiply-adds instead of one (a chain of 27 waited on its own
/// latency, 2.1 ms for the detector's stem). With more channels tract's matrix products beat
/// broadcasting every input value anyway.
pub const MAX_IN_CHANNELS: usize = 4;

/// Whether this CPU runs the kernel (AVX-512 F), checked at run time.
pub fn supported() -> bool {
    super::conv1x1::supported()
}

/// A convolution's weights in the kernel's order, with its bias, stride, padding and the
/// activation that follows it.
#[derive(Debug, Clone, PartialEq)]
pub struct StemWeights {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    /// (top, left, bottom, right).
    pub padding: [usize; 4],
    pub activation: Activation,
    /// `[ky][kx][in][block of 16 outputs]`, zero past the last output channel.
    data: Vec<f32>,
    /// One per output channel, zero past the last.
    bias: Vec<f32>,
}

impl StemWeights {
    /// `weight(out, in, ky, kx)` reads the convolution's weights in whatever layout they are
    /// stored; `bias` has one value per output channel.
    pub fn new(
        weight: impl Fn(usize, usize, usize, usize) -> f32,
        bias: &[f32],
        (in_channels, out_channels, kernel): (usize, usize, usize),
        stride: usize,
        padding: [usize; 4],
        activation: Activation,
    ) -> Self {
        assert_eq!(bias.len(), out_channels, "one bias per output channel");
        assert!(stride > 0 && kernel > 0);
        assert!(
            in_channels <= MAX_IN_CHANNELS,
            "at most {MAX_IN_CHANNELS} input channels"
        );
        let padded = out_channels.div_ceil(LANES) * LANES;
        let mut data = vec![0f32; kernel * kernel * in_channels * padded];
        for ky in 0..kernel {
            for kx in 0..kernel {
                for i in 0..in_channels {
                    for o in 0..out_channels {
                        data[((ky * kernel + kx) * in_channels + i) * padded + o] =
                            weight(o, i, ky, kx);
                    }
                }
            }
        }
        let mut padded_bias = vec![0f32; padded];
        padded_bias[..out_channels].copy_from_slice(bias);
        Self {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
            activation,
            data,
            bias: padded_bias,
        }
    }

    /// The output's height and width for an input of `height` x `width`.
    pub fn output_size(&self, height: usize, width: usize) -> (usize, usize) {
        let [top, left, bottom, right] = self.padding;
        let along = |length: usize, before: usize, after: usize| {
            (length + before + after).saturating_sub(self.kernel) / self.stride + 1
        };
        (along(height, top, bottom), along(width, left, right))
    }
}

/// Computes output rows `rows` of the convolution of `input` (`[height][width][in_channels]`)
/// into `out` (`[rows][output width][out_channels]`).
///
/// # Panics
/// If the CPU lacks AVX-512 F ([`supported`]) or a buffer is not of its size.
pub fn convolve(
    input: &[f32],
    (height, width): (usize, usize),
    weights: &StemWeights,
    rows: std::ops::Range<usize>,
    out: &mut [f32],
) {
    assert!(supported(), "the CPU lacks AVX-512 F");
    let (out_height, out_width) = weights.output_size(height, width);
    assert_eq!(input.len(), height * width * weights.in_channels, "input");
    assert!(rows.end <= out_height, "rows");
    assert_eq!(
        out.len(),
        rows.len() * out_width * weights.out_channels,
        "output"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the features were checked and the buffers' sizes asserted; the kernel reads input
    // positions inside the image only and writes the output rows given.
    unsafe {
        convolve_avx512(input, (height, width), weights, rows, out_width, out);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn convolve_avx512(
    input: &[f32],
    (height, width): (usize, usize),
    weights: &StemWeights,
    rows: std::ops::Range<usize>,
    out_width: usize,
    out: &mut [f32],
) {
    let (k, c, stride) = (weights.kernel, weights.in_channels, weights.stride);
    let [top, left, ..] = weights.padding;
    let blocks = weights.out_channels.div_ceil(LANES);
    let padded = blocks * LANES;
    let out_channels = weights.out_channels;
    let last_lanes = out_channels - (blocks - 1) * LANES;
    let last_mask = ((1u32 << last_lanes) - 1) as __mmask16;
    for (row_index, oy) in rows.enumerate() {
        // The kernel rows that fall inside the image.
        let y0 = oy * stride;
        let ky_range = top.saturating_sub(y0)..k.min((height + top).saturating_sub(y0));
        for ox in 0..out_width {
            let x0 = ox * stride;
            let kx_range = left.saturating_sub(x0)..k.min((width + left).saturating_sub(x0));
            let out_at = (row_index * out_width + ox) * out_channels;
            for block in 0..blocks {
                // SAFETY: every input index is of a tap inside the image (the ranges above), the
                // weight and bias indices are inside their padded arrays, and the store writes
                // this position's output channels of this block only (masked at the last).
                unsafe {
                    let mut acc = [_mm512_setzero_ps(); MAX_IN_CHANNELS];
                    acc[0] = _mm512_loadu_ps(weights.bias.as_ptr().add(block * LANES));
                    for ky in ky_range.clone() {
                        let iy = y0 + ky - top;
                        for kx in kx_range.clone() {
                            let ix = x0 + kx - left;
                            let pixel = input.as_ptr().add((iy * width + ix) * c);
                            let tap = weights
                                .data
                                .as_ptr()
                                .add((ky * k + kx) * c * padded + block * LANES);
                            // A loop of constant trip count, unrolled: the accumulators stay in
                            // registers.
                            #[allow(clippy::needless_range_loop)]
                            for i in 0..MAX_IN_CHANNELS {
                                if i < c {
                                    let w = _mm512_loadu_ps(tap.add(i * padded));
                                    let x = _mm512_set1_ps(*pixel.add(i));
                                    acc[i] = _mm512_fmadd_ps(x, w, acc[i]);
                                }
                            }
                        }
                    }
                    let sum =
                        _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
                    let value = weights.activation.apply_avx512(sum);
                    let mask = if block + 1 == blocks { last_mask } else { !0 };
                    _mm512_mask_storeu_ps(
                        out.as_mut_ptr().add(out_at + block * LANES),
                        mask,
                        value,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::pseudo_random;
    use super::*;

    /// Against the definition in float64: the detector's stem (3x3, stride 2, padding only after
    /// the image, 3 -> 16, hard swish) and shapes with other channel counts, strides, kernels and
    /// padding on every side, in row ranges as threads split them.
    #[test]
    fn matches_the_definition() {
        if !supported() {
            eprintln!("skipped: this CPU has no AVX-512, and the kernel is not used on it");
            return;
        }
        let hard_swish = Activation::HardSwish {
            scale: 1.0 / 6.0,
            shift: 3.0,
            cap: 6.0,
        };
        let mut seed = 11;
        for (c, o, k, stride, padding, (h, w), activation) in [
            (3, 16, 3, 2, [0, 0, 1, 1], (32, 30), hard_swish),
            (3, 20, 3, 1, [1, 1, 1, 1], (9, 13), Activation::Relu),
            (2, 5, 5, 2, [2, 1, 2, 2], (11, 7), Activation::None),
            (1, 33, 1, 1, [0, 0, 0, 0], (4, 4), Activation::None),
        ] {
            let input = pseudo_random(h * w * c, &mut seed);
            let raw = pseudo_random(o * c * k * k, &mut seed);
            let bias = pseudo_random(o, &mut seed);
            let weight =
                |oo: usize, i: usize, ky: usize, kx: usize| raw[((oo * c + i) * k + ky) * k + kx];
            let weights = StemWeights::new(weight, &bias, (c, o, k), stride, padding, activation);
            let (oh, ow) = weights.output_size(h, w);
            let mut out = vec![f32::NAN; oh * ow * o];
            let split = oh / 2;
            let (first, second) = out.split_at_mut(split * ow * o);
            convolve(&input, (h, w), &weights, 0..split, first);
            convolve(&input, (h, w), &weights, split..oh, second);
            for oy in 0..oh {
                for ox in 0..ow {
                    for oo in 0..o {
                        let mut want = f64::from(bias[oo]);
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * stride + ky) as isize - padding[0] as isize;
                                let ix = (ox * stride + kx) as isize - padding[1] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                for i in 0..c {
                                    let x = input[((iy as usize) * w + ix as usize) * c + i];
                                    want += f64::from(weight(oo, i, ky, kx)) * f64::from(x);
                                }
                            }
                        }
                        let want = f64::from(activation.apply(want as f32));
                        let got = out[(oy * ow + ox) * o + oo];
                        assert!(
                            (f64::from(got) - want).abs() <= 1e-5,
                            "{c}->{o} k{k} s{stride} at ({oy}, {ox}) channel {oo}: {got} against {want}"
                        );
                    }
                }
            }
        }
    }
}
