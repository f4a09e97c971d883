//! A k×k convolution over all input channels (the stem), as one matrix product per image over the
//! image's unfolded patches (im2col), run by `gemm` inside rayon's per-image tasks. candle's `conv2d`
//! backward also computes the gradient of the network's input, which nothing needs, and took about two
//! thirds of the stem's time on the FBNet-B step of benches/training-speed.sh; here the input gradient is
//! only computed when the input is part of the graph.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::pointwise::{Mat, matmul};
use super::{batch_sum, cpu_slice, with_cpu_data};

/// `x` `[n, cin, h, w]` convolved with `weight` `[cout, cin, k, k]` at `stride`, padding `k/2` (as the
/// ONNX graphs of the shared core). Differentiable in both; on a non-CPU device, candle's `conv2d`.
pub fn dense_conv(x: &Tensor, weight: &Tensor, stride: usize) -> Result<Tensor> {
    let (_, cin, _, _) = x.dims4()?;
    let (_, wc, k, k2) = weight.dims4()?;
    if wc != cin || k != k2 || k % 2 == 0 || stride == 0 {
        bail!(
            "convolution weight {:?} at stride {stride} does not fit an input of {cin} channels",
            weight.dims()
        )
    }
    if !x.device().is_cpu() {
        return x.conv2d(weight, k / 2, stride, 1, 1);
    }
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, Dense { k, stride })
}

#[derive(Clone, Copy, Debug)]
struct Dense {
    k: usize,
    stride: usize,
}

/// The geometry of one image.
#[derive(Clone, Copy, Debug)]
struct Patches {
    cin: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    k: usize,
    s: usize,
}

impl Patches {
    fn new(dims: &[usize], k: usize, s: usize) -> Patches {
        let (cin, h, w) = (dims[1], dims[2], dims[3]);
        let p = k / 2;
        Patches {
            cin,
            h,
            w,
            ho: (h + 2 * p - k) / s + 1,
            wo: (w + 2 * p - k) / s + 1,
            k,
            s,
        }
    }

    /// Rows of the unfolded image: one per input channel and kernel tap.
    fn rows(&self) -> usize {
        self.cin * self.k * self.k
    }

    fn plane(&self) -> usize {
        self.ho * self.wo
    }

    /// Calls `f(row, output index, input index)` for every tap that reads inside the image.
    #[inline(always)]
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize, usize)) {
        let p = self.k / 2;
        for c in 0..self.cin {
            for kr in 0..self.k {
                for kc in 0..self.k {
                    let row = (c * self.k + kr) * self.k + kc;
                    for oy in 0..self.ho {
                        let iy = (oy * self.s + kr) as isize - p as isize;
                        if iy < 0 || iy as usize >= self.h {
                            continue;
                        }
                        for ox in 0..self.wo {
                            let ix = (ox * self.s + kc) as isize - p as isize;
                            if ix < 0 || ix as usize >= self.w {
                                continue;
                            }
                            let at = (c * self.h + iy as usize) * self.w + ix as usize;
                            f(row, oy * self.wo + ox, at);
                        }
                    }
                }
            }
        }
    }

    /// The image's patches as a `rows × plane` matrix (zeros where a tap falls in the padding).
    fn unfold(&self, x: &[f32]) -> Vec<f32> {
        let plane = self.plane();
        let mut cols = vec![0f32; self.rows() * plane];
        self.for_each_tap(|row, o, i| cols[row * plane + o] = x[i]);
        cols
    }

    /// The adjoint of [`Patches::unfold`]: `dx += fold(cols)`.
    fn fold(&self, cols: &[f32], dx: &mut [f32]) {
        let plane = self.plane();
        self.for_each_tap(|row, o, i| dx[i] += cols[row * plane + o]);
    }
}

impl CustomOp2 for Dense {
    fn name(&self) -> &'static str {
        "dense-conv"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = cpu_slice(s1, l1, "convolution input")?;
        let w = cpu_slice(s2, l2, "convolution weight")?;
        let pt = Patches::new(l1.dims(), self.k, self.stride);
        let (n, cout) = (l1.dims()[0], l2.dims()[0]);
        let (rows, plane) = (pt.rows(), pt.plane());
        let mut y = vec![0f32; n * cout * plane];
        y.par_chunks_mut(cout * plane)
            .zip(x.par_chunks(pt.cin * pt.h * pt.w))
            .for_each(|(yb, xb)| {
                let cols = pt.unfold(xb);
                matmul(
                    yb,
                    cout,
                    plane,
                    rows,
                    Mat::rows(w, rows),
                    Mat::rows(&cols, plane),
                    false,
                );
            });
        Ok((CpuStorage::F32(y), Shape::from((n, cout, pt.ho, pt.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let pt = Patches::new(x.dims(), self.k, self.stride);
        let cout = weight.dim(0)?;
        let (rows, plane) = (pt.rows(), pt.plane());
        let image = pt.cin * pt.h * pt.w;
        // the network's input is not part of the graph: its gradient is not needed
        let want_dx = x.track_op();
        let (dw, dx) = with_cpu_data(grad, "convolution gradient", |dy| {
            with_cpu_data(x, "convolution input", |xs| {
                with_cpu_data(weight, "convolution weight", |w| {
                    let n = xs.len() / image.max(1);
                    let dw = batch_sum(n, cout * rows, |acc, b| {
                        let cols = pt.unfold(&xs[b * image..(b + 1) * image]);
                        matmul(
                            acc,
                            cout,
                            rows,
                            plane,
                            Mat::rows(&dy[b * cout * plane..(b + 1) * cout * plane], plane),
                            Mat::transposed(&cols, plane),
                            true,
                        );
                    });
                    let dx = want_dx.then(|| {
                        let mut dx = vec![0f32; xs.len()];
                        dx.par_chunks_mut(image)
                            .zip(dy.par_chunks(cout * plane))
                            .for_each(|(db, gb)| {
                                let mut cols = vec![0f32; rows * plane];
                                matmul(
                                    &mut cols,
                                    rows,
                                    plane,
                                    cout,
                                    Mat::transposed(w, rows),
                                    Mat::rows(gb, plane),
                                    false,
                                );
                                pt.fold(&cols, db);
                            });
                        dx
                    });
                    (dw, dx)
                })
            })
        })???;
        let dx = match dx {
            Some(dx) => Some(Tensor::from_vec(dx, x.shape(), x.device())?),
            None => None,
        };
        Ok((
            dx,
            Some(Tensor::from_vec(dw, weight.shape(), weight.device())?),
        ))
    }
}
