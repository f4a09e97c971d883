//! One term `m_i · y` of the super net's candidate mix. candle computes it as a broadcast multiply by a
//! scalar tensor, whose backward reduces over every broadcast dimension on a slow strided path (about 45
//! ms for a 64×96×28×28 output on the development machine); here the backward is one scale and one dot
//! product.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};
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

struct Weighted {
    i: usize,
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
        let weights: Vec<f32> = m.to_vec1()?;
        let dy = grad.affine(weights[self.i] as f64, 0.0)?;
        let dot = with_cpu_data(grad, "mix gradient", |g| {
            with_cpu_data(y, "mixed output", |y| {
                // partial sums over fixed chunks, added in order: the same result however rayon
                // schedules the chunks
                let partials: Vec<f64> = g
                    .par_chunks(1 << 14)
                    .zip(y.par_chunks(1 << 14))
                    .map(|(g, y)| g.iter().zip(y).map(|(a, b)| a * b).sum::<f32>() as f64)
                    .collect();
                partials.iter().sum::<f64>()
            })
        })??;
        let mut dm = vec![0f32; weights.len()];
        dm[self.i] = dot as f32;
        Ok((
            Some(dy),
            Some(Tensor::from_vec(dm, weights.len(), m.device())?),
        ))
    }
}
