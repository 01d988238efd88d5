//! A 2x2 max pooling with stride 2 and no padding, channels first, float32: CSRNet's three
//! poolings.
//!
//! Why our own: tract's pooling visits the window of each output through its generic
//! geometry and ran CSRNet's first pooling (64 channels of 576x448) at about 2 GB/s, 7.5 % of a
//! tile's time with our convolutions (BENCHMARKS.md). Here each output row is the maximum of two
//! input rows, then of each pair of neighbours: loops over contiguous slices that the compiler
//! vectorises, compiled for AVX-512, for AVX2 and plain, chosen at run time.

/// Output height and width: each halved, rounded down (an odd last row or column is dropped,
/// as a pooling without padding does).
pub fn output_size(height: usize, width: usize) -> (usize, usize) {
    (height / 2, width / 2)
}

vectorised! {
    /// Pools channels `channels` of `input` (`[channel][height][width]`) into the same channels
    /// of `output` (`[channel][height / 2][width / 2]`), so that callers can split the channels
    /// between threads.
    ///
    /// # Panics
    /// If the buffers are not of these sizes.
    pub fn pool(
        input: &[f32],
        size: (usize, usize),
        channels: std::ops::Range<usize>,
        output: &mut [f32],
    ) => pool_portable
}

#[inline(always)]
fn pool_portable(
    input: &[f32],
    (height, width): (usize, usize),
    channels: std::ops::Range<usize>,
    output: &mut [f32],
) {
    let (out_height, out_width) = output_size(height, width);
    let (area, out_area) = (height * width, out_height * out_width);
    assert!(
        input.len().is_multiple_of(area.max(1)),
        "input of whole planes"
    );
    assert!(
        channels.end * area <= input.len() && output.len() == channels.len() * out_area,
        "input and output of the declared sizes"
    );
    let mut rows = vec![0f32; 2 * out_width];
    for (channel, out_plane) in channels.zip(output.chunks_exact_mut(out_area.max(1))) {
        let plane = &input[channel * area..][..area];
        for (y, out_row) in out_plane.chunks_exact_mut(out_width.max(1)).enumerate() {
            let top = &plane[2 * y * width..][..2 * out_width];
            let bottom = &plane[(2 * y + 1) * width..][..2 * out_width];
            for ((m, &a), &b) in rows.iter_mut().zip(top).zip(bottom) {
                *m = a.max(b);
            }
            for (o, pair) in out_row.iter_mut().zip(rows.chunks_exact(2)) {
                *o = pair[0].max(pair[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_maximum_of_each_window() {
        let (channels, h, w) = (3, 5, 7);
        let input: Vec<f32> = (0..channels * h * w)
            .map(|i| ((i * 37) % 101) as f32 - 50.0)
            .collect();
        let (oh, ow) = output_size(h, w);
        assert_eq!((oh, ow), (2, 3));
        let mut expected = Vec::new();
        for c in 0..channels {
            for y in 0..oh {
                for x in 0..ow {
                    let at = |dy: usize, dx: usize| input[(c * h + 2 * y + dy) * w + 2 * x + dx];
                    expected.push(at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1)));
                }
            }
        }
        let mut whole = vec![f32::NAN; channels * oh * ow];
        pool(&input, (h, w), 0..channels, &mut whole);
        assert_eq!(whole, expected);
        // The channels split in two calls write the same.
        let mut split = vec![f32::NAN; channels * oh * ow];
        let (first, second) = split.split_at_mut(oh * ow);
        pool(&input, (h, w), 0..1, first);
        pool(&input, (h, w), 1..channels, second);
        assert_eq!(split, expected);
        let mut portable = vec![f32::NAN; channels * oh * ow];
        pool_portable(&input, (h, w), 0..channels, &mut portable);
        assert_eq!(portable, expected);
    }
}
