//! Depthwise convolution (one `k`x`k` filter per channel, "same" padding `k/2`) with its backward, plane by
//! plane. Stride-1 rows are written as shifted slice operations so the compiler vectorises them.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::{cpu_slice, dot, with_cpu_data};

/// `x` `[n, c, h, w]` convolved with `weight` `[c, 1, k, k]` at `stride`, padding `k/2` (as the ONNX
/// graphs of the shared core). Differentiable in both arguments; on a non-CPU device the stock grouped
/// convolution is used.
pub fn depthwise_conv(x: &Tensor, weight: &Tensor, stride: usize) -> Result<Tensor> {
    let (_, c, _, _) = x.dims4()?;
    let (wc, one, k, k2) = weight.dims4()?;
    if wc != c || one != 1 || k != k2 || k % 2 == 0 {
        bail!(
            "depthwise weight {:?} does not fit an input of {c} channels",
            weight.dims()
        )
    }
    if !x.device().is_cpu() {
        return x.conv2d(weight, k / 2, stride, 1, c);
    }
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, Depthwise { k, stride })
}

#[derive(Clone, Copy, Debug)]
struct Depthwise {
    k: usize,
    stride: usize,
}

/// The geometry of one plane.
#[derive(Clone, Copy, Debug)]
pub(super) struct Plane {
    h: usize,
    w: usize,
    pub ho: usize,
    pub wo: usize,
    k: usize,
    s: usize,
}

impl Plane {
    pub fn new(h: usize, w: usize, k: usize, s: usize) -> Plane {
        let p = k / 2;
        Plane {
            h,
            w,
            ho: (h + 2 * p - k) / s + 1,
            wo: (w + 2 * p - k) / s + 1,
            k,
            s,
        }
    }

    /// Input row read by output row `o` at kernel row `kr`, if inside the image.
    #[inline(always)]
    fn row(&self, o: usize, kr: usize) -> Option<usize> {
        let i = (o * self.s + kr) as isize - (self.k / 2) as isize;
        (i >= 0 && (i as usize) < self.h).then_some(i as usize)
    }

    /// Output columns `lo..hi` whose input column `ox·s + kc − k/2` is inside the image.
    #[inline(always)]
    fn cols(&self, kc: usize) -> (usize, usize) {
        let p = (self.k / 2) as isize;
        let (s, kc) = (self.s as isize, kc as isize);
        let lo = if kc < p { (p - kc + s - 1) / s } else { 0 };
        let last = self.w as isize - 1 + p - kc;
        let hi = if last < 0 {
            0
        } else {
            (last / s + 1).min(self.wo as isize)
        };
        (lo as usize, (hi as usize).max(lo as usize))
    }

    /// Input column of output column `ox` at kernel column `kc` (only within `cols(kc)`).
    #[inline(always)]
    fn col(&self, ox: usize, kc: usize) -> usize {
        ox * self.s + kc - self.k / 2
    }

    /// `out += conv(inp, wt)` for one plane.
    pub fn forward(&self, inp: &[f32], wt: &[f32], out: &mut [f32]) {
        plane_forward(self, inp, wt, out)
    }

    /// `dx += convᵀ(dy, wt)` for one plane.
    pub fn backward_input(&self, dy: &[f32], wt: &[f32], dx: &mut [f32]) {
        plane_backward_input(self, dy, wt, dx)
    }

    /// `dw += Σ dy · x` over one plane.
    pub fn backward_weight(&self, x: &[f32], dy: &[f32], dw: &mut [f32]) {
        plane_backward_weight(self, x, dy, dw)
    }
}

simd_fn! {
/// `out += conv(inp, wt)` for one plane.
fn plane_forward(p: &Plane, inp: &[f32], wt: &[f32], out: &mut [f32]) {
    for oy in 0..p.ho {
        let orow = &mut out[oy * p.wo..(oy + 1) * p.wo];
        for kr in 0..p.k {
            let Some(iy) = p.row(oy, kr) else { continue };
            let irow = &inp[iy * p.w..(iy + 1) * p.w];
            for kc in 0..p.k {
                let wv = wt[kr * p.k + kc];
                let (lo, hi) = p.cols(kc);
                if lo >= hi {
                    continue;
                }
                if p.s == 1 {
                    let start = p.col(lo, kc);
                    for (o, i) in orow[lo..hi].iter_mut().zip(&irow[start..start + hi - lo]) {
                        *o += wv * i;
                    }
                } else {
                    for (ox, o) in orow.iter_mut().enumerate().take(hi).skip(lo) {
                        *o += wv * irow[p.col(ox, kc)];
                    }
                }
            }
        }
    }
}
}

simd_fn! {
/// `dx += convᵀ(dy, wt)` for one plane.
fn plane_backward_input(p: &Plane, dy: &[f32], wt: &[f32], dx: &mut [f32]) {
    for oy in 0..p.ho {
        let grow = &dy[oy * p.wo..(oy + 1) * p.wo];
        for kr in 0..p.k {
            let Some(iy) = p.row(oy, kr) else { continue };
            let xrow = &mut dx[iy * p.w..(iy + 1) * p.w];
            for kc in 0..p.k {
                let wv = wt[kr * p.k + kc];
                let (lo, hi) = p.cols(kc);
                if lo >= hi {
                    continue;
                }
                if p.s == 1 {
                    let start = p.col(lo, kc);
                    for (x, g) in xrow[start..start + hi - lo].iter_mut().zip(&grow[lo..hi]) {
                        *x += wv * g;
                    }
                } else {
                    for (ox, g) in grow.iter().enumerate().take(hi).skip(lo) {
                        xrow[p.col(ox, kc)] += wv * g;
                    }
                }
            }
        }
    }
}
}

simd_fn! {
/// `dw += Σ dy · x` over one plane.
fn plane_backward_weight(p: &Plane, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    for oy in 0..p.ho {
        let grow = &dy[oy * p.wo..(oy + 1) * p.wo];
        for kr in 0..p.k {
            let Some(iy) = p.row(oy, kr) else { continue };
            let xrow = &x[iy * p.w..(iy + 1) * p.w];
            for kc in 0..p.k {
                let (lo, hi) = p.cols(kc);
                if lo >= hi {
                    continue;
                }
                let acc: f32 = if p.s == 1 {
                    let start = p.col(lo, kc);
                    dot(&grow[lo..hi], &xrow[start..start + hi - lo])
                } else {
                    (lo..hi).map(|ox| grow[ox] * xrow[p.col(ox, kc)]).sum()
                };
                dw[kr * p.k + kc] += acc;
            }
        }
    }
}
}

impl CustomOp2 for Depthwise {
    fn name(&self) -> &'static str {
        "depthwise-conv"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l1.shape().dims4()?;
        let x = cpu_slice(s1, l1, "depthwise input")?;
        let wt = cpu_slice(s2, l2, "depthwise weight")?;
        let plane = Plane::new(h, w, self.k, self.stride);
        let (hw, ohw, kk) = (h * w, plane.ho * plane.wo, self.k * self.k);
        let mut out = vec![0f32; n * c * ohw];
        out.par_chunks_mut(ohw).enumerate().for_each(|(nc, o)| {
            let ch = nc % c;
            plane.forward(&x[nc * hw..(nc + 1) * hw], &wt[ch * kk..(ch + 1) * kk], o);
        });
        Ok((
            CpuStorage::F32(out),
            Shape::from((n, c, plane.ho, plane.wo)),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (n, c, h, w) = x.dims4()?;
        let plane = Plane::new(h, w, self.k, self.stride);
        let (hw, ohw, kk) = (h * w, plane.ho * plane.wo, self.k * self.k);
        let dx = with_cpu_data(grad, "depthwise gradient", |dy| {
            with_cpu_data(weight, "depthwise weight", |wt| {
                let mut dx = vec![0f32; n * c * hw];
                dx.par_chunks_mut(hw).enumerate().for_each(|(nc, d)| {
                    let ch = nc % c;
                    plane.backward_input(
                        &dy[nc * ohw..(nc + 1) * ohw],
                        &wt[ch * kk..(ch + 1) * kk],
                        d,
                    );
                });
                dx
            })
        })??;
        let dw = with_cpu_data(grad, "depthwise gradient", |dy| {
            with_cpu_data(x, "depthwise input", |xs| {
                let mut dw = vec![0f32; c * kk];
                dw.par_chunks_mut(kk).enumerate().for_each(|(ch, d)| {
                    for b in 0..n {
                        let nc = b * c + ch;
                        plane.backward_weight(
                            &xs[nc * hw..(nc + 1) * hw],
                            &dy[nc * ohw..(nc + 1) * ohw],
                            d,
                        );
                    }
                });
                dw
            })
        })??;
        Ok((
            Some(Tensor::from_vec(dx, (n, c, h, w), x.device())?),
            Some(Tensor::from_vec(dw, weight.shape(), weight.device())?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_ranges_stay_inside_the_image() {
        for (w, k, s) in [(7, 3, 1), (7, 5, 2), (1, 5, 1), (2, 5, 2), (8, 3, 2)] {
            let p = Plane::new(w, w, k, s);
            for kc in 0..k {
                let (lo, hi) = p.cols(kc);
                for ox in 0..p.wo {
                    let ix = (ox * s + kc) as isize - (k / 2) as isize;
                    let inside = ix >= 0 && (ix as usize) < w;
                    assert_eq!(
                        inside,
                        (lo..hi).contains(&ox),
                        "w{w} k{k} s{s} kc{kc} ox{ox}"
                    );
                }
            }
        }
    }
}
