//! CPU kernels candle lacks or runs too slowly for training, as custom ops with their own backward.
//!
//! Measured with candle 0.11.1 on the 2-core development machine: the stock grouped `conv2d` splits a
//! depthwise convolution into one convolution per channel and its backward rebuilds a full-size tensor per
//! group (≈11 s against PyTorch's 0.13 s for one depthwise backward at batch 32, 144×56×56), and
//! candle-nn's batch norm is a chain of a dozen tensor ops. The kernels here work on whole planes with
//! rayon. On other devices (CUDA) the callers fall back to the stock ops, so the same network code runs
//! everywhere.

mod batchnorm;
mod depthwise;
mod mix;

pub use batchnorm::{BatchStats, batch_norm_train};
pub use depthwise::depthwise_conv;
pub use mix::weighted;

use candle_core::{CpuStorage, Layout, Result, Storage, Tensor, bail};

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
