//! A 3x3 convolution with stride 1 and "same" padding (the padding equals the dilation), NCHW
//! float32 in and out: CSRNet's 3x3 convolutions, which are 91 % of its time in tract. Its
//! products are taken either in bfloat16, summed in float32 by AVX-512's `vdpbf16ps`
//! ([`Products::Bf16`]), or in float32 by AVX-512 FMAs ([`Products::F32`]): the faster of the two
//! on the CPU it runs on, measured once per process ([`fastest_products`]).
//!
//! Why our own: tract's float32 matrix products ran CSRNet's convolutions at 28-37 GMAC/s on one
//! core of the machine this was first measured on, where its float32 FMA peak is about 55 and
//! its bfloat16 dot-product peak about 110 (`vdpbf16ps` does two multiply-adds per lane); the
//! bfloat16 products ran the same layers at 80-100 GMAC/s there. Other hosts of the same kind
//! of virtual machine execute `vdpbf16ps` at half that rate and FMAs at twice it (onnxruntime's
//! float32 CSRNet twice as fast as our bfloat16 one on such a host, BENCHMARKS.md), hence the
//! choice measured at run time. bfloat16 keeps float32's range and 8 bits of mantissa; each
//! product's operands are rounded to nearest, every sum stays float32 (the "fast math" float32
//! of oneDNN on AMX, and tract's own AMX-BF16 kernel).
//!
//! How: the input is converted once into planes of packed words, zero-padded by the dilation on
//! every side, each a flat plane of padded rows: a word is a bfloat16 pair of channels, or one
//! float32 channel. An output position `n = y * padded_width + x` of the padded grid then reads,
//! for tap `(dy, dx)`, the input at `n + dy * dilation * padded_width + dx * dilation`: every tap
//! is one constant shift of the whole plane, and the convolution is nine shifted matrix products
//! over contiguous memory (the positions past a row's end are computed and thrown away:
//! 2 x dilation per row). The micro-kernel keeps [`MR`] output channels x [`NB`] positions in 24
//! registers and, per tap and plane, loads three 16-position vectors and broadcasts each output
//! channel's weight word.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::NV;
pub use super::{MR, NB, OutputPlanes};

/// Weights of a group of output-channel blocks are kept to about this size, so that they stay in
/// the core's L2 cache (1 MiB here) while every block of positions passes them.
const WEIGHT_GROUP_BYTES: usize = 512 * 1024;

/// The arithmetic of the products (`--conv3x3-products`; by default the faster one, measured).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Products {
    /// Operands rounded to bfloat16, two channels per word (AVX-512 F, BW and BF16).
    Bf16,
    /// Float32 (AVX-512 F).
    F32,
}

impl Products {
    /// Whether this CPU runs the kernel with these products, checked at run time.
    pub fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            let f = std::arch::is_x86_feature_detected!("avx512f");
            match self {
                Products::F32 => f,
                Products::Bf16 => {
                    f && std::arch::is_x86_feature_detected!("avx512bw")
                        && std::arch::is_x86_feature_detected!("avx512bf16")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Input channels per packed word.
    fn channels_per_word(self) -> usize {
        match self {
            Products::Bf16 => 2,
            Products::F32 => 1,
        }
    }
}

/// The faster products this CPU runs, or `None` when it runs neither: measured once per
/// process on a layer of CSRNet's shape (64 -> 64 channels, 56 x 72, dilation 2), the best of
/// three runs of each (a few tens of milliseconds, once).
pub fn fastest_products() -> Option<Products> {
    static FASTEST: std::sync::OnceLock<Option<Products>> = std::sync::OnceLock::new();
    *FASTEST.get_or_init(|| {
        let candidates: Vec<Products> = [Products::Bf16, Products::F32]
            .into_iter()
            .filter(|p| p.supported())
            .collect();
        if candidates.len() < 2 {
            return candidates.first().copied();
        }
        let (c, k, h, w) = (64, 64, 56, 72);
        let input: Vec<f32> = (0..c * h * w)
            .map(|i| (i % 13) as f32 * 0.1 - 0.6)
            .collect();
        let weights: Vec<f32> = (0..k * c * 9)
            .map(|i| (i % 7) as f32 * 0.01 - 0.03)
            .collect();
        let bias = vec![0.1; k];
        let g = Geometry::new(h, w, 2);
        let mut out = vec![0f32; k * h * w];
        let timed = |products: Products, out: &mut [f32]| {
            let packed_weights = PackedWeights::new(&weights, &bias, k, c, products);
            (0..3)
                .map(|_| {
                    let started = std::time::Instant::now();
                    let packed = pack_input(&input, c, &g, products);
                    convolve(
                        &packed,
                        &packed_weights,
                        &g,
                        true,
                        0..position_blocks(&g),
                        &OutputPlanes::new(out),
                    );
                    started.elapsed()
                })
                .min()
                .unwrap_or_default()
        };
        let bf16 = timed(Products::Bf16, &mut out);
        let f32 = timed(Products::F32, &mut out);
        let fastest = if bf16 < f32 {
            Products::Bf16
        } else {
            Products::F32
        };
        tracing::info!(
            bf16_ms = bf16.as_secs_f64() * 1e3,
            f32_ms = f32.as_secs_f64() * 1e3,
            chosen = ?fastest,
            "3x3 convolution products measured on this CPU"
        );
        Some(fastest)
    })
}

/// bfloat16 bits of `value`, rounded to nearest even as `vcvtneps2bf16` rounds.
pub fn bf16_bits(value: f32) -> u16 {
    let bits = value.to_bits();
    if value.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let lsb = (bits >> 16) & 1;
    ((bits + 0x7fff + lsb) >> 16) as u16
}

/// The convolution's weights in the micro-kernel's order, and its bias.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedWeights {
    pub out_channels: usize,
    pub in_channels: usize,
    pub products: Products,
    /// `[block of MR outputs][tap][word][MR]`: with bfloat16 products, two weights (channels 2p
    /// and 2p + 1) per word; with float32, one; zero past the last channel.
    data: Vec<u32>,
    bias: Vec<f32>,
}

impl PackedWeights {
    /// `weights`: `[out][in][3][3]` float32, `bias`: one per output channel.
    pub fn new(
        weights: &[f32],
        bias: &[f32],
        out_channels: usize,
        in_channels: usize,
        products: Products,
    ) -> Self {
        assert_eq!(weights.len(), out_channels * in_channels * 9, "3x3 weights");
        assert_eq!(bias.len(), out_channels, "one bias per output channel");
        let blocks = out_channels.div_ceil(MR);
        let words = in_channels.div_ceil(products.channels_per_word());
        let mut data = vec![0u32; blocks * 9 * words * MR];
        for block in 0..blocks {
            for tap in 0..9 {
                for word in 0..words {
                    for m in 0..MR {
                        let out = block * MR + m;
                        if out >= out_channels {
                            continue;
                        }
                        let weight = |channel: usize| {
                            if channel < in_channels {
                                weights[(out * in_channels + channel) * 9 + tap]
                            } else {
                                0.0
                            }
                        };
                        data[((block * 9 + tap) * words + word) * MR + m] = match products {
                            Products::Bf16 => {
                                u32::from(bf16_bits(weight(2 * word)))
                                    | (u32::from(bf16_bits(weight(2 * word + 1))) << 16)
                            }
                            Products::F32 => weight(word).to_bits(),
                        };
                    }
                }
            }
        }
        Self {
            out_channels,
            in_channels,
            products,
            data,
            bias: bias.to_vec(),
        }
    }

    /// Packed words per input position: channel pairs, or channels.
    fn words(&self) -> usize {
        self.in_channels.div_ceil(self.products.channels_per_word())
    }

    fn panel_len(&self) -> usize {
        9 * self.words() * MR
    }
}

/// Where a `height` x `width` input with `dilation` lies in the packed planes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub height: usize,
    pub width: usize,
    pub dilation: usize,
    /// Row length of the padded planes: `width + 2 * dilation`.
    padded_width: usize,
    /// Words per packed plane, with room for the last shifted vector reads.
    plane: usize,
    /// Output positions computed: `height * padded_width`, rounded up to [`NB`].
    positions: usize,
}

impl Geometry {
    pub fn new(height: usize, width: usize, dilation: usize) -> Self {
        let padded_width = width + 2 * dilation;
        let positions = (height * padded_width).div_ceil(NB) * NB;
        let largest_shift = 2 * dilation * padded_width + 2 * dilation;
        let mut plane = (positions + largest_shift).div_ceil(16) * 16;
        // An odd number of cache lines between planes, so that the same row of consecutive
        // channel pairs does not fall into the same L1 sets (planes a multiple of 4 KiB apart
        // made the 448x448 layer a third slower).
        if (plane / 16).is_multiple_of(2) {
            plane += 16;
        }
        Self {
            height,
            width,
            dilation,
            padded_width,
            plane,
            positions,
        }
    }
}

/// The input, NCHW float32 of `channels` x geometry, as zero-padded planes of packed words:
/// bfloat16 channel pairs, or float32 channels.
pub fn pack_input(input: &[f32], channels: usize, g: &Geometry, products: Products) -> Vec<u32> {
    let area = g.height * g.width;
    assert_eq!(input.len(), channels * area, "input of the declared shape");
    if products == Products::F32 {
        let mut packed = vec![0u32; channels * g.plane];
        for (plane, source) in packed
            .chunks_exact_mut(g.plane)
            .zip(input.chunks_exact(area))
        {
            for (y, source_row) in source.chunks_exact(g.width).enumerate() {
                let start = (y + g.dilation) * g.padded_width + g.dilation;
                for (word, &value) in plane[start..][..g.width].iter_mut().zip(source_row) {
                    *word = value.to_bits();
                }
            }
        }
        return packed;
    }
    let pairs = channels.div_ceil(2);
    let mut packed = vec![0u32; pairs * g.plane];
    for (pair, plane) in packed.chunks_exact_mut(g.plane).enumerate() {
        let even = &input[2 * pair * area..][..area];
        let odd = (2 * pair + 1 < channels).then(|| &input[(2 * pair + 1) * area..][..area]);
        for y in 0..g.height {
            let start = (y + g.dilation) * g.padded_width + g.dilation;
            let row = &mut plane[start..start + g.width];
            let even = &even[y * g.width..][..g.width];
            match odd {
                Some(odd) => pack_row(row, even, &odd[y * g.width..][..g.width]),
                None => {
                    for (packed, &value) in row.iter_mut().zip(even) {
                        *packed = u32::from(bf16_bits(value));
                    }
                }
            }
        }
    }
    packed
}

fn pack_row(row: &mut [u32], even: &[f32], odd: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if Products::Bf16.supported() {
        // SAFETY: the CPU has the features the function is compiled for.
        unsafe { pack_row_avx512(row, even, odd) };
        return;
    }
    for ((packed, &a), &b) in row.iter_mut().zip(even).zip(odd) {
        *packed = u32::from(bf16_bits(a)) | (u32::from(bf16_bits(b)) << 16);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pack_row_avx512(row: &mut [u32], even: &[f32], odd: &[f32]) {
    let n = row.len();
    // `vcvtne2ps2bf16` puts the 16 even-channel values in the low half and the odd ones in the
    // high half; this word permutation interleaves them: even 0, odd 0, even 1, odd 1, ...
    let order: [u16; 32] = std::array::from_fn(|i| (i / 2 + 16 * (i % 2)) as u16);
    let mut x = 0;
    // SAFETY: every load and store is of 16 elements at x with x + 16 <= n, the length of all
    // three slices.
    unsafe {
        let order = _mm512_loadu_si512(order.as_ptr().cast());
        while x + 16 <= n {
            let a = _mm512_loadu_ps(even.as_ptr().add(x));
            let b = _mm512_loadu_ps(odd.as_ptr().add(x));
            let halves: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(b, a));
            let pairs = _mm512_permutexvar_epi16(order, halves);
            _mm512_storeu_si512(row.as_mut_ptr().add(x).cast(), pairs);
            x += 16;
        }
    }
    for x in x..n {
        row[x] = u32::from(bf16_bits(even[x])) | (u32::from(bf16_bits(odd[x])) << 16);
    }
}

/// Output rows one vector of 16 positions may touch: padded rows are at least 3 positions long
/// (width 1, dilation 1), so 16 lanes span at most 7 rows.
const MAX_RUNS: usize = 8;

/// Where each lane of a call's vectors goes in the NCHW output. A vector of 16 positions of the
/// padded grid holds the end of one output row, maybe some thrown-away padding positions, and
/// maybe the start of the next row (more rows on narrow inputs): one masked store per row.
struct Stores {
    /// Per vector: (output offset of lane 0, lanes) per output row it touches; a zero mask ends
    /// the list.
    runs: [[(isize, u16); MAX_RUNS]; NV],
}

impl Stores {
    fn new(first: usize, g: &Geometry) -> Self {
        let mut runs = [[(0isize, 0u16); MAX_RUNS]; NV];
        for (v, parts) in runs.iter_mut().enumerate() {
            let mut used = 0;
            for lane in 0..16 {
                let position = first + 16 * v + lane;
                let (y, x) = (position / g.padded_width, position % g.padded_width);
                if y >= g.height || x >= g.width {
                    continue;
                }
                let offset = (y * g.width + x) as isize - lane as isize;
                if used == 0 || parts[used - 1].0 != offset {
                    parts[used] = (offset, 0);
                    used += 1;
                }
                parts[used - 1].1 |= 1 << lane;
            }
        }
        Self { runs }
    }
}

/// Runs the convolution of `packed` (from [`pack_input`] with the same geometry) into `out`,
/// NCHW `[out_channels][height][width]`, adding the bias and, with `relu`, clamping below at 0.
/// Position blocks `from..to` (in units of [`NB`]) only, so that callers can split the work
/// between threads: each block writes its own part of every output channel.
///
/// # Panics
/// If the CPU lacks the features of the weights' products ([`Products::supported`]) or the
/// buffers are not of the geometry's sizes.
pub fn convolve(
    packed: &[u32],
    weights: &PackedWeights,
    g: &Geometry,
    relu: bool,
    blocks: std::ops::Range<usize>,
    out: &OutputPlanes<'_>,
) {
    assert!(
        weights.products.supported(),
        "the CPU lacks the features of {:?} products",
        weights.products
    );
    assert_eq!(packed.len(), weights.words() * g.plane, "packed input");
    assert_eq!(out.len, weights.out_channels * g.height * g.width, "output");
    assert!(blocks.end <= position_blocks(g));
    let offsets: [usize; 9] = std::array::from_fn(|tap| {
        let (dy, dx) = (tap / 3, tap % 3);
        dy * g.dilation * g.padded_width + dx * g.dilation
    });
    let channel_blocks = weights.out_channels.div_ceil(MR);
    let panel = weights.panel_len();
    let group = (WEIGHT_GROUP_BYTES / (panel * 4)).clamp(1, channel_blocks);
    let area = g.height * g.width;
    for first_block in (0..channel_blocks).step_by(group) {
        let last_block = (first_block + group).min(channel_blocks);
        for position_block in blocks.clone() {
            let n = position_block * NB;
            let stores = Stores::new(n, g);
            for block in first_block..last_block {
                let channels = (weights.out_channels - block * MR).min(MR);
                let mut bias = [0f32; MR];
                bias[..channels].copy_from_slice(&weights.bias[block * MR..][..channels]);
                let call = Call {
                    products: weights.products,
                    words: weights.words(),
                    offsets: &offsets,
                    n,
                    bias: &bias,
                    relu,
                    stores: &stores,
                    channels,
                    // SAFETY: inside the output, whose size was asserted.
                    out: unsafe { out.ptr.add(block * MR * area) },
                };
                run_block(&weights.data[block * panel..][..panel], packed, g, &call);
            }
        }
    }
}

/// One micro-kernel call: MR output channels of NB positions.
struct Call<'a> {
    products: Products,
    words: usize,
    offsets: &'a [usize; 9],
    n: usize,
    bias: &'a [f32; MR],
    relu: bool,
    stores: &'a Stores,
    channels: usize,
    out: *mut f32,
}

#[cfg(target_arch = "x86_64")]
fn run_block(panel: &[u32], packed: &[u32], g: &Geometry, call: &Call) {
    // SAFETY: `convolve` checked the features; the panel, the shifted reads (bounded by the
    // plane's slack) and the masked stores (inside this block's channels, at positions of the
    // output) stay within the buffers, whose sizes it asserted.
    unsafe {
        let mut results = [[_mm512_setzero_ps(); NV]; MR];
        let kernel = match call.products {
            Products::Bf16 => micro_kernel_bf16,
            Products::F32 => micro_kernel_f32,
        };
        kernel(
            panel,
            packed,
            g.plane,
            call.words,
            call.offsets,
            call.n,
            call.bias,
            call.relu,
            &mut results,
        );
        scatter(
            &results,
            call.stores,
            call.channels,
            g.height * g.width,
            call.out,
        );
    }
}

/// Blocks of [`NB`] positions a geometry has (the unit of [`convolve`]'s `blocks`).
pub fn position_blocks(g: &Geometry) -> usize {
    g.positions / NB
}

/// The micro-kernels' accumulators, each output channel's starting at its bias. Inlined into
/// both (same features), so that the accumulators stay in registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn bias_accumulators(bias: &[f32; MR]) -> [[__m512; NV]; MR] {
    std::array::from_fn(|m| [_mm512_set1_ps(bias[m]); NV])
}

/// The micro-kernels' sums, through the ReLU when it is folded in.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn finish(acc: &[[__m512; NV]; MR], relu: bool, results: &mut [[__m512; NV]; MR]) {
    let zero = _mm512_setzero_ps();
    for (sums, out) in acc.iter().zip(results.iter_mut()) {
        for (sum, result) in sums.iter().zip(out.iter_mut()) {
            *result = if relu {
                _mm512_max_ps(*sum, zero)
            } else {
                *sum
            };
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_kernel_bf16(
    panel: &[u32],
    packed: &[u32],
    plane: usize,
    words: usize,
    offsets: &[usize; 9],
    n: usize,
    bias: &[f32; MR],
    relu: bool,
    results: &mut [[__m512; NV]; MR],
) {
    // SAFETY: see `convolve`.
    // Index loops of constant trip counts over fixed-size arrays, so that the 24 accumulators
    // live in registers only.
    #[allow(clippy::needless_range_loop)]
    unsafe {
        let mut acc = bias_accumulators(bias);
        let mut weights = panel.as_ptr();
        for tap in 0..9 {
            let shifted = packed.as_ptr().add(n + offsets[tap]);
            for pair in 0..words {
                let source = shifted.add(pair * plane);
                let mut inputs: [__m512bh; NV] =
                    [std::mem::transmute::<__m512, __m512bh>(_mm512_setzero_ps()); NV];
                for v in 0..NV {
                    inputs[v] = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                        source.add(16 * v).cast(),
                    ));
                }
                for m in 0..MR {
                    let weight: __m512bh =
                        std::mem::transmute(_mm512_set1_epi32(*weights.add(m) as i32));
                    for v in 0..NV {
                        acc[m][v] = _mm512_dpbf16_ps(acc[m][v], weight, inputs[v]);
                    }
                }
                weights = weights.add(MR);
            }
        }
        finish(&acc, relu, results);
    }
}

/// [`micro_kernel_bf16`] with float32 words and FMAs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_kernel_f32(
    panel: &[u32],
    packed: &[u32],
    plane: usize,
    channels: usize,
    offsets: &[usize; 9],
    n: usize,
    bias: &[f32; MR],
    relu: bool,
    results: &mut [[__m512; NV]; MR],
) {
    // SAFETY: see `convolve`.
    #[allow(clippy::needless_range_loop)]
    unsafe {
        let mut acc = bias_accumulators(bias);
        let mut weights = panel.as_ptr().cast::<f32>();
        for tap in 0..9 {
            let shifted = packed.as_ptr().add(n + offsets[tap]).cast::<f32>();
            for channel in 0..channels {
                let source = shifted.add(channel * plane);
                let mut inputs = [_mm512_setzero_ps(); NV];
                for v in 0..NV {
                    inputs[v] = _mm512_loadu_ps(source.add(16 * v));
                }
                for m in 0..MR {
                    let weight = _mm512_set1_ps(*weights.add(m));
                    for v in 0..NV {
                        acc[m][v] = _mm512_fmadd_ps(weight, inputs[v], acc[m][v]);
                    }
                }
                weights = weights.add(MR);
            }
        }
        finish(&acc, relu, results);
    }
}

/// Writes a call's results to the NCHW output, each vector as one masked store per output row
/// it touches. Kept apart from the micro-kernel: unrolled into it, these stores made the
/// compiler keep the accumulators in memory (40 instead of 100 GMAC/s).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline(never)]
unsafe fn scatter(
    results: &[[__m512; NV]; MR],
    stores: &Stores,
    channels: usize,
    channel_stride: usize,
    out: *mut f32,
) {
    // SAFETY: see `convolve`.
    unsafe {
        for (m, row) in results.iter().enumerate().take(channels) {
            let channel = out.add(m * channel_stride);
            for (v, &value) in row.iter().enumerate() {
                for &(offset, lanes) in &stores.runs[v] {
                    if lanes == 0 {
                        break;
                    }
                    _mm512_mask_storeu_ps(channel.offset(offset), lanes, value);
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn run_block(_: &[u32], _: &[u32], _: &Geometry, _: &Call) {
    unreachable!("convolve checks `Products::supported`, false on this architecture")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(count: usize, seed: &mut u32, scale: f32) -> Vec<f32> {
        (0..count)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 17;
                *seed ^= *seed << 5;
                ((*seed % 20001) as f32 / 10000.0 - 1.0) * scale
            })
            .collect()
    }

    /// The convolution in float64, straight from its definition.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        input: &[f32],
        weights: &[f32],
        bias: &[f32],
        (c, k, h, w): (usize, usize, usize, usize),
        dilation: usize,
    ) -> Vec<f32> {
        let mut out = vec![0f32; k * h * w];
        for o in 0..k {
            for y in 0..h {
                for x in 0..w {
                    let mut sum = f64::from(bias[o]);
                    for i in 0..c {
                        for tap in 0..9 {
                            let yy = y as isize + (tap as isize / 3 - 1) * dilation as isize;
                            let xx = x as isize + (tap as isize % 3 - 1) * dilation as isize;
                            if (0..h as isize).contains(&yy) && (0..w as isize).contains(&xx) {
                                sum += f64::from(weights[(o * c + i) * 9 + tap])
                                    * f64::from(input[(i * h + yy as usize) * w + xx as usize]);
                            }
                        }
                    }
                    out[(o * h + y) * w + x] = sum as f32;
                }
            }
        }
        out
    }

    #[test]
    fn bf16_rounding_is_to_nearest_even() {
        assert_eq!(bf16_bits(1.0), 0x3f80);
        // 1 + 2^-8 lies halfway between 1 and the next bfloat16: to even (1.0).
        assert_eq!(bf16_bits(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(bf16_bits(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(bf16_bits(-2.5), 0xc020);
    }

    /// The products this CPU runs (the kernel is not used on a CPU that runs neither).
    fn supported_products() -> Vec<Products> {
        let products: Vec<Products> = [Products::Bf16, Products::F32]
            .into_iter()
            .filter(|p| p.supported())
            .collect();
        if products.is_empty() {
            eprintln!("skipped: this CPU has no AVX-512, and the kernel is not used on it");
        }
        products
    }

    #[test]
    fn the_fastest_products_are_ones_this_cpu_runs() {
        match fastest_products() {
            Some(products) => assert!(products.supported()),
            None => assert!(supported_products().is_empty()),
        }
    }

    /// Against the definition, on odd sizes (channel counts not multiples of the pair or of
    /// MR, widths not multiples of 16, both dilations): every output within bfloat16's error,
    /// or float32's.
    #[test]
    fn matches_the_definition_within_rounding() {
        for products in supported_products() {
            matches_the_definition_with(products);
        }
    }

    fn matches_the_definition_with(products: Products) {
        let mut seed = 7;
        for (c, k, h, w, dilation) in [
            (16, 24, 20, 37, 1),
            (33, 16, 17, 29, 2),
            (5, 9, 16, 16, 1),
            (64, 8, 9, 50, 2),
            (18, 8, 7, 1, 1),
            (20, 16, 11, 4, 2),
        ] {
            let input = pseudo_random(c * h * w, &mut seed, 1.0);
            let weights = pseudo_random(k * c * 9, &mut seed, 0.05);
            let bias = pseudo_random(k, &mut seed, 0.1);
            let expected = reference(&input, &weights, &bias, (c, k, h, w), dilation);
            let g = Geometry::new(h, w, dilation);
            let packed = pack_input(&input, c, &g, products);
            let packed_weights = PackedWeights::new(&weights, &bias, k, c, products);
            let mut out = vec![f32::NAN; k * h * w];
            convolve(
                &packed,
                &packed_weights,
                &g,
                false,
                0..position_blocks(&g),
                &OutputPlanes::new(&mut out),
            );
            // Each operand is rounded to 8 significant bits (relative error at most 2^-8), so a
            // product is off by at most about 2^-7 of itself; over the 9 c terms of |w x| <= 0.05
            // that bounds the error by 9 c 0.05 2^-7. In float32 only the sums round (24 bits).
            let bound = match products {
                Products::Bf16 => 9.0 * c as f32 * 0.05 / 128.0,
                Products::F32 => 1e-5 * 9.0 * c as f32,
            };
            for (i, (got, want)) in out.iter().zip(&expected).enumerate() {
                assert!(
                    (got - want).abs() <= bound,
                    "{products:?} {c}x{k} {h}x{w} d{dilation}, output {i}: {got} against {want}"
                );
            }
            // No systematic bias: the errors of a whole layer cancel out.
            let total: f64 = out.iter().map(|&v| f64::from(v)).sum();
            let wanted: f64 = expected.iter().map(|&v| f64::from(v)).sum();
            let magnitude: f64 = expected.iter().map(|&v| f64::from(v).abs()).sum();
            assert!(
                (total - wanted).abs() <= 1e-3 * magnitude,
                "{total} against {wanted}"
            );
        }
    }

    #[test]
    fn relu_clamps_and_split_blocks_write_the_same() {
        for products in supported_products() {
            relu_clamps_and_split_blocks_write_the_same_with(products);
        }
    }

    fn relu_clamps_and_split_blocks_write_the_same_with(products: Products) {
        let (c, k, h, w) = (12, 10, 13, 40);
        let mut seed = 11;
        let input = pseudo_random(c * h * w, &mut seed, 1.0);
        let weights = pseudo_random(k * c * 9, &mut seed, 0.1);
        let bias = pseudo_random(k, &mut seed, 0.1);
        let g = Geometry::new(h, w, 1);
        let packed = pack_input(&input, c, &g, products);
        let packed_weights = PackedWeights::new(&weights, &bias, k, c, products);
        let blocks = position_blocks(&g);
        let mut whole = vec![f32::NAN; k * h * w];
        convolve(
            &packed,
            &packed_weights,
            &g,
            true,
            0..blocks,
            &OutputPlanes::new(&mut whole),
        );
        let mut split = vec![f32::NAN; k * h * w];
        let planes = OutputPlanes::new(&mut split);
        convolve(&packed, &packed_weights, &g, true, 0..blocks / 2, &planes);
        convolve(
            &packed,
            &packed_weights,
            &g,
            true,
            blocks / 2..blocks,
            &planes,
        );
        assert_eq!(whole, split);
        assert!(whole.iter().all(|&v| v >= 0.0), "ReLU");
        assert!(whole.iter().any(|&v| v > 0.0));
    }
}
