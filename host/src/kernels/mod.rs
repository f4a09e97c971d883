//! CPU kernels candle lacks or runs too slowly for training, as custom ops with their own backward.
//!
//! Measured with candle 0.11.1 on the 2-core development machine: the stock grouped `conv2d` splits a
//! depthwise convolution into one convolution per channel and its backward rebuilds a full-size tensor per
//! group (≈11 s against PyTorch's 0.13 s for one depthwise backward at batch 32, 144×56×56), and
//! candle-nn's batch norm is a chain of a dozen tensor ops. Even with single-layer kernels, candle's
//! backward gives every graph edge a zeroed gradient that the edge's gradient is then added to, so a
//! training step of a stand-alone network ran at half PyTorch's speed; `block` runs a whole candidate block
//! as one op. The kernels work on whole planes with rayon. With the `cuda` feature, depthwise convolution
//! and batch norm have GPU kernels too (`cuda/kernels.cu`, launched from `cuda.rs`); on a GPU the block
//! runs layer by layer through them, and the 1x1 convolutions and the mix use candle's stock ops.

/// Defines a function whose body is compiled twice, for the baseline target and with AVX2 and FMA, and
/// picks the second at run time when the CPU has them (std caches the check). The plane loops then run
/// on 8-lane vectors without building for one CPU: the default x86-64 target allows only 4-lane SSE2.
/// On its own it made no measurable difference to the FBNet-B step (the loops were branch- and
/// memory-bound then); the 8-lane register tiles of the depthwise kernels are written for it.
macro_rules! simd_fn {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn imp($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn fast($($arg: $ty),*) $(-> $ret)? {
                    imp($($arg),*)
                }
                if !$crate::kernels::portable_forced()
                    && std::is_x86_feature_detected!("avx2")
                    && std::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has the features `fast` was compiled for.
                    return unsafe { fast($($arg),*) };
                }
            }
            imp($($arg),*)
        }
    };
}

static PORTABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes every kernel run its baseline code (no AVX2/FMA) from now on, or again the fastest the CPU
/// allows: the baseline is what CPUs without AVX2 run, and tests compare the two paths on one machine.
pub fn set_portable(on: bool) {
    PORTABLE.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether [`set_portable`] asked for the baseline code.
#[inline]
pub fn portable_forced() -> bool {
    PORTABLE.load(std::sync::atomic::Ordering::Relaxed)
}

mod batchnorm;
mod block;
#[cfg(feature = "cuda")]
mod cuda;
mod dense;
mod depthwise;
mod mix;
mod pointwise;

pub use batchnorm::{BatchStats, batch_norm_train};
pub use block::{BlockShape, block_train};
pub use dense::dense_conv;
pub use depthwise::depthwise_conv;
pub use mix::{weighted, weighted_add};
pub use pointwise::pointwise_conv;

use candle_core::{CpuStorage, Layout, Result, Storage, Tensor, bail};

simd_fn! {
/// Sum of `a` with eight independent accumulators: a plain `iter().sum()` of floats is one serial chain
/// of additions (the compiler may not reorder them), eight lanes let it vectorise.
fn sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (s, v) in acc.iter_mut().zip(c) {
            *s += v;
        }
    }
    acc.iter().sum::<f32>() + tail
}
}

simd_fn! {
/// `Σ (a − m)²`, eight lanes as in [`sum`].
fn sum_sq_dev(a: &[f32], m: f32) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|v| (v - m) * (v - m)).sum();
    for c in chunks {
        for (s, v) in acc.iter_mut().zip(c) {
            *s += (v - m) * (v - m);
        }
    }
    acc.iter().sum::<f32>() + tail
}
}

/// Images per partial sum of a weight gradient. The split is fixed, so the order of the additions (and
/// their rounding) does not depend on how rayon schedules the work, and a training run repeats bit for
/// bit, resumed or not.
const IMAGES_PER_PARTIAL: usize = 8;

/// `Σ_b f(b)` over `n` images for an `f` that adds image `b`'s share into a `len`-value accumulator:
/// partial sums of [`IMAGES_PER_PARTIAL`] images in parallel, then added in order.
fn batch_sum(n: usize, len: usize, f: impl Fn(&mut [f32], usize) + Sync) -> Vec<f32> {
    use rayon::prelude::*;
    let starts: Vec<usize> = (0..n).step_by(IMAGES_PER_PARTIAL).collect();
    let partials: Vec<Vec<f32>> = starts
        .par_iter()
        .map(|&b0| {
            let mut acc = vec![0f32; len];
            for b in b0..(b0 + IMAGES_PER_PARTIAL).min(n) {
                f(&mut acc, b);
            }
            acc
        })
        .collect();
    let mut total = vec![0f32; len];
    for p in partials {
        total.iter_mut().zip(&p).for_each(|(t, v)| *t += v);
    }
    total
}

/// The contiguous f32 data of a CPU storage under `layout`.
fn cpu_slice<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("{what}: the input must be contiguous")
    };
    Ok(&storage.as_slice::<f32>()?[start..end])
}

/// Runs `f` on the contiguous f32 data of a CPU tensor (copying it first if it is strided).
fn with_cpu_data<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => Ok(f(cpu_slice(cpu, layout, what)?)),
        _ => bail!("{what}: a CPU kernel was given a tensor on another device"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_sums_equal_plain_sums_for_every_tail_length() {
        for n in [0, 1, 7, 8, 9, 23, 64] {
            let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let close = |x: f32, y: f32| (x - y).abs() <= 1e-4 * (1.0 + y.abs());
            assert!(close(sum(&a), a.iter().sum()), "sum n={n}");
            let m = 0.25;
            let want: f32 = a.iter().map(|v| (v - m) * (v - m)).sum();
            assert!(close(sum_sq_dev(&a, m), want), "sum_sq_dev n={n}");
        }
    }
}
