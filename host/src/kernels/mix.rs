//! One term `m_i · y` of the super net's candidate mix, alone or added to the sum of the terms before it.
//! candle computes it as a broadcast multiply by a scalar tensor, whose backward reduces over every broadcast dimension on a slow strided path (about 45
//! ms for a 64×96×28×28 output on the development machine); here the backward is one scale and one dot
//! product.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::{cpu_slice, with_cpu_data};

/// `y · m[i]`, differentiable in `y` and in the mixing weights `m` (a vector).
pub fn weighted(y: &Tensor, m: &Tensor, i: usize) -> Result<Tensor> {
    if m.rank() != 1 || i >= m.dim(0)? {
        bail!("mixing weight {i} of a {:?} vector", m.dims())
    }
    if !y.device().is_cpu() {
        return y.broadcast_mul(&m.get(i)?);
    }
    y.contiguous()?.apply_op2(&m.contiguous()?, Weighted { i })
}

/// `acc + y · m[i]`: the next term of the mix added in the same pass (a separate `weighted` and add cost
/// one more pass forward and two more backward, where candle zeroes and accumulates the add's gradients).
pub fn weighted_add(acc: &Tensor, y: &Tensor, m: &Tensor, i: usize) -> Result<Tensor> {
    if m.rank() != 1 || i >= m.dim(0)? || acc.dims() != y.dims() {
        bail!(
            "mixing weight {i} of a {:?} vector for terms {:?} and {:?}",
            m.dims(),
            acc.dims(),
            y.dims()
        )
    }
    if !y.device().is_cpu() {
        return acc + y.broadcast_mul(&m.get(i)?)?;
    }
    acc.contiguous()?
        .apply_op3(&y.contiguous()?, &m.contiguous()?, WeightedAdd { i })
}

struct Weighted {
    i: usize,
}

struct WeightedAdd {
    i: usize,
}

/// `(dy, dm)` of a term `y · m[i]` for the output gradient `grad`: the scaled gradient and `Σ grad·y` at
/// `i`. The dot product is summed over fixed chunks, added in order, so it does not depend on rayon's
/// scheduling.
fn term_backward(y: &Tensor, m: &Tensor, i: usize, grad: &Tensor) -> Result<(Tensor, Tensor)> {
    let weights: Vec<f32> = m.to_vec1()?;
    let dy = grad.affine(weights[i] as f64, 0.0)?;
    let dot = with_cpu_data(grad, "mix gradient", |g| {
        with_cpu_data(y, "mixed output", |y| {
            let partials: Vec<f64> = g
                .par_chunks(1 << 14)
                .zip(y.par_chunks(1 << 14))
                .map(|(g, y)| g.iter().zip(y).map(|(a, b)| a * b).sum::<f32>() as f64)
                .collect();
            partials.iter().sum::<f64>()
        })
    })??;
    let mut dm = vec![0f32; weights.len()];
    dm[i] = dot as f32;
    Ok((dy, Tensor::from_vec(dm, weights.len(), m.device())?))
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
        let w = cpu_slice(s3, l3, "mixing weights")?[self.i];
        let mut out = vec![0f32; y.len()];
        out.par_chunks_mut(1 << 14)
            .zip(acc.par_chunks(1 << 14).zip(y.par_chunks(1 << 14)))
            .for_each(|(o, (a, y))| {
                for ((o, &a), &y) in o.iter_mut().zip(a).zip(y) {
                    *o = a + y * w;
                }
            });
        Ok((CpuStorage::F32(out), l2.shape().clone()))
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
        let w = cpu_slice(s2, l2, "mixing weights")?[self.i];
        let mut out = vec![0f32; y.len()];
        out.par_chunks_mut(1 << 14)
            .zip(y.par_chunks(1 << 14))
            .for_each(|(o, y)| o.iter_mut().zip(y).for_each(|(o, &v)| *o = v * w));
        Ok((CpuStorage::F32(out), l1.shape().clone()))
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
