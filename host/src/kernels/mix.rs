//! One term `m_i · y` of the super net's candidate mix, alone or added to the sum of the terms before it.
//! candle computes it as a broadcast multiply by a scalar tensor, whose backward reduces over every
//! broadcast dimension on a slow strided path (about 45 ms for a 64×96×28×28 output on the development
//! machine); here the backward is one scale and one dot product per image.
//!
//! The mixing weights are either one vector `[k]` for the whole batch or one row per image `[n, k]`
//! (Gumbel noise drawn per image, so each image of a batch sees another mixture).

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::{cpu_slice, with_cpu_data};

/// `y · m[i]` (or `y[b] · m[b, i]` per image `b`), differentiable in `y` and in the mixing weights `m`.
pub fn weighted(y: &Tensor, m: &Tensor, i: usize) -> Result<Tensor> {
    check(y, m, i)?;
    if !y.device().is_cpu() {
        return y.broadcast_mul(&column(y, m, i)?);
    }
    y.contiguous()?.apply_op2(&m.contiguous()?, Weighted { i })
}

/// `acc + y · m[i]`: the next term of the mix added in the same pass (a separate `weighted` and add cost
/// one more pass forward and two more backward, where candle zeroes and accumulates the add's gradients).
pub fn weighted_add(acc: &Tensor, y: &Tensor, m: &Tensor, i: usize) -> Result<Tensor> {
    check(y, m, i)?;
    if acc.dims() != y.dims() {
        bail!("mix terms {:?} and {:?} differ", acc.dims(), y.dims())
    }
    if !y.device().is_cpu() {
        return acc + y.broadcast_mul(&column(y, m, i)?)?;
    }
    acc.contiguous()?
        .apply_op3(&y.contiguous()?, &m.contiguous()?, WeightedAdd { i })
}

/// The weights must be a vector with an entry `i`, or a matrix with a row per image of `y`.
fn check(y: &Tensor, m: &Tensor, i: usize) -> Result<()> {
    let ok = match m.dims() {
        [k] => i < *k,
        [n, k] => i < *k && y.rank() > 0 && y.dim(0)? == *n,
        _ => false,
    };
    if !ok {
        bail!(
            "mixing weight {i} of a {:?} tensor for a term {:?}",
            m.dims(),
            y.dims()
        )
    }
    Ok(())
}

/// Weight `i` shaped to broadcast over `y` (the stock-op path of other devices).
fn column(y: &Tensor, m: &Tensor, i: usize) -> Result<Tensor> {
    match m.rank() {
        1 => m.get(i),
        _ => {
            let mut shape = vec![1; y.rank()];
            shape[0] = y.dim(0)?;
            m.narrow(1, i, 1)?.reshape(shape)
        }
    }
}

/// Weight `i` of each of the `n` images of a term.
fn per_image(m: &[f32], dims: &[usize], i: usize, n: usize) -> Vec<f32> {
    match dims {
        [_] => vec![m[i]; n],
        _ => (0..n).map(|b| m[b * dims[1] + i]).collect(),
    }
}

struct Weighted {
    i: usize,
}

struct WeightedAdd {
    i: usize,
}

/// `acc[b] + y[b] · w[b]` over images of `per` values (`acc` absent: `y[b] · w[b]`).
fn mix_forward(acc: Option<&[f32]>, y: &[f32], w: &[f32]) -> Vec<f32> {
    let per = y.len() / w.len().max(1);
    let mut out = vec![0f32; y.len()];
    out.par_chunks_mut(per.max(1))
        .enumerate()
        .for_each(|(b, o)| {
            let (y, w) = (&y[b * per..(b + 1) * per], w[b]);
            match acc {
                Some(acc) => {
                    let a = &acc[b * per..(b + 1) * per];
                    for ((o, &a), &y) in o.iter_mut().zip(a).zip(y) {
                        *o = a + y * w;
                    }
                }
                None => o.iter_mut().zip(y).for_each(|(o, &v)| *o = v * w),
            }
        });
    out
}

/// `(dy, dm)` of a term `y · m[i]` for the output gradient `grad`: the gradient scaled per image, and
/// `Σ grad·y` per image at column `i` (summed over the images, in order, for a vector `m`), so it does
/// not depend on rayon's scheduling.
fn term_backward(y: &Tensor, m: &Tensor, i: usize, grad: &Tensor) -> Result<(Tensor, Tensor)> {
    let n = y.dim(0)?;
    let weights: Vec<f32> = m.flatten_all()?.to_vec1()?;
    let w = per_image(&weights, m.dims(), i, n);
    let (dy, dots) = with_cpu_data(grad, "mix gradient", |g| {
        with_cpu_data(y, "mixed output", |y| {
            let per = y.len() / n.max(1);
            let dy = mix_forward(None, g, &w);
            let dots: Vec<f64> = g
                .par_chunks(per.max(1))
                .zip(y.par_chunks(per.max(1)))
                .map(|(g, y)| {
                    g.chunks(1 << 14)
                        .zip(y.chunks(1 << 14))
                        .map(|(g, y)| g.iter().zip(y).map(|(a, b)| a * b).sum::<f32>() as f64)
                        .sum::<f64>()
                })
                .collect();
            (dy, dots)
        })
    })??;
    let mut dm = vec![0f32; weights.len()];
    match m.dims() {
        [_] => dm[i] = dots.iter().sum::<f64>() as f32,
        [_, k] => dots
            .iter()
            .enumerate()
            .for_each(|(b, d)| dm[b * k + i] = *d as f32),
        _ => bail!("mixing weights of shape {:?}", m.dims()),
    }
    Ok((
        Tensor::from_vec(dy, y.shape(), y.device())?,
        Tensor::from_vec(dm, m.shape(), m.device())?,
    ))
}

/// The weights of the term, one per image of a `y` with `y_layout`'s shape.
fn weights_of(s: &CpuStorage, l: &Layout, y_layout: &Layout, i: usize) -> Result<Vec<f32>> {
    let m = cpu_slice(s, l, "mixing weights")?;
    let n = y_layout.dims().first().copied().unwrap_or(1);
    Ok(per_image(m, l.dims(), i, n))
}

impl CustomOp3 for WeightedAdd {
    fn name(&self) -> &'static str {
        "weighted-add"
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
        let acc = cpu_slice(s1, l1, "mix so far")?;
        let y = cpu_slice(s2, l2, "mixed output")?;
        let w = weights_of(s3, l3, l2, self.i)?;
        Ok((
            CpuStorage::F32(mix_forward(Some(acc), y, &w)),
            l2.shape().clone(),
        ))
    }

    fn bwd(
        &self,
        _acc: &Tensor,
        y: &Tensor,
        m: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dy, dm) = term_backward(y, m, self.i, grad)?;
        Ok((Some(grad.clone()), Some(dy), Some(dm)))
    }
}

impl CustomOp2 for Weighted {
    fn name(&self) -> &'static str {
        "weighted"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = cpu_slice(s1, l1, "mixed output")?;
        let w = weights_of(s2, l2, l1, self.i)?;
        Ok((
            CpuStorage::F32(mix_forward(None, y, &w)),
            l1.shape().clone(),
        ))
    }

    fn bwd(
        &self,
        y: &Tensor,
        m: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dy, dm) = term_backward(y, m, self.i, grad)?;
        Ok((Some(dy), Some(dm)))
    }
}
