//! Our own kernels, where tract's are the limit (BENCHMARKS.md gives the profiles), inserted
//! into the models at load by the passes of [`ops`]:
//!
//! - [`conv3x3`]: CSRNet's 3x3 convolutions, with bfloat16 (AVX-512 BF16) or float32 (AVX-512 F)
//!   products, whichever this CPU runs faster.
//! - [`conv1x1`]: the detector's pointwise convolutions, float32 (AVX-512 F).
//! - [`max_pool`]: CSRNet's 2x2 max poolings, vectorised.
//! - [`planes`]: the detector's 2x linear upsamplings and sums of whole planes (its global means),
//!   vectorised.
//! - [`depthwise`]: the detector's depthwise convolutions (stride 1 and 2, channels first and
//!   last), vectorised.
//! - [`stem`]: the detector's first convolution (3 input channels, stride 2, channels last).
//! - [`activation`]: the ReLU or hard swish that follows a convolution, applied by the kernels
//!   above in the same pass.

/// Defines `$vis fn $name(args)` running `$portable` (an `#[inline(always)]` function of plain
/// loops) compiled for AVX-512, for AVX2 or for the baseline, whichever this CPU runs: the one
/// place where the vectorised loops of [`max_pool`] and [`planes`] choose their instructions.
macro_rules! vectorised {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $portable:ident) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) {
                    $portable($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) {
                    $portable($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the feature the function is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $portable($($arg),*)
        }
    };
}

pub mod activation;
pub mod conv1x1;
pub mod conv3x3;
pub mod depthwise;
pub mod max_pool;
pub mod ops;
pub mod planes;
pub mod stem;

// The register tile both convolution micro-kernels keep (`conv3x3`, `conv1x1`): MR output
// channels x NV vectors of 16 positions, 24 of AVX-512's 32 registers.
/// Output channels per micro-kernel call.
pub const MR: usize = 8;
/// 16-lane vectors of positions per micro-kernel call.
const NV: usize = 3;
/// Positions per micro-kernel call.
pub const NB: usize = 16 * NV;

/// An output buffer shared by threads that write disjoint parts of it (a convolution's position
/// blocks).
pub struct OutputPlanes<'a> {
    ptr: *mut f32,
    len: usize,
    _buffer: std::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: the kernels given disjoint position blocks write disjoint elements.
unsafe impl Send for OutputPlanes<'_> {}
unsafe impl Sync for OutputPlanes<'_> {}

impl<'a> OutputPlanes<'a> {
    pub fn new(buffer: &'a mut [f32]) -> Self {
        Self {
            ptr: buffer.as_mut_ptr(),
            len: buffer.len(),
            _buffer: std::marker::PhantomData,
        }
    }

    /// Elements `range` of the buffer, for one task to write.
    ///
    /// # Safety
    /// No other task may read or write these elements while the slice lives.
    ///
    /// # Panics
    /// If the range is beyond the buffer.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice_mut(&self, range: std::ops::Range<usize>) -> &mut [f32] {
        assert!(
            range.start <= range.end && range.end <= self.len,
            "inside the buffer"
        );
        // SAFETY: inside the buffer, which outlives `self`; exclusive by the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(range.start), range.len()) }
    }
}

/// Test inputs: `count` values in [-1, 1] from a xorshift generator at `seed`.
#[cfg(test)]
pub(crate) fn pseudo_random(count: usize, seed: &mut u32) -> Vec<f32> {
    (0..count)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 17;
            *seed ^= *seed << 5;
            (*seed % 20001) as f32 / 10000.0 - 1.0
        })
        .collect()
}
