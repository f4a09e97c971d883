//! Launches of the CUDA kernels in `cuda/kernels.cu` (built to PTX by `build.rs` with the `cuda` feature)
//! on candle's CUDA device: the GPU side of the depthwise and batch-norm ops. Without these, candle splits
//! a depthwise convolution into one convolution per channel (tens of thousands of launches per super-net
//! step) and runs batch norm as a dozen broadcast ops. Every function takes contiguous f32 views and
//! returns fresh device buffers; the kernels' rules (grid-stride loops, fixed-order two-kernel
//! reductions) are explained in the source.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::WrapErr;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, LaunchConfig, PushKernelArg};
use candle_core::{CudaDevice, CudaStorage, Layout, Result, bail};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/fbnet_kernels.ptx"));
const MODULE: &str = "fbnet_kernels";
const THREADS: u32 = 256;

/// The contiguous f32 data of a CUDA storage under `layout`.
pub(super) fn view<'a>(
    storage: &'a CudaStorage,
    layout: &Layout,
    what: &str,
) -> Result<CudaView<'a, f32>> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("{what}: the input must be contiguous")
    };
    Ok(storage.as_cuda_slice::<f32>()?.slice(start..end))
}

/// Wraps a result buffer as a storage of `dev`.
pub(super) fn storage(slice: CudaSlice<f32>, dev: &CudaDevice) -> CudaStorage {
    CudaStorage::wrap_cuda_slice(slice, dev.clone())
}

/// A result buffer of `len` values as a vector tensor of `dev` (statistics the caller keeps).
pub(super) fn vector(slice: CudaSlice<f32>, dev: &CudaDevice, len: usize) -> candle_core::Tensor {
    candle_core::Tensor::from_storage(
        candle_core::Storage::Cuda(storage(slice, dev)),
        len,
        candle_core::op::BackpropOp::none(),
        false,
    )
}

/// The device of a storage.
pub(super) fn device(s: &CudaStorage) -> &CudaDevice {
    s.device()
}

/// A size as the kernels' `int`.
fn int(v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| candle_core::Error::Msg(format!("CUDA kernel size {v} over 2^31")))
}

/// Blocks of 256 threads, enough for one thread per item up to a grid of 2^16 blocks (the loops stride
/// over the rest).
fn config(items: usize) -> LaunchConfig {
    let blocks = items.div_ceil(THREADS as usize).clamp(1, 1 << 16) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// How many interleaved partial sums a reduction over `count` values is split into: at least 32 values
/// each, at most 1024 partials. Fixed by the sizes alone, so the order of the additions is too.
fn parts(count: usize) -> usize {
    (count / 32).clamp(1, 1024)
}

/// A kernel's launch builder on the device's stream: `launch!(dev, "name", items; arg, arg, …)`.
macro_rules! launch {
    ($dev:expr, $name:expr, $items:expr; $($arg:expr),* $(,)?) => {{
        let func = $dev.get_or_load_custom_func($name, MODULE, PTX)?;
        let mut b = func.builder();
        $( b.arg($arg); )*
        // SAFETY: the arguments match the kernel's parameters in kernels.cu in number, order and type,
        // and every buffer holds the values the sizes passed with it say.
        unsafe { b.launch(config($items)) }.w()?;
    }};
}

/// Depthwise geometry: `planes` = images × channels.
#[derive(Clone, Copy, Debug)]
pub(super) struct DwDims {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub ho: usize,
    pub wo: usize,
    pub k: usize,
    pub s: usize,
}

impl DwDims {
    fn ints(&self) -> Result<[i32; 9]> {
        Ok([
            int(self.n * self.c)?,
            int(self.c)?,
            int(self.h)?,
            int(self.w)?,
            int(self.ho)?,
            int(self.wo)?,
            int(self.k)?,
            int(self.s)?,
            int(self.n)?,
        ])
    }
}

/// The forward pass (`a` = x; one thread per output value) or, with `input_grad`, the input gradient
/// (`a` = dy; one thread per input value, gathering from the outputs it fed).
pub(super) fn dw_values(
    dev: &CudaDevice,
    input_grad: bool,
    a: &CudaView<f32>,
    wt: &CudaView<f32>,
    d: DwDims,
) -> Result<CudaSlice<f32>> {
    let (name, items) = if input_grad {
        ("fbnet_dw_input_grad", d.n * d.c * d.h * d.w)
    } else {
        ("fbnet_dw_forward", d.n * d.c * d.ho * d.wo)
    };
    let out = unsafe { dev.alloc::<f32>(items) }?;
    let [pl, c, h, w, ho, wo, k, s, _] = d.ints()?;
    launch!(dev, name, items; a, wt, &out, &pl, &c, &h, &w, &ho, &wo, &k, &s);
    Ok(out)
}

pub(super) fn dw_weight_grad(
    dev: &CudaDevice,
    x: &CudaView<f32>,
    dy: &CudaView<f32>,
    d: DwDims,
) -> Result<CudaSlice<f32>> {
    let rows = d.c * d.k * d.k;
    let p = parts(d.n * d.ho * d.wo);
    let partial = unsafe { dev.alloc::<f32>(rows * p) }?;
    let dw = unsafe { dev.alloc::<f32>(rows) }?;
    let [_, c, h, w, ho, wo, k, s, n] = d.ints()?;
    let (pi, ri) = (int(p)?, int(rows)?);
    launch!(dev, "fbnet_dw_weight_grad_partial", rows * p;
        x, dy, &partial, &n, &c, &h, &w, &ho, &wo, &k, &s, &pi);
    launch!(dev, "fbnet_sum_rows", rows; &partial, &dw, &ri, &pi);
    Ok(dw)
}

/// What a training-mode batch norm's forward pass gives: the output and the batch's mean, biased
/// variance and `1/√(σ² + ε)`, all on the device.
pub(super) struct BnForward {
    pub y: CudaSlice<f32>,
    pub mean: CudaSlice<f32>,
    pub var: CudaSlice<f32>,
    pub inv_std: CudaSlice<f32>,
}

/// Batch norm of `x` `[n, c, plane]` with its own batch's statistics, then the ReLU when `relu`.
pub(super) fn bn_forward(
    dev: &CudaDevice,
    x: &CudaView<f32>,
    (gamma, beta): (&CudaView<f32>, &CudaView<f32>),
    (n, c, plane): (usize, usize, usize),
    eps: f64,
    relu: bool,
) -> Result<BnForward> {
    let p = parts(n * plane);
    let partial = unsafe { dev.alloc::<f32>(c * p) }?;
    let mean = unsafe { dev.alloc::<f32>(c) }?;
    let var = unsafe { dev.alloc::<f32>(c) }?;
    let inv_std = unsafe { dev.alloc::<f32>(c) }?;
    let (ni, ci, pli, pi) = (int(n)?, int(c)?, int(plane)?, int(p)?);
    let (count, epsf, relui) = ((n * plane) as f32, eps as f32, relu as i32);
    let null = 0u64;
    launch!(dev, "fbnet_bn_sums_partial", c * p; x, &null, &partial, &ni, &ci, &pli, &pi);
    launch!(dev, "fbnet_sum_rows", c; &partial, &mean, &ci, &pi);
    launch!(dev, "fbnet_bn_finish", c; &mean, &null, &ci, &count, &epsf);
    launch!(dev, "fbnet_bn_sums_partial", c * p; x, &mean, &partial, &ni, &ci, &pli, &pi);
    launch!(dev, "fbnet_sum_rows", c; &partial, &var, &ci, &pi);
    launch!(dev, "fbnet_bn_finish", c; &var, &inv_std, &ci, &count, &epsf);
    let y = unsafe { dev.alloc::<f32>(n * c * plane) }?;
    launch!(dev, "fbnet_bn_apply", n * c * plane;
        x, &mean, &inv_std, gamma, beta, &y, &ni, &ci, &pli, &relui);
    Ok(BnForward {
        y,
        mean,
        var,
        inv_std,
    })
}

/// The gradients of [`bn_forward`] for the output gradient `dy`, packed in one buffer:
/// `[dx (n·c·plane) | dγ (c) | dβ (c)]`. `y` is the forward output (the ReLU's mask).
#[allow(clippy::too_many_arguments)]
pub(super) fn bn_backward(
    dev: &CudaDevice,
    (x, y, dy): (&CudaView<f32>, &CudaView<f32>, &CudaView<f32>),
    gamma: &CudaView<f32>,
    (mean_d, inv_d): (&CudaView<f32>, &CudaView<f32>),
    (n, c, plane): (usize, usize, usize),
    relu: bool,
) -> Result<CudaSlice<f32>> {
    let p = parts(n * plane);
    let partial = unsafe { dev.alloc::<f32>(2 * c * p) }?;
    let (ni, ci, c2, pli, pi, relui) = (
        int(n)?,
        int(c)?,
        int(2 * c)?,
        int(plane)?,
        int(p)?,
        relu as i32,
    );
    launch!(dev, "fbnet_bn_grad_partial", c * p;
        x, y, dy, mean_d, inv_d, &partial, &ni, &ci, &pli, &relui, &pi);
    let len = n * c * plane;
    // dx in front, then the sums land straight in their place as [dγ | dβ]; the kernels write through
    // views of one buffer at disjoint ranges (`sums` is not restrict-qualified in kernels.cu)
    let out = unsafe { dev.alloc::<f32>(len + 2 * c) }?;
    {
        let sums = out.slice(len..len + 2 * c);
        launch!(dev, "fbnet_sum_rows", 2 * c; &partial, &sums, &c2, &pi);
        launch!(dev, "fbnet_bn_input_grad", len;
            x, y, dy, mean_d, inv_d, gamma, &sums, &out, &ni, &ci, &pli, &relui);
    }
    Ok(out)
}
