//! Training-mode batch norm, optionally fused with the ReLU after it, in one pass forward and one pass
//! backward (candle-nn's version is a chain of broadcast ops, each with its own backward, and it was the
//! larger half of a super-net step in our measurements).

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, Device, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::{cpu_slice, sum, sum_sq_dev, with_cpu_data};

/// The statistics of the batch a training-mode batch norm normalised with, for the running averages:
/// vectors on the input's device. On a GPU they stay there: reading them on the host would stall the
/// GPU's queue once per batch norm, some 600 times a super-net step.
#[derive(Clone, Debug)]
pub struct BatchStats {
    pub mean: Tensor,
    /// Biased variance (what the batch was normalised with).
    pub var: Tensor,
    /// Values per channel (batch × height × width), to unbias the variance.
    pub count: usize,
}

/// [`BatchStats`] as the CPU kernels compute them.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct HostStats {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub count: usize,
}

impl HostStats {
    pub(super) fn to_device(&self, dev: &Device) -> Result<BatchStats> {
        let c = self.mean.len();
        Ok(BatchStats {
            mean: Tensor::from_slice(&self.mean, c, dev)?,
            var: Tensor::from_slice(&self.var, c, dev)?,
            count: self.count,
        })
    }
}

/// `relu?((x − μ_B) / √(σ²_B + ε) · γ + β)` over `x` `[n, c, …]` with the batch's per-channel statistics,
/// differentiable in `x`, `γ` and `β`. Returns the output and the statistics used. On the CPU and, with
/// the `cuda` feature, on a CUDA device (`kernels/cuda`).
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, BatchStats)> {
    let dims = x.dims();
    if dims.len() < 2 || gamma.dims() != [dims[1]] || beta.dims() != [dims[1]] {
        bail!(
            "batch norm: input {dims:?} with scale {:?} and shift {:?}",
            gamma.dims(),
            beta.dims()
        )
    }
    let saved = Arc::new(Mutex::new(Saved::default()));
    let op = FusedBn {
        eps,
        relu,
        saved: saved.clone(),
    };
    let y = x
        .contiguous()?
        .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    let stats = match &*saved.lock().map_err(|_| lost())? {
        Saved::Host { stats, .. } => stats.to_device(x.device())?,
        #[cfg(feature = "cuda")]
        Saved::Device {
            mean, var, count, ..
        } => BatchStats {
            mean: mean.clone(),
            var: var.clone(),
            count: *count,
        },
        Saved::Nothing => bail!("batch norm: the forward pass left nothing"),
    };
    Ok((y, stats))
}

fn lost() -> candle_core::Error {
    candle_core::Error::Msg("batch norm: statistics lost".into())
}

/// What the forward pass leaves for the backward pass and the caller: the statistics and `1/σ`, on the
/// host from the CPU kernel, on the GPU from the GPU kernels.
#[derive(Debug, Default)]
enum Saved {
    #[default]
    Nothing,
    Host {
        stats: HostStats,
        inv_std: Vec<f32>,
    },
    #[cfg(feature = "cuda")]
    Device {
        mean: Tensor,
        var: Tensor,
        inv_std: Tensor,
        count: usize,
    },
}

struct FusedBn {
    eps: f64,
    relu: bool,
    saved: Arc<Mutex<Saved>>,
}

impl FusedBn {
    fn saved(&self) -> Result<std::sync::MutexGuard<'_, Saved>> {
        self.saved.lock().map_err(|_| lost())
    }
}

/// `(n, c, plane)` of an `[n, c, …]` shape.
pub(super) fn split_dims(dims: &[usize]) -> (usize, usize, usize) {
    (dims[0], dims[1], dims[2..].iter().product())
}

/// The per-channel statistics of `x` `[n, c, plane]` (mean and biased variance, two passes in f64 over
/// each channel's n planes) and `1/√(σ² + ε)`.
fn batch_stats(x: &[f32], (n, c, plane): (usize, usize, usize), eps: f64) -> (HostStats, Vec<f32>) {
    let count = n * plane;
    let (mean, var): (Vec<f32>, Vec<f32>) = (0..c)
        .into_par_iter()
        .map(|ch| {
            let planes = || (0..n).map(|b| &x[(b * c + ch) * plane..(b * c + ch + 1) * plane]);
            let total: f64 = planes().map(|p| sum(p) as f64).sum();
            let mean = total / count as f64;
            let m = mean as f32;
            let ss: f64 = planes().map(|p| sum_sq_dev(p, m) as f64).sum();
            (mean as f32, (ss / count as f64) as f32)
        })
        .unzip();
    let inv_std = var
        .iter()
        .map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32)
        .collect();
    (HostStats { mean, var, count }, inv_std)
}

/// Training-mode batch norm of `x` `[n, c, plane]` with its own batch's statistics:
/// `y = relu?(x·scale + shift [+ residual])` per channel, with `scale = γ/σ` and `shift = β − μ·scale`.
/// Returns `y`, the statistics and `1/σ` (for the backward pass).
pub(super) fn normalise(
    x: &[f32],
    dims: (usize, usize, usize),
    (gamma, beta): (&[f32], &[f32]),
    eps: f64,
    relu: bool,
    residual: Option<&[f32]>,
) -> (Vec<f32>, HostStats, Vec<f32>) {
    let (_, c, plane) = dims;
    let (stats, inv_std) = batch_stats(x, dims, eps);
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(plane).enumerate().for_each(|(nc, out)| {
        let ch = nc % c;
        let scale = gamma[ch] * inv_std[ch];
        let shift = beta[ch] - stats.mean[ch] * scale;
        let r = nc * plane..(nc + 1) * plane;
        let inp = &x[r.clone()];
        match (relu, residual) {
            (true, None) => {
                for (o, &v) in out.iter_mut().zip(inp) {
                    *o = (v * scale + shift).max(0.0);
                }
            }
            (false, None) => {
                for (o, &v) in out.iter_mut().zip(inp) {
                    *o = v * scale + shift;
                }
            }
            (_, Some(res)) => {
                for ((o, &v), &s) in out.iter_mut().zip(inp).zip(&res[r]) {
                    let t = v * scale + shift + s;
                    *o = if relu { t.max(0.0) } else { t };
                }
            }
        }
    });
    (y, stats, inv_std)
}

simd_fn! {
/// Zeroes `g` where the ReLU after `x·scale + shift` was off (when `relu`), and returns `(Σg, Σg·x)`, in
/// one pass with eight lanes of each sum (a select, not a branch per value).
fn masked_sums(g: &mut [f32], x: &[f32], scale: f32, shift: f32, relu: bool) -> (f32, f32) {
    let (mut sg, mut sgx) = ([0f32; 8], [0f32; 8]);
    let mut gc = g.chunks_exact_mut(8);
    let mut xc = x.chunks_exact(8);
    for (gv, xv) in (&mut gc).zip(&mut xc) {
        let gv: &mut [f32; 8] = gv.try_into().expect("chunks of 8");
        let xv: &[f32; 8] = xv.try_into().expect("chunks of 8");
        let mut v = *gv;
        if relu {
            for i in 0..8 {
                v[i] = if xv[i] * scale + shift > 0.0 { v[i] } else { 0.0 };
            }
            *gv = v;
        }
        for i in 0..8 {
            sg[i] += v[i];
            sgx[i] += v[i] * xv[i];
        }
    }
    let (mut tg, mut tgx) = (0f32, 0f32);
    for (gv, &xv) in gc.into_remainder().iter_mut().zip(xc.remainder()) {
        if relu && xv * scale + shift <= 0.0 {
            *gv = 0.0;
        }
        tg += *gv;
        tgx += *gv * xv;
    }
    (sg.iter().sum::<f32>() + tg, sgx.iter().sum::<f32>() + tgx)
}
}

/// The backward pass of [`normalise`] without a residual, in place: `g` holds `dy` on entry and `dx` on
/// return. The ReLU's mask is recomputed from `x` (its output is positive where `x·scale + shift` is), so
/// the output itself need not be kept. Returns `(dγ, dβ)`.
#[allow(clippy::too_many_arguments)]
pub(super) fn normalise_backward(
    g: &mut [f32],
    x: &[f32],
    (n, c, plane): (usize, usize, usize),
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    inv_std: &[f32],
    relu: bool,
) -> (Vec<f32>, Vec<f32>) {
    let count = (n * plane) as f32;
    // pass 1, per channel: the mask applied in place, Σg (dβ) and Σg·x̂ (dγ)
    let mut by_channel: Vec<Vec<&mut [f32]>> = (0..c).map(|_| Vec::with_capacity(n)).collect();
    for (nc, p) in g.chunks_mut(plane).enumerate() {
        by_channel[nc % c].push(p);
    }
    let (dgamma, dbeta): (Vec<f32>, Vec<f32>) = by_channel
        .into_par_iter()
        .enumerate()
        .map(|(ch, planes)| {
            let scale = gamma[ch] * inv_std[ch];
            let shift = beta[ch] - mean[ch] * scale;
            let (mut sg, mut sgx) = (0f64, 0f64);
            for (b, p) in planes.into_iter().enumerate() {
                let xs = &x[(b * c + ch) * plane..(b * c + ch + 1) * plane];
                let (pg, pgx) = masked_sums(p, xs, scale, shift, relu);
                sg += pg as f64;
                sgx += (pgx - mean[ch] * pg) as f64;
            }
            ((sgx * inv_std[ch] as f64) as f32, sg as f32)
        })
        .unzip();
    // pass 2: dx = γ/σ · (g − mean(g) − x̂ · mean(g·x̂))
    g.par_chunks_mut(plane).enumerate().for_each(|(nc, d)| {
        let ch = nc % c;
        let k = gamma[ch] * inv_std[ch];
        let (mg, mgx) = (dbeta[ch] / count, dgamma[ch] / count);
        let (m, is) = (mean[ch], inv_std[ch]);
        for (out, &x) in d.iter_mut().zip(&x[nc * plane..(nc + 1) * plane]) {
            *out = k * (*out - mg - (x - m) * is * mgx);
        }
    });
    (dgamma, dbeta)
}

impl CustomOp3 for FusedBn {
    fn name(&self) -> &'static str {
        "batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = cpu_slice(s1, l1, "batch norm input")?;
        let gamma = cpu_slice(s2, l2, "batch norm scale")?;
        let beta = cpu_slice(s3, l3, "batch norm shift")?;
        let dims = split_dims(l1.dims());
        let (y, stats, inv_std) = normalise(x, dims, (gamma, beta), self.eps, self.relu, None);
        *self.saved()? = Saved::Host { stats, inv_std };
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use super::cuda;
        let dev = cuda::device(s1);
        let x = cuda::view(s1, l1, "batch norm input")?;
        let gamma = cuda::view(s2, l2, "batch norm scale")?;
        let beta = cuda::view(s3, l3, "batch norm shift")?;
        let dims = split_dims(l1.dims());
        let out = cuda::bn_forward(dev, &x, (&gamma, &beta), dims, self.eps, self.relu)?;
        let vector = |s| cuda::vector(s, dev, dims.1);
        *self.saved()? = Saved::Device {
            mean: vector(out.mean),
            var: vector(out.var),
            inv_std: vector(out.inv_std),
            count: dims.0 * dims.2,
        };
        Ok((cuda::storage(out.y, dev), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dims = split_dims(x.dims());
        let saved = self.saved()?;
        #[cfg(feature = "cuda")]
        if let Saved::Device { mean, inv_std, .. } = &*saved {
            let (len, c) = (x.elem_count(), dims.1);
            let op = GpuBackward {
                gamma: gamma.contiguous()?,
                mean: mean.clone(),
                inv_std: inv_std.clone(),
                relu: self.relu,
            };
            let packed = x
                .contiguous()?
                .apply_op3(&_res.contiguous()?, &grad.contiguous()?, op)?;
            return Ok((
                Some(packed.narrow(0, 0, len)?.reshape(x.shape())?),
                Some(packed.narrow(0, len, c)?),
                Some(packed.narrow(0, len + c, c)?),
            ));
        }
        let Saved::Host { stats, inv_std } = &*saved else {
            bail!("batch norm: the backward pass found no statistics of its forward pass")
        };
        let (gammas, betas): (Vec<f32>, Vec<f32>) = (gamma.to_vec1()?, beta.to_vec1()?);
        let mut g: Vec<f32> = grad.flatten_all()?.to_vec1()?;
        let (dgamma, dbeta) = with_cpu_data(x, "batch norm input", |xs| {
            normalise_backward(
                &mut g,
                xs,
                dims,
                &gammas,
                &betas,
                &stats.mean,
                inv_std,
                self.relu,
            )
        })?;
        let (dev, c) = (x.device(), dims.1);
        Ok((
            Some(Tensor::from_vec(g, x.shape(), dev)?),
            Some(Tensor::from_vec(dgamma, c, dev)?),
            Some(Tensor::from_vec(dbeta, c, dev)?),
        ))
    }
}

/// The backward pass of [`FusedBn`] on a GPU, as one op over `(x, y, dy)` whose output packs
/// `[dx | dγ | dβ]` (an op has one output; the caller splits it into views).
#[cfg(feature = "cuda")]
struct GpuBackward {
    gamma: Tensor,
    mean: Tensor,
    inv_std: Tensor,
    relu: bool,
}

#[cfg(feature = "cuda")]
impl CustomOp3 for GpuBackward {
    fn name(&self) -> &'static str {
        "batch-norm-train-backward"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        bail!("batch norm: the GPU backward pass was given CPU tensors")
    }

    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use super::cuda;
        let dims = split_dims(l1.dims());
        let dev = cuda::device(s1);
        let (x, y, dy) = (
            cuda::view(s1, l1, "batch norm input")?,
            cuda::view(s2, l2, "batch norm output")?,
            cuda::view(s3, l3, "batch norm gradient")?,
        );
        let (gs, gl) = self.gamma.storage_and_layout();
        let (ms, ml) = self.mean.storage_and_layout();
        let (is, il) = self.inv_std.storage_and_layout();
        let (
            candle_core::Storage::Cuda(gs),
            candle_core::Storage::Cuda(ms),
            candle_core::Storage::Cuda(is),
        ) = (&*gs, &*ms, &*is)
        else {
            bail!("batch norm: the scale or the statistics are not on the GPU")
        };
        let out = cuda::bn_backward(
            dev,
            (&x, &y, &dy),
            &cuda::view(gs, gl, "batch norm scale")?,
            (
                &cuda::view(ms, ml, "batch norm mean")?,
                &cuda::view(is, il, "batch norm 1/σ")?,
            ),
            dims,
            self.relu,
        )?;
        let len = dims.0 * dims.1 * dims.2 + 2 * dims.1;
        Ok((cuda::storage(out, dev), Shape::from(len)))
    }
}
