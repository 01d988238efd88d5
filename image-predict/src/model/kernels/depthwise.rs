//! A depthwise convolution with stride 1 or 2: each channel convolved with its own square kernel
//! of odd side. Float32, batch 1, channels first (CHW) or last (HWC).
//!
//! Why our own: tract's depthwise kernel is vectorised only for stride 1 and channels first; its
//! stride-2 convolutions ran scalar code at under 1 GMAC/s and were the largest cost of the
//! detector, and its channels-last ones (the detector's first block, 16 channels at 256x256) ran
//! at about 3 GMAC/s (BENCHMARKS.md). Every loop here is a run of multiply-adds over contiguous
//! slices, which the compiler vectorises:
//! - channels first, stride 1: output row `oy`, kernel tap `(ky, kx)` reads padded row
//!   `oy + ky` from column `kx` on;
//! - channels first, stride 2: each padded input row is split once into its even and odd
//!   columns; output column `j` of kernel column `kx` then reads `even[j + kx / 2]` (kx even) or
//!   `odd[j + kx / 2]` (kx odd);
//! - channels last: for each output position and tap, the input position's channels times the
//!   tap's weight per channel (one vector of 16 channels on AVX-512).
//!
//! The same loops are compiled three times, for AVX-512, for AVX2 with FMA, and plain, and the
//! best the CPU runs is chosen at run time. On AVX-512, channels first, each output row is
//! computed by [`row_avx512`] instead: 64 columns' sums stay in registers over all taps (the
//! detector's depthwise convolutions 27.3 → 17.4 ms in `op_profile`, BENCHMARKS.md).

use std::ops::Range;

use super::activation::Activation;

/// Where the channel axis is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelAxis {
    /// `[channel][y][x]`.
    First,
    /// `[y][x][channel]`.
    Last,
}

/// The weights of one depthwise convolution, and its geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct DepthwiseWeights {
    pub channels: usize,
    /// Kernel side (odd).
    pub kernel: usize,
    /// 1 or 2, along both axes.
    pub stride: usize,
    /// Zero rows and columns added: top, left, bottom, right.
    pub padding: [usize; 4],
    /// `[channel][ky][kx]`.
    weights: Vec<f32>,
    /// `[ky][kx][channel]`, for channels last.
    weights_by_tap: Vec<f32>,
    bias: Vec<f32>,
    /// Applied to each output row once its sums are complete.
    pub activation: Activation,
}

impl DepthwiseWeights {
    /// `weights`: `[channel][1][kernel][kernel]` as ONNX and tract hold them.
    pub fn new(
        weights: &[f32],
        bias: &[f32],
        channels: usize,
        kernel: usize,
        stride: usize,
        padding: [usize; 4],
    ) -> Self {
        assert_eq!(weights.len(), channels * kernel * kernel);
        assert_eq!(bias.len(), channels);
        assert!(kernel % 2 == 1, "odd kernel side");
        assert!(stride == 1 || stride == 2, "stride 1 or 2");
        let taps = kernel * kernel;
        let weights_by_tap = (0..taps * channels)
            .map(|i| weights[(i % channels) * taps + i / channels])
            .collect();
        Self {
            channels,
            kernel,
            stride,
            padding,
            weights: weights.to_vec(),
            weights_by_tap,
            bias: bias.to_vec(),
            activation: Activation::None,
        }
    }

    /// The same convolution followed by `activation`.
    pub fn with_activation(self, activation: Activation) -> Self {
        Self { activation, ..self }
    }

    /// Output height and width for an input of `height` x `width`.
    pub fn output_size(&self, height: usize, width: usize) -> (usize, usize) {
        let [top, left, bottom, right] = self.padding;
        let out = |length: usize, before: usize, after: usize| {
            (length + before + after).saturating_sub(self.kernel) / self.stride + 1
        };
        (out(height, top, bottom), out(width, left, right))
    }

    /// The independent parts of the output, which [`convolve`] computes in any subset: its
    /// channels (channels first) or its rows (channels last; `out_height` of them).
    pub fn parts(&self, axis: ChannelAxis, out_height: usize) -> usize {
        match axis {
            ChannelAxis::First => self.channels,
            ChannelAxis::Last => out_height,
        }
    }

    /// Output elements per part, for an input of `height` x `width`.
    pub fn part_len(&self, axis: ChannelAxis, (height, width): (usize, usize)) -> usize {
        let (out_height, out_width) = self.output_size(height, width);
        match axis {
            ChannelAxis::First => out_height * out_width,
            ChannelAxis::Last => out_width * self.channels,
        }
    }

    /// Padded rows (or columns) read for `outputs` output rows (or columns).
    fn padded_length(&self, outputs: usize) -> usize {
        self.stride * (outputs - 1) + self.kernel
    }
}

/// Convolves `input` (`[channels][height][width]`, or `[height][width][channels]` with channels
/// last) into `output`: the elements of the output parts `parts` (see
/// [`DepthwiseWeights::parts`]; the output has the input's layout and
/// [`DepthwiseWeights::output_size`]). Disjoint parts can be computed by different threads.
pub fn convolve(
    input: &[f32],
    (height, width): (usize, usize),
    axis: ChannelAxis,
    w: &DepthwiseWeights,
    parts: Range<usize>,
    output: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the feature the function is compiled for.
            return unsafe { convolve_avx512(input, (height, width), axis, w, parts, output) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above.
            return unsafe { convolve_avx2(input, (height, width), axis, w, parts, output) };
        }
    }
    convolve_with(
        input,
        (height, width),
        axis,
        w,
        parts,
        output,
        RowKernel::Portable,
    )
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn convolve_avx512(
    input: &[f32],
    size: (usize, usize),
    axis: ChannelAxis,
    w: &DepthwiseWeights,
    parts: Range<usize>,
    output: &mut [f32],
) {
    convolve_with(input, size, axis, w, parts, output, RowKernel::Avx512)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn convolve_avx2(
    input: &[f32],
    size: (usize, usize),
    axis: ChannelAxis,
    w: &DepthwiseWeights,
    parts: Range<usize>,
    output: &mut [f32],
) {
    convolve_with(input, size, axis, w, parts, output, RowKernel::Portable)
}

/// How an output row of a channels-first convolution is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowKernel {
    /// Slice loops the compiler vectorises ([`multiply_add`]).
    Portable,
    /// Sums kept in AVX-512 registers over every tap ([`row_avx512`]).
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// The whole computation; inlined into each of the per-ISA entry points above, where the
/// compiler vectorises its slice loops for that ISA.
#[inline(always)]
fn convolve_with(
    input: &[f32],
    (height, width): (usize, usize),
    axis: ChannelAxis,
    w: &DepthwiseWeights,
    parts: Range<usize>,
    output: &mut [f32],
    row_kernel: RowKernel,
) {
    let (out_height, _) = w.output_size(height, width);
    assert_eq!(
        input.len(),
        w.channels * height * width,
        "input of the declared size"
    );
    assert!(
        parts.start <= parts.end && parts.end <= w.parts(axis, out_height),
        "parts {parts:?} of the output"
    );
    assert_eq!(
        output.len(),
        parts.len() * w.part_len(axis, (height, width)),
        "output of the parts' size"
    );
    match (axis, w.stride) {
        (ChannelAxis::Last, _) => channels_last(input, (height, width), w, parts, output),
        (ChannelAxis::First, 1) => {
            channels_first_stride_1(input, (height, width), w, parts, output, row_kernel)
        }
        (ChannelAxis::First, _) => {
            channels_first_stride_2(input, (height, width), w, parts, output, row_kernel)
        }
    }
}

/// `a += s * weight` over two slices. A multiply and an add rather than `mul_add`: the portable
/// build has no FMA instruction, and `mul_add` would call the C library's `fmaf` per element.
/// (Keeping 64 columns' sums in registers over all taps in this portable code was slower: 22.4
/// against 17.4 ms for the detector's depthwise convolutions in `op_profile`; written with
/// AVX-512 intrinsics, [`row_avx512`], it is faster, see there.)
#[inline(always)]
fn multiply_add(acc: &mut [f32], source: &[f32], weight: f32) {
    for (a, &s) in acc.iter_mut().zip(source) {
        *a += s * weight;
    }
}

#[inline(always)]
fn channels_first_stride_1(
    input: &[f32],
    (height, width): (usize, usize),
    w: &DepthwiseWeights,
    channels: Range<usize>,
    output: &mut [f32],
    row_kernel: RowKernel,
) {
    let (out_height, out_width) = w.output_size(height, width);
    let k = w.kernel;
    let [top, left, _, _] = w.padding;
    let padded_width = w.padded_length(out_width);
    let padded_height = w.padded_length(out_height);
    let mut padded = vec![0f32; padded_height * padded_width];
    let out_planes = output.chunks_exact_mut(out_height * out_width);
    for (channel, out_plane) in channels.zip(out_planes) {
        let plane = &input[channel * height * width..][..height * width];
        for (row, padded_row) in padded.chunks_exact_mut(padded_width).enumerate() {
            padded_row.fill(0.0);
            let Some(y) = row.checked_sub(top).filter(|&y| y < height) else {
                continue;
            };
            let columns = width.min(padded_width.saturating_sub(left));
            padded_row[left..][..columns].copy_from_slice(&plane[y * width..][..columns]);
        }
        let weights = &w.weights[channel * k * k..][..k * k];
        for (oy, out_row) in out_plane.chunks_exact_mut(out_width).enumerate() {
            let rows = &padded[oy * padded_width..][..k * padded_width];
            match row_kernel {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `Avx512` is chosen only by `convolve_avx512`, which runs on CPUs with
                // the feature.
                RowKernel::Avx512 => unsafe {
                    let tap = |ky: usize, kx: usize| &rows[ky * padded_width + kx..];
                    row_avx512(tap, k, weights, w.bias[channel], w.activation, out_row)
                },
                RowKernel::Portable => {
                    out_row.fill(w.bias[channel]);
                    for (ky, row) in rows.chunks_exact(padded_width).enumerate() {
                        for kx in 0..k {
                            multiply_add(out_row, &row[kx..][..out_width], weights[ky * k + kx]);
                        }
                    }
                    w.activation.apply_to_all(out_row);
                }
            }
        }
    }
}

/// Vectors of 16 output columns whose sums [`row_avx512`] keeps in registers at once.
#[cfg(target_arch = "x86_64")]
const ROW_VECTORS: usize = 4;

/// One output row of a convolution, channels first: `tap(ky, kx)` is the input that tap reads
/// for the row, from its first output column on (at least `out_row.len()` values; a padded row
/// at stride 1, a padded row's even or odd columns at stride 2). Blocks of 64 columns keep their
/// sums in four registers over all `k * k` taps and are stored once, activation applied: one
/// load per multiply-add, where the slice loops load and store the sums once per tap.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn row_avx512<'a>(
    tap: impl Fn(usize, usize) -> &'a [f32],
    k: usize,
    weights: &[f32],
    bias: f32,
    activation: Activation,
    out_row: &mut [f32],
) {
    use std::arch::x86_64::*;
    let out_width = out_row.len();
    assert_eq!(weights.len(), k * k, "k x k weights");
    for first in (0..out_width).step_by(16 * ROW_VECTORS) {
        let lanes = (out_width - first).min(16 * ROW_VECTORS);
        let masks: [__mmask16; ROW_VECTORS] = std::array::from_fn(|v| {
            let valid = lanes.saturating_sub(16 * v).min(16);
            ((1u32 << valid) - 1) as __mmask16
        });
        let mut sums = [_mm512_set1_ps(bias); ROW_VECTORS];
        for ky in 0..k {
            for kx in 0..k {
                let weight = _mm512_set1_ps(weights[ky * k + kx]);
                let source = &tap(ky, kx)[..out_width][first..];
                for (v, sum) in sums.iter_mut().enumerate() {
                    // SAFETY: the mask keeps the load to the `lanes - 16 v` columns of
                    // `source` that exist.
                    let x = unsafe {
                        _mm512_maskz_loadu_ps(masks[v], source.as_ptr().wrapping_add(16 * v))
                    };
                    *sum = _mm512_fmadd_ps(x, weight, *sum);
                }
            }
        }
        let destination = out_row[first..].as_mut_ptr();
        for (v, sum) in sums.into_iter().enumerate() {
            // SAFETY: as for the loads, `lanes - 16 v` columns of the row from `first`.
            unsafe {
                _mm512_mask_storeu_ps(
                    destination.wrapping_add(16 * v),
                    masks[v],
                    activation.apply_avx512(sum),
                )
            };
        }
    }
}

#[inline(always)]
fn channels_first_stride_2(
    input: &[f32],
    (height, width): (usize, usize),
    w: &DepthwiseWeights,
    channels: Range<usize>,
    output: &mut [f32],
    row_kernel: RowKernel,
) {
    let (out_height, out_width) = w.output_size(height, width);
    let k = w.kernel;
    let [top, left, _, _] = w.padding;
    // Output column j reads padded columns up to 2 j + k - 1: even and odd ones up to index
    // j + k / 2.
    let half = out_width + k / 2;
    // Per padded input row: its even columns, then its odd ones, `half` each (zero past the end).
    let padded_height = w.padded_length(out_height);
    let mut split = vec![0f32; padded_height * 2 * half];
    let out_planes = output.chunks_exact_mut(out_height * out_width);
    for (channel, out_plane) in channels.zip(out_planes) {
        let plane = &input[channel * height * width..][..height * width];
        split.fill(0.0);
        for row in 0..padded_height {
            let Some(y) = row.checked_sub(top).filter(|&y| y < height) else {
                continue;
            };
            let (even, odd) = split[row * 2 * half..][..2 * half].split_at_mut(half);
            split_row(&plane[y * width..][..width], left, even, odd);
        }
        let weights = &w.weights[channel * k * k..][..k * k];
        for (oy, out_row) in out_plane.chunks_exact_mut(out_width).enumerate() {
            let tap = |ky: usize, kx: usize| {
                let row = &split[(2 * oy + ky) * 2 * half..][..2 * half];
                let (even, odd) = row.split_at(half);
                let columns = if kx.is_multiple_of(2) { even } else { odd };
                &columns[kx / 2..]
            };
            match row_kernel {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as at stride 1.
                RowKernel::Avx512 => unsafe {
                    row_avx512(tap, k, weights, w.bias[channel], w.activation, out_row)
                },
                RowKernel::Portable => {
                    out_row.fill(w.bias[channel]);
                    for ky in 0..k {
                        for kx in 0..k {
                            let source = &tap(ky, kx)[..out_width];
                            multiply_add(out_row, source, weights[ky * k + kx]);
                        }
                    }
                    w.activation.apply_to_all(out_row);
                }
            }
        }
    }
}

/// Channels last: the padded input rows the output rows `rows` read are copied once (with zero
/// rows and columns around the input), then each output position adds, per tap, its input
/// position's channels times the tap's weights.
#[inline(always)]
fn channels_last(
    input: &[f32],
    (height, width): (usize, usize),
    w: &DepthwiseWeights,
    rows: Range<usize>,
    output: &mut [f32],
) {
    let (_, out_width) = w.output_size(height, width);
    if rows.is_empty() {
        return;
    }
    let (c, k, stride) = (w.channels, w.kernel, w.stride);
    let [top, left, _, _] = w.padding;
    let padded_width = w.padded_length(out_width);
    // Padded rows `first_padded..` are read; slab row `r` is padded row `first_padded + r`.
    let first_padded = stride * rows.start;
    let slab_height = w.padded_length(rows.len());
    let mut slab = vec![0f32; slab_height * padded_width * c];
    let columns = width.min(padded_width.saturating_sub(left));
    for (r, slab_row) in slab.chunks_exact_mut(padded_width * c).enumerate() {
        let Some(y) = (first_padded + r).checked_sub(top).filter(|&y| y < height) else {
            continue;
        };
        slab_row[left * c..][..columns * c].copy_from_slice(&input[y * width * c..][..columns * c]);
    }
    for (r, out_row) in output.chunks_exact_mut(out_width * c).enumerate() {
        for pixel in out_row.chunks_exact_mut(c) {
            pixel.copy_from_slice(&w.bias);
        }
        for ky in 0..k {
            let row = &slab[(stride * r + ky) * padded_width * c..][..padded_width * c];
            for kx in 0..k {
                let weights = &w.weights_by_tap[(ky * k + kx) * c..][..c];
                for (ox, pixel) in out_row.chunks_exact_mut(c).enumerate() {
                    let source = &row[(stride * ox + kx) * c..][..c];
                    for ((a, &s), &weight) in pixel.iter_mut().zip(source).zip(weights) {
                        *a += s * weight;
                    }
                }
            }
        }
        w.activation.apply_to_all(out_row);
    }
}

/// Splits one input row, seen with `left` zero columns before it, into its even and odd padded
/// columns: padded column `c` is `source[c - left]`. Pairs of source values go one to each side,
/// which the compiler vectorises.
#[inline(always)]
fn split_row(source: &[f32], left: usize, even: &mut [f32], odd: &mut [f32]) {
    // Source values at the same parity as `left` land in even columns, from index `left / 2`
    // on; the value after each of them lands in the odd column of the same index.
    let parity = left % 2;
    if parity == 1 && !source.is_empty() {
        odd[(left - 1) / 2] = source[0];
    }
    let first = left.div_ceil(2);
    let rest = source.get(parity..).unwrap_or(&[]);
    let mut pairs = rest.chunks_exact(2);
    let room = even.len().min(odd.len()).saturating_sub(first);
    for (k, pair) in (&mut pairs).take(room).enumerate() {
        even[first + k] = pair[0];
        odd[first + k] = pair[1];
    }
    if let [last] = pairs.remainder()
        && let Some(slot) = even.get_mut(first + rest.len() / 2)
    {
        *slot = *last;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, one output at a time.
    fn reference(
        input: &[f32],
        (h, wd): (usize, usize),
        axis: ChannelAxis,
        w: &DepthwiseWeights,
    ) -> Vec<f32> {
        let (oh, ow) = w.output_size(h, wd);
        let (k, s, channels) = (w.kernel, w.stride, w.channels);
        let [top, left, _, _] = w.padding;
        let input_at = |c: usize, y: usize, x: usize| match axis {
            ChannelAxis::First => input[(c * h + y) * wd + x],
            ChannelAxis::Last => input[(y * wd + x) * channels + c],
        };
        let mut out = vec![0f32; channels * oh * ow];
        for c in 0..channels {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut sum = f64::from(w.bias[c]);
                    for ky in 0..k {
                        for kx in 0..k {
                            let y = (s * oy + ky) as isize - top as isize;
                            let x = (s * ox + kx) as isize - left as isize;
                            if (0..h as isize).contains(&y) && (0..wd as isize).contains(&x) {
                                sum += f64::from(w.weights[(c * k + ky) * k + kx])
                                    * f64::from(input_at(c, y as usize, x as usize));
                            }
                        }
                    }
                    let at = match axis {
                        ChannelAxis::First => (c * oh + oy) * ow + ox,
                        ChannelAxis::Last => (oy * ow + ox) * channels + c,
                    };
                    out[at] = w.activation.apply(sum as f32);
                }
            }
        }
        out
    }

    #[test]
    fn matches_the_definition() {
        let mut seed = 3u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed % 2001) as f32 / 1000.0 - 1.0
        };
        let activations = [
            Activation::None,
            Activation::Relu,
            Activation::HardSwish {
                scale: 1.0 / 6.0,
                shift: 3.0,
                cap: 6.0,
            },
        ];
        // TensorFlow's "same" padding at stride 2 puts the extra row and column at the end.
        for (case_index, (channels, h, wd, k, stride, padding)) in [
            (3, 16, 16, 3, 2, [0, 0, 1, 1]),
            (5, 17, 23, 3, 2, [1, 1, 1, 1]),
            (4, 32, 20, 5, 2, [1, 1, 2, 2]),
            (2, 9, 40, 5, 2, [2, 2, 2, 2]),
            (2, 7, 150, 3, 2, [0, 0, 1, 1]),
            (16, 12, 12, 3, 1, [1, 1, 1, 1]),
            (7, 13, 29, 5, 1, [2, 2, 2, 2]),
            (20, 5, 3, 3, 1, [1, 1, 1, 1]),
            (3, 10, 11, 3, 1, [0, 0, 0, 0]),
            (24, 9, 8, 5, 1, [2, 1, 2, 3]),
            // Rows of more than one block of 64 columns, the last one partial.
            (3, 6, 70, 3, 1, [1, 1, 1, 1]),
            (2, 5, 131, 5, 1, [2, 2, 2, 2]),
        ]
        .into_iter()
        .enumerate()
        {
            let weights: Vec<f32> = (0..channels * k * k).map(|_| next()).collect();
            let bias: Vec<f32> = (0..channels).map(|_| next()).collect();
            let input: Vec<f32> = (0..channels * h * wd).map(|_| next()).collect();
            // Each case with one activation, in turn.
            let activation = activations[case_index % activations.len()];
            let w = DepthwiseWeights::new(&weights, &bias, channels, k, stride, padding)
                .with_activation(activation);
            let (oh, ow) = w.output_size(h, wd);
            for axis in [ChannelAxis::First, ChannelAxis::Last] {
                let expected = reference(&input, (h, wd), axis, &w);
                let case = format!(
                    "{channels}x{h}x{wd} k{k} s{stride} {padding:?} {axis:?} {activation:?}"
                );
                let parts = w.parts(axis, oh);
                let mut out = vec![f32::NAN; channels * oh * ow];
                convolve(&input, (h, wd), axis, &w, 0..parts, &mut out);
                for (i, (a, b)) in out.iter().zip(&expected).enumerate() {
                    assert!((a - b).abs() < 1e-4, "{case} #{i}: {a} vs {b}");
                }
                let mut portable = vec![f32::NAN; channels * oh * ow];
                let rows = RowKernel::Portable;
                convolve_with(&input, (h, wd), axis, &w, 0..parts, &mut portable, rows);
                for (a, b) in portable.iter().zip(&expected) {
                    assert!((a - b).abs() < 1e-4, "{case}: portable path");
                }
                // In parts of 1, 2 and 3 (as threads compute it), the output is the same, bit
                // for bit.
                let part_len = w.part_len(axis, (h, wd));
                for per_chunk in [1, 2, 3] {
                    let mut pieces = vec![f32::NAN; channels * oh * ow];
                    for (index, chunk) in pieces.chunks_mut(per_chunk * part_len).enumerate() {
                        let first = index * per_chunk;
                        let count = chunk.len() / part_len;
                        convolve(&input, (h, wd), axis, &w, first..first + count, chunk);
                    }
                    assert_eq!(
                        pieces.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        out.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        "{case}: in parts of {per_chunk}"
                    );
                }
            }
        }
    }

    #[test]
    fn output_size_follows_the_stride() {
        let w = DepthwiseWeights::new(&[0.0; 9], &[0.0], 1, 3, 2, [0, 0, 1, 1]);
        assert_eq!(w.output_size(256, 256), (128, 128));
        let w = DepthwiseWeights::new(&[0.0; 25], &[0.0], 1, 5, 2, [1, 1, 2, 2]);
        assert_eq!(w.output_size(128, 64), (64, 32));
        let w = DepthwiseWeights::new(&[0.0; 9], &[0.0], 1, 3, 1, [1, 1, 1, 1]);
        assert_eq!(w.output_size(256, 100), (256, 100));
    }
}
