//! Training-mode batch norm, optionally fused with the ReLU after it, in one pass forward and one pass
//! backward (candle-nn's version is a chain of broadcast ops, each with its own backward, and it was the
//! larger half of a super-net step in our measurements).

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, D, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::{cpu_slice, dot, sum, sum_sq_dev, with_cpu_data};

/// The statistics of the batch a training-mode batch norm normalised with, for the running averages.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchStats {
    pub mean: Vec<f32>,
    /// Biased variance (what the batch was normalised with).
    pub var: Vec<f32>,
    /// Values per channel (batch × height × width), to unbias the variance.
    pub count: usize,
}

/// `relu?((x − μ_B) / √(σ²_B + ε) · γ + β)` over `x` `[n, c, …]` with the batch's per-channel statistics,
/// differentiable in `x`, `γ` and `β`. Returns the output and the statistics used.
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
    if !x.device().is_cpu() {
        return generic(x, gamma, beta, eps, relu);
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
    let stats = match saved.lock() {
        Ok(s) => s.stats.clone(),
        Err(_) => bail!("batch norm: statistics lost"),
    };
    Ok((y, stats))
}

/// The same computation from stock tensor ops (for devices without the fused kernel).
fn generic(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, BatchStats)> {
    let dims = x.dims().to_vec();
    let c = dims[1];
    let mut bshape = vec![1; dims.len()];
    bshape[1] = c;
    let xt = x.transpose(0, 1)?.contiguous()?.flatten_from(1)?;
    let count = xt.dim(1)?;
    let mean = xt.mean(D::Minus1)?;
    let centred = xt.broadcast_sub(&mean.unsqueeze(1)?)?;
    let var = centred.sqr()?.mean(D::Minus1)?;
    let scale = gamma.broadcast_div(&(var.clone() + eps)?.sqrt()?)?;
    let y = x
        .broadcast_sub(&mean.reshape(bshape.as_slice())?)?
        .broadcast_mul(&scale.reshape(bshape.as_slice())?)?
        .broadcast_add(&beta.reshape(bshape.as_slice())?)?;
    let y = if relu { y.relu()? } else { y };
    let stats = BatchStats {
        mean: mean.detach().to_vec1()?,
        var: var.detach().to_vec1()?,
        count,
    };
    Ok((y, stats))
}

/// What the forward pass leaves for the backward pass and the caller.
#[derive(Debug, Default)]
struct Saved {
    stats: BatchStats,
    inv_std: Vec<f32>,
}

struct FusedBn {
    eps: f64,
    relu: bool,
    saved: Arc<Mutex<Saved>>,
}

impl FusedBn {
    fn saved(&self) -> Result<std::sync::MutexGuard<'_, Saved>> {
        match self.saved.lock() {
            Ok(s) => Ok(s),
            Err(_) => bail!("batch norm: statistics lost"),
        }
    }
}

/// `(n, c, plane)` of an `[n, c, …]` shape.
fn split_dims(dims: &[usize]) -> (usize, usize, usize) {
    (dims[0], dims[1], dims[2..].iter().product())
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
        let (n, c, plane) = split_dims(l1.dims());
        let count = n * plane;
        // per channel: mean and biased variance, two passes in f64 over its n planes
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
        let inv_std: Vec<f32> = var
            .iter()
            .map(|&v| (1.0 / (v as f64 + self.eps).sqrt()) as f32)
            .collect();
        let mut y = vec![0f32; x.len()];
        let relu = self.relu;
        y.par_chunks_mut(plane).enumerate().for_each(|(nc, out)| {
            let ch = nc % c;
            let scale = gamma[ch] * inv_std[ch];
            let shift = beta[ch] - mean[ch] * scale;
            let inp = &x[nc * plane..(nc + 1) * plane];
            if relu {
                for (o, &v) in out.iter_mut().zip(inp) {
                    *o = (v * scale + shift).max(0.0);
                }
            } else {
                for (o, &v) in out.iter_mut().zip(inp) {
                    *o = v * scale + shift;
                }
            }
        });
        let mut saved = self.saved()?;
        saved.stats = BatchStats { mean, var, count };
        saved.inv_std = inv_std;
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, c, plane) = split_dims(x.dims());
        let count = (n * plane) as f32;
        let saved = self.saved()?;
        let (mean, inv_std) = (&saved.stats.mean, &saved.inv_std);
        let gammas: Vec<f32> = gamma.to_vec1()?;
        let relu = self.relu;
        // g = dy masked by the ReLU; per channel Σg (dβ) and Σg·x̂ (dγ)
        let (dx, dgamma, dbeta) = with_cpu_data(grad, "batch norm gradient", |dy| {
            with_cpu_data(x, "batch norm input", |xs| {
                with_cpu_data(res, "batch norm output", |ys| {
                    // g: dy through the ReLU's mask, once for both passes (dy itself without ReLU)
                    let masked: Vec<f32>;
                    let g: &[f32] = if relu {
                        masked = dy
                            .par_iter()
                            .zip(ys)
                            .map(|(&g, &y)| if y <= 0.0 { 0.0 } else { g })
                            .collect();
                        &masked
                    } else {
                        dy
                    };
                    let (dgamma, dbeta): (Vec<f32>, Vec<f32>) = (0..c)
                        .into_par_iter()
                        .map(|ch| {
                            let (mut sg, mut sgx) = (0f64, 0f64);
                            for b in 0..n {
                                let r = (b * c + ch) * plane..(b * c + ch + 1) * plane;
                                let pg = sum(&g[r.clone()]);
                                let pgx = dot(&g[r.clone()], &xs[r]) - mean[ch] * pg;
                                sg += pg as f64;
                                sgx += pgx as f64;
                            }
                            ((sgx * inv_std[ch] as f64) as f32, sg as f32)
                        })
                        .unzip();
                    let mut dx = vec![0f32; xs.len()];
                    dx.par_chunks_mut(plane).enumerate().for_each(|(nc, d)| {
                        let ch = nc % c;
                        let k = gammas[ch] * inv_std[ch];
                        let (mg, mgx) = (dbeta[ch] / count, dgamma[ch] / count);
                        let r = nc * plane..(nc + 1) * plane;
                        let (m, is) = (mean[ch], inv_std[ch]);
                        for ((out, &g), &x) in d.iter_mut().zip(&g[r.clone()]).zip(&xs[r]) {
                            *out = k * (g - mg - (x - m) * is * mgx);
                        }
                    });
                    (dx, dgamma, dbeta)
                })
            })
        })???;
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(dgamma, c, dev)?),
            Some(Tensor::from_vec(dbeta, c, dev)?),
        ))
    }
}
