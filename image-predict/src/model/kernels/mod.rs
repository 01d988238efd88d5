//! Our own kernels, where tract's are the limit (BENCHMARKS.md gives the profiles), inserted
//! into the models at load by the passes of [`ops`]:
//!
//! - [`conv3x3_bf16`]: CSRNet's 3x3 convolutions with bfloat16 products (AVX-512 BF16).
//! - [`depthwise`]: the detector's stride-2 depthwise convolutions, vectorised.

pub mod conv3x3_bf16;
pub mod depthwise;
pub mod ops;
