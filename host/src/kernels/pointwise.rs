//! 1x1 (grouped) convolution of NCHW activations as one small matrix product per image and group, run
//! single-threaded by `gemm` inside rayon's per-image tasks. candle's batched `matmul` of a broadcast weight
//! spends its backward on a batched product per image followed by a reduction over the batch, each in a
//! freshly zeroed and accumulated tensor; here the weight gradient is accumulated in place per thread.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};
use gemm::{Parallelism, gemm};
use rayon::prelude::*;

use super::{batch_sum, cpu_slice, with_cpu_data};

/// `x` `[n, cin, h, w]` through a 1x1 convolution with `groups` and weight `[cout, cin/groups, 1, 1]`,
/// differentiable in both. On a non-CPU device, candle's batched matrix product.
pub fn pointwise_conv(x: &Tensor, weight: &Tensor, groups: usize) -> Result<Tensor> {
    let (n, cin, h, w) = x.dims4()?;
    let (cout, per_group, k1, k2) = weight.dims4()?;
    if groups == 0
        || cin % groups != 0
        || cout % groups != 0
        || per_group * groups != cin
        || k1 != 1
        || k2 != 1
    {
        bail!(
            "1x1 weight {:?} in {groups} groups does not fit an input of {cin} channels",
            weight.dims()
        )
    }
    if !x.device().is_cpu() {
        let w3 = weight.reshape((groups, cout / groups, cin / groups))?;
        return w3
            .broadcast_matmul(&x.reshape((n, groups, cin / groups, h * w))?)?
            .reshape((n, cout, h, w));
    }
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, PointwiseOp { groups })
}

struct PointwiseOp {
    groups: usize,
}

impl PointwiseOp {
    fn shape(&self, x: &[usize], cout: usize) -> Pointwise {
        Pointwise {
            cin: x[1],
            cout,
            groups: self.groups,
            plane: x[2] * x[3],
        }
    }
}

impl CustomOp2 for PointwiseOp {
    fn name(&self) -> &'static str {
        "pointwise-conv"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = cpu_slice(s1, l1, "1x1 convolution input")?;
        let w = cpu_slice(s2, l2, "1x1 convolution weight")?;
        let d = l1.dims();
        let pw = self.shape(d, l2.dims()[0]);
        let mut y = vec![0f32; d[0] * pw.cout * pw.plane];
        pw.forward(x, w, &mut y);
        Ok((CpuStorage::F32(y), Shape::from((d[0], pw.cout, d[2], d[3]))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let pw = self.shape(x.dims(), weight.dim(0)?);
        let (dx, dw) = with_cpu_data(grad, "1x1 convolution gradient", |dy| {
            with_cpu_data(weight, "1x1 convolution weight", |w| {
                with_cpu_data(x, "1x1 convolution input", |xs| {
                    let mut dx = vec![0f32; xs.len()];
                    pw.backward_input(dy, w, &mut dx, false);
                    (dx, pw.backward_weight(dy, xs))
                })
            })
        })???;
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), x.device())?),
            Some(Tensor::from_vec(dw, weight.shape(), weight.device())?),
        ))
    }
}

/// A row-major or transposed view of a matrix inside a slice: element `(i, j)` is at
/// `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(super) struct Mat<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    pub fn rows(data: &'a [f32], cols: usize) -> Mat<'a> {
        Mat {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> Mat<'a> {
        Mat {
            data,
            rs: 1,
            cs: cols,
        }
    }

    /// Panics unless an `r`×`c` view stays inside the slice (the bound that makes the `gemm` call sound).
    fn check(&self, r: usize, c: usize) {
        if r > 0 && c > 0 {
            assert!((r - 1) * self.rs + (c - 1) * self.cs < self.data.len());
        }
    }
}

/// `dst (m×n, row-major) (+)= lhs (m×k) · rhs (k×n)`, on the calling thread.
pub(super) fn matmul(
    dst: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
    lhs: Mat,
    rhs: Mat,
    accumulate: bool,
) {
    assert!(dst.len() >= m * n);
    lhs.check(m, k);
    rhs.check(k, n);
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the three views were checked to lie inside their slices; `dst` is borrowed mutably and
    // does not alias the shared `lhs` and `rhs`.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// The shape of a 1x1 convolution over planes of `plane` values; the weight is `[cout, cin/groups]`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Pointwise {
    pub cin: usize,
    pub cout: usize,
    pub groups: usize,
    pub plane: usize,
}

impl Pointwise {
    fn ci(&self) -> usize {
        self.cin / self.groups
    }

    fn co(&self) -> usize {
        self.cout / self.groups
    }

    pub fn weight_len(&self) -> usize {
        self.cout * self.ci()
    }

    /// `y[b] = W · x[b]` for every image (`y` is overwritten).
    pub fn forward(&self, x: &[f32], w: &[f32], y: &mut [f32]) {
        let (ci, co, p) = (self.ci(), self.co(), self.plane);
        y.par_chunks_mut(self.cout * p)
            .zip(x.par_chunks(self.cin * p))
            .for_each(|(yb, xb)| {
                for g in 0..self.groups {
                    matmul(
                        &mut yb[g * co * p..(g + 1) * co * p],
                        co,
                        p,
                        ci,
                        Mat::rows(&w[g * co * ci..(g + 1) * co * ci], ci),
                        Mat::rows(&xb[g * ci * p..(g + 1) * ci * p], p),
                        false,
                    );
                }
            });
    }

    /// `dx[b] (+)= Wᵀ · dy[b]`: added to what `dx` holds when `accumulate` (a residual's gradient).
    pub fn backward_input(&self, dy: &[f32], w: &[f32], dx: &mut [f32], accumulate: bool) {
        let (ci, co, p) = (self.ci(), self.co(), self.plane);
        dx.par_chunks_mut(self.cin * p)
            .zip(dy.par_chunks(self.cout * p))
            .for_each(|(xb, gb)| {
                for g in 0..self.groups {
                    matmul(
                        &mut xb[g * ci * p..(g + 1) * ci * p],
                        ci,
                        p,
                        co,
                        Mat::transposed(&w[g * co * ci..(g + 1) * co * ci], ci),
                        Mat::rows(&gb[g * co * p..(g + 1) * co * p], p),
                        accumulate,
                    );
                }
            });
    }

    /// `dW = Σ_b dy[b] · x[b]ᵀ`, accumulated in place per group of images (`batch_sum`).
    pub fn backward_weight(&self, dy: &[f32], x: &[f32]) -> Vec<f32> {
        let (ci, co, p) = (self.ci(), self.co(), self.plane);
        let n = dy.len() / (self.cout * p).max(1);
        batch_sum(n, self.weight_len(), |acc, b| {
            let gb = &dy[b * self.cout * p..(b + 1) * self.cout * p];
            let xb = &x[b * self.cin * p..(b + 1) * self.cin * p];
            for g in 0..self.groups {
                matmul(
                    &mut acc[g * co * ci..(g + 1) * co * ci],
                    co,
                    ci,
                    p,
                    Mat::rows(&gb[g * co * p..(g + 1) * co * p], p),
                    Mat::transposed(&xb[g * ci * p..(g + 1) * ci * p], p),
                    true,
                );
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same products written as plain loops.
    fn naive(pw: &Pointwise, x: &[f32], w: &[f32], n: usize) -> Vec<f32> {
        let (ci, co, p) = (pw.ci(), pw.co(), pw.plane);
        let mut y = vec![0f32; n * pw.cout * p];
        for b in 0..n {
            for o in 0..pw.cout {
                let g = o / co;
                for i in 0..ci {
                    for s in 0..p {
                        y[(b * pw.cout + o) * p + s] +=
                            w[o * ci + i] * x[(b * pw.cin + g * ci + i) * p + s];
                    }
                }
            }
        }
        y
    }

    #[test]
    fn grouped_products_and_their_gradients_match_plain_loops() {
        let (n, cin, cout, groups, plane) = (3, 6, 4, 2, 5);
        let pw = Pointwise {
            cin,
            cout,
            groups,
            plane,
        };
        let x: Vec<f32> = (0..n * cin * plane)
            .map(|i| ((i * 7) % 11) as f32 - 5.0)
            .collect();
        let w: Vec<f32> = (0..pw.weight_len())
            .map(|i| ((i * 5) % 7) as f32 * 0.5 - 1.0)
            .collect();
        let mut y = vec![f32::NAN; n * cout * plane];
        pw.forward(&x, &w, &mut y);
        assert_eq!(y, naive(&pw, &x, &w, n));
        // gradients as Σ y·dy derivatives: dW[o,i] = Σ dy·x, dx = Wᵀdy; checked through the identities
        // <dy, W x> = <Wᵀ dy, x> = <dW, W> for a probe dy
        let dy: Vec<f32> = (0..y.len()).map(|i| ((i * 3) % 5) as f32 - 2.0).collect();
        let mut dx = vec![1.0f32; x.len()];
        pw.backward_input(&dy, &w, &mut dx, true);
        let mut dx0 = vec![0.0f32; x.len()];
        pw.backward_input(&dy, &w, &mut dx0, false);
        assert!(dx.iter().zip(&dx0).all(|(a, b)| *a == b + 1.0));
        let dw = pw.backward_weight(&dy, &x);
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f32>();
        let lhs = dot(&dy, &y);
        assert!((lhs - dot(&dx0, &x)).abs() < 1e-3 * lhs.abs().max(1.0));
        assert!((lhs - dot(&dw, &w)).abs() < 1e-3 * lhs.abs().max(1.0));
    }
}
