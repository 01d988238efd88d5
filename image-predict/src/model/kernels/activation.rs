//! What follows a convolution's product and bias, applied by our kernels in the same pass, while
//! the values are still in registers or in cache. tract ran each of these as separate passes
//! over the whole tensor: the detector's 20 hard swishes and 9 ReLUs after our own convolutions
//! took 7.6 ms of its 92 ms on one thread (BENCHMARKS.md).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// An elementwise function of a convolution's output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    None,
    /// `max(x, 0)`.
    Relu,
    /// MobileNetV3's hard swish as the detector's graph computes it,
    /// `(x * scale) * min(max(x + shift, 0), cap)`, with the graph's own constants (`scale` is
    /// 1/6 rounded to half precision there, `shift` 3, `cap` 6), so that folding it changes no
    /// rounding but the order of two products.
    HardSwish {
        scale: f32,
        shift: f32,
        cap: f32,
    },
}

impl Activation {
    /// The function at one value.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::HardSwish { scale, shift, cap } => {
                (x * scale) * (x + shift).max(0.0).min(cap)
            }
        }
    }

    /// The function over a slice, in place. The match is outside the loops, so that each loop
    /// is vectorised for the ISA of the function it is inlined into.
    #[inline(always)]
    pub fn apply_to_all(self, values: &mut [f32]) {
        match self {
            Activation::None => {}
            Activation::Relu => values
                .iter_mut()
                .for_each(|v| *v = Activation::Relu.apply(*v)),
            hard_swish @ Activation::HardSwish { .. } => {
                values.iter_mut().for_each(|v| *v = hard_swish.apply(*v))
            }
        }
    }

    /// The function on sixteen lanes.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F (callers compiled for it call it without `unsafe`).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub fn apply_avx512(self, x: __m512) -> __m512 {
        let zero = _mm512_setzero_ps();
        match self {
            Activation::None => x,
            Activation::Relu => _mm512_max_ps(x, zero),
            Activation::HardSwish { scale, shift, cap } => {
                let gate = _mm512_min_ps(
                    _mm512_max_ps(_mm512_add_ps(x, _mm512_set1_ps(shift)), zero),
                    _mm512_set1_ps(cap),
                );
                _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(scale)), gate)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HARD_SWISH: Activation = Activation::HardSwish {
        scale: 0.166_625_98,
        shift: 3.0,
        cap: 6.0,
    };

    #[test]
    fn hard_swish_is_zero_below_minus_three_and_identity_above_three() {
        assert_eq!(HARD_SWISH.apply(-4.0), 0.0);
        assert_eq!(HARD_SWISH.apply(-3.0), 0.0);
        // x * 6 * scale: the identity up to the graph's rounding of 1/6.
        assert!((HARD_SWISH.apply(5.0) - 5.0).abs() < 2e-3);
        // In between, x (x + 3) / 6.
        assert!((HARD_SWISH.apply(1.0) - 4.0 / 6.0).abs() < 1e-3);
        assert_eq!(Activation::Relu.apply(-2.0), 0.0);
        assert_eq!(Activation::None.apply(-2.0), -2.0);
    }

    #[test]
    fn every_path_computes_the_same() {
        let values: Vec<f32> = (0..37).map(|i| i as f32 * 0.37 - 6.5).collect();
        for activation in [Activation::None, Activation::Relu, HARD_SWISH] {
            let mut all = values.clone();
            activation.apply_to_all(&mut all);
            for (x, y) in values.iter().zip(&all) {
                assert_eq!(
                    activation.apply(*x).to_bits(),
                    y.to_bits(),
                    "{activation:?} at {x}"
                );
            }
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f") {
                let mut lanes = [0f32; 16];
                // SAFETY: the feature was checked.
                unsafe {
                    let x = _mm512_loadu_ps(values.as_ptr());
                    _mm512_storeu_ps(lanes.as_mut_ptr(), activation.apply_avx512(x));
                }
                for (x, y) in values.iter().zip(&lanes) {
                    assert_eq!(
                        activation.apply(*x).to_bits(),
                        y.to_bits(),
                        "{activation:?} at {x}"
                    );
                }
            }
        }
    }
}
