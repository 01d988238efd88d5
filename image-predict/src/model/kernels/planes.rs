//! Operations on whole planes of channels-first images, float32: the detector's 2x linear
//! upsamplings and the sums behind its global means (its squeeze-and-excite blocks and its
//! head).
//!
//! Why our own: tract's `Resize` resamples one axis at a time and one output element at a time;
//! its cheapest equivalent in tract's own operators (slices, means and interleaving concats,
//! `model/rewrites.rs`) still took about 3 ms of the detector's 31 with two threads, all of it
//! on one, as tract's `Concat` and `Slice` do not split between threads. tract's `Reduce<Sum>`
//! over a plane ran slower on two threads than on one. Both are memory-bound loops: here they are
//! plain loops over contiguous slices that the compiler vectorises (compiled for AVX-512, AVX2
//! and the baseline, chosen at run time), and the caller splits the planes between threads.

vectorised! {
    /// Doubles the height and width of each plane of `input` (`[plane][height][width]`) into
    /// `output` (`[plane][2 height][2 width]`) by linear interpolation with `asymmetric`
    /// coordinates (ONNX `Resize` with `mode = linear`,
    /// `coordinate_transformation_mode = asymmetric`, scales 2): along each axis, output `2i` is
    /// input `i` and output `2i + 1` the mean of inputs `i` and `i + 1`, the last input
    /// repeated past the edge.
    ///
    /// # Panics
    /// If a plane is empty or the buffers are not of whole planes of these sizes.
    pub fn upsample_2x_linear(
        input: &[f32],
        height: usize,
        width: usize,
        output: &mut [f32],
    ) => upsample_portable
}

#[inline(always)]
fn upsample_portable(input: &[f32], height: usize, width: usize, output: &mut [f32]) {
    let area = height * width;
    assert!(area > 0, "planes of at least one value");
    assert!(
        input.len().is_multiple_of(area) && output.len() == 4 * input.len(),
        "input of whole planes, output of the doubled planes"
    );
    let out_width = 2 * width;
    for (plane, out) in input
        .chunks_exact(area)
        .zip(output.chunks_exact_mut(4 * area))
    {
        for (i, row) in plane.chunks_exact(width).enumerate() {
            double_row(row, &mut out[2 * i * out_width..][..out_width]);
            if i > 0 {
                // Row 2i - 1 lies between rows 2i - 2 and 2i, both written now.
                let (above, rest) = out[(2 * i - 2) * out_width..].split_at_mut(out_width);
                let (between, below) = rest.split_at_mut(out_width);
                for ((m, &a), &b) in between
                    .iter_mut()
                    .zip(above.iter())
                    .zip(&below[..out_width])
                {
                    *m = (a + b) * 0.5;
                }
            }
        }
        // Past the last row is the last row again: the row after it is a copy.
        let (written, last) = out.split_at_mut((2 * height - 1) * out_width);
        last.copy_from_slice(&written[(2 * height - 2) * out_width..]);
    }
}

/// `row` doubled into `out`: each value followed by the mean of it and the next, the last value
/// twice.
#[inline(always)]
fn double_row(row: &[f32], out: &mut [f32]) {
    let (pairs, last_pair) = out.split_at_mut(out.len() - 2);
    for (pair, neighbours) in pairs.chunks_exact_mut(2).zip(row.windows(2)) {
        pair[0] = neighbours[0];
        pair[1] = (neighbours[0] + neighbours[1]) * 0.5;
    }
    let last = row[row.len() - 1];
    last_pair.copy_from_slice(&[last, last]);
}

vectorised! {
    /// Sums each of the `output.len()` consecutive blocks of `input` (of equal length) into
    /// `output`.
    ///
    /// # Panics
    /// If `input` is not of whole blocks (`output` empty with `input` not).
    pub fn sum_blocks(input: &[f32], output: &mut [f32]) => sum_blocks_portable
}

/// Lanes of the running sums: one AVX-512 vector, which the compiler keeps in registers.
const LANES: usize = 16;

#[inline(always)]
fn sum_blocks_portable(input: &[f32], output: &mut [f32]) {
    if output.is_empty() {
        assert!(input.is_empty(), "input of whole blocks");
        return;
    }
    assert!(
        input.len().is_multiple_of(output.len()),
        "input of whole blocks"
    );
    let block = input.len() / output.len();
    if block == 0 {
        output.fill(0.0);
        return;
    }
    for (sum, values) in output.iter_mut().zip(input.chunks_exact(block)) {
        let mut lanes = [0f32; LANES];
        let mut chunks = values.chunks_exact(LANES);
        for chunk in &mut chunks {
            for (lane, &v) in lanes.iter_mut().zip(chunk) {
                *lane += v;
            }
        }
        *sum = lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::pseudo_random;

    /// The definition, one output value at a time: the four input values around the output's
    /// position in input coordinates (`asymmetric`: output `o` is at input `o / 2`), weighted.
    fn upsampled_at(plane: &[f32], (height, width): (usize, usize), y: usize, x: usize) -> f32 {
        let axis = |o: usize, len: usize| {
            let low = (o / 2).min(len - 1);
            let high = (low + 1).min(len - 1);
            let weight = if o % 2 == 1 { 0.5 } else { 0.0 };
            (low, high, weight)
        };
        let (y0, y1, wy) = axis(y, height);
        let (x0, x1, wx) = axis(x, width);
        let at = |y: usize, x: usize| plane[y * width + x];
        (1.0 - wy) * ((1.0 - wx) * at(y0, x0) + wx * at(y0, x1))
            + wy * ((1.0 - wx) * at(y1, x0) + wx * at(y1, x1))
    }

    #[test]
    fn upsampling_matches_the_definition() {
        let mut seed = 7;
        for (planes, height, width) in [(3, 5, 7), (2, 1, 1), (1, 1, 9), (2, 6, 1), (4, 16, 33)] {
            let input = pseudo_random(planes * height * width, &mut seed);
            let mut output = vec![f32::NAN; 4 * input.len()];
            upsample_2x_linear(&input, height, width, &mut output);
            let mut portable = vec![f32::NAN; output.len()];
            upsample_portable(&input, height, width, &mut portable);
            assert_eq!(output, portable, "the vectorised and plain loops agree");
            for p in 0..planes {
                let plane = &input[p * height * width..][..height * width];
                for y in 0..2 * height {
                    for x in 0..2 * width {
                        let got = output[(p * 2 * height + y) * 2 * width + x];
                        let expected = upsampled_at(plane, (height, width), y, x);
                        assert!(
                            (got - expected).abs() <= 1e-6,
                            "{planes}x{height}x{width}, plane {p} at ({y}, {x}): {got}, not {expected}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn block_sums_match_a_plain_sum() {
        let mut seed = 3;
        for (blocks, block) in [(5, 1), (3, 15), (4, 16), (2, 1000), (1, 4096)] {
            let input = pseudo_random(blocks * block, &mut seed);
            let mut sums = vec![f32::NAN; blocks];
            sum_blocks(&input, &mut sums);
            for (b, &sum) in sums.iter().enumerate() {
                let expected: f64 = input[b * block..][..block].iter().map(|&v| v as f64).sum();
                assert!(
                    (sum as f64 - expected).abs() <= 1e-4,
                    "{blocks} blocks of {block}, block {b}: {sum}, not {expected}"
                );
            }
        }
    }
}
