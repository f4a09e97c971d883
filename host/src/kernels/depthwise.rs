//! Depthwise convolution (one `k`x`k` filter per channel, "same" padding `k/2`) with its backward, plane by
//! plane, on zero-padded copies so the inner loops are whole 8-lane vectors without bounds logic.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::cpu_slice;

/// `x` `[n, c, h, w]` convolved with `weight` `[c, 1, k, k]` at `stride`, padding `k/2` (as the ONNX
/// graphs of the shared core). Differentiable in both arguments. On the CPU and, with the `cuda` feature,
/// on a CUDA device (`kernels/cuda`); candle's grouped convolution would run one convolution per channel.
pub fn depthwise_conv(x: &Tensor, weight: &Tensor, stride: usize) -> Result<Tensor> {
    let (_, c, _, _) = x.dims4()?;
    let (wc, one, k, k2) = weight.dims4()?;
    if wc != c || one != 1 || k != k2 || k % 2 == 0 {
        bail!(
            "depthwise weight {:?} does not fit an input of {c} channels",
            weight.dims()
        )
    }
    let op = Depthwise {
        k,
        stride,
        pass: Pass::Forward,
    };
    x.contiguous()?.apply_op2(&weight.contiguous()?, op)
}

/// One pass of a depthwise convolution as an op of two tensors: the forward pass (`x`, weight), and the
/// two gradients its backward pass is made of, themselves ops so that each device runs its own kernels.
#[derive(Clone, Copy, Debug)]
struct Depthwise {
    k: usize,
    stride: usize,
    pass: Pass,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Pass {
    /// `x` `[n, c, h, w]` and the weight give `y` `[n, c, ho, wo]`.
    Forward,
    /// `dy` `[n, c, ho, wo]` and the weight give `dx` `[n, c, h, w]`.
    InputGrad { h: usize, w: usize },
    /// `x` and `dy` give `dw` `[c, 1, k, k]`, summed over the images.
    WeightGrad,
}

impl Depthwise {
    /// The input planes' `(n, c, h, w)` for the first argument's dims.
    fn input(&self, first: &[usize]) -> (usize, usize, usize, usize) {
        match self.pass {
            Pass::InputGrad { h, w } => (first[0], first[1], h, w),
            _ => (first[0], first[1], first[2], first[3]),
        }
    }

    fn names(&self) -> [&'static str; 2] {
        match self.pass {
            Pass::Forward => ["depthwise input", "depthwise weight"],
            Pass::InputGrad { .. } => ["depthwise gradient", "depthwise weight"],
            Pass::WeightGrad => ["depthwise input", "depthwise gradient"],
        }
    }

    fn output_shape(&self, (n, c, h, w): (usize, usize, usize, usize), p: &Plane) -> Shape {
        match self.pass {
            Pass::Forward => Shape::from((n, c, p.ho, p.wo)),
            Pass::InputGrad { .. } => Shape::from((n, c, h, w)),
            Pass::WeightGrad => Shape::from((c, 1, self.k, self.k)),
        }
    }
}

/// The geometry of one plane. The kernels work on a zero-padded copy of the input (no bounds logic in
/// the inner loops) and on output rows widened to a multiple of 8 (whole 8-lane vectors, the extra lanes
/// computed into scratch and dropped, or fed zeros).
///
/// At stride `s` > 1 each padded row is stored split by column phase: the columns `X` with `X % s == q`
/// lie in order in segment `q` of `ws` values. A tap `kc` of 8 neighbouring outputs then reads 8
/// consecutive values (segment `kc % s`, from `j0 + kc / s`) instead of every `s`-th one, so the stride-2
/// loops vectorise like the stride-1 ones.
#[derive(Clone, Copy, Debug)]
pub(super) struct Plane {
    h: usize,
    w: usize,
    pub ho: usize,
    pub wo: usize,
    k: usize,
    s: usize,
    /// Output row width rounded up to a multiple of 8.
    w8: usize,
    /// Rows and row width of the padded input.
    hp: usize,
    wp: usize,
    /// Length of one column-phase segment of a padded row (`wp / s`).
    ws: usize,
}

impl Plane {
    pub fn new(h: usize, w: usize, k: usize, s: usize) -> Plane {
        let p = k / 2;
        let (ho, wo) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
        let w8 = wo.div_ceil(8) * 8;
        let wp = ((w8 - 1) * s + k).max(w + 2 * p).next_multiple_of(s);
        Plane {
            h,
            w,
            ho,
            wo,
            k,
            s,
            w8,
            hp: h + 2 * p,
            wp,
            ws: wp / s,
        }
    }

    /// Where padded column `x` lies in its row: in the segment of its phase.
    #[inline(always)]
    fn col(&self, x: usize) -> usize {
        x % self.s * self.ws + x / self.s
    }

    /// For each column phase of a padded row, the first unpadded column `x0` in it and where `x0` lies
    /// in the row; the columns `x0 + s·i` follow it in order. (Walking these avoids a division per value.)
    #[inline(always)]
    fn phases(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let (p, s) = (self.k / 2, self.s);
        (0..s)
            .map(move |q| (q + s - p % s) % s)
            .filter(|&x0| x0 < self.w)
            .map(move |x0| (x0, self.col(x0 + p)))
    }

    /// At stride 2, where unpadded columns 0 and 1 lie in a padded row: columns `2i` and `2i + 1` lie
    /// `i` further on, each in its own phase segment.
    #[inline(always)]
    fn pair_starts(&self) -> (usize, usize) {
        let p = self.k / 2;
        (self.col(p), self.col(p + 1))
    }

    /// `inp` with `k/2` zero rows and columns around it, in rows `wp` wide split by column phase.
    #[inline(always)]
    fn padded(&self, inp: &[f32]) -> Vec<f32> {
        let p = self.k / 2;
        let mut pad = vec![0f32; self.hp * self.wp];
        for (row, prow) in inp
            .chunks_exact(self.w)
            .zip(pad.chunks_exact_mut(self.wp).skip(p))
        {
            if self.s == 1 {
                prow[p..p + self.w].copy_from_slice(row);
            } else if self.s == 2 {
                // stride 2, the one the spaces use, by column pairs: on 14x14 planes this was
                // measurably faster than the general walk below (examples/depthwise_step.rs)
                let (a, b) = self.pair_starts();
                let (first, second) = if a < b {
                    let (lo, hi) = prow.split_at_mut(b);
                    (&mut lo[a..], hi)
                } else {
                    let (lo, hi) = prow.split_at_mut(a);
                    (hi, &mut lo[b..])
                };
                let pairs = row.chunks_exact(2);
                if let &[last] = pairs.remainder() {
                    first[self.w / 2] = last;
                }
                for ((pr, a), b) in pairs.zip(first).zip(second) {
                    *a = pr[0];
                    *b = pr[1];
                }
            } else {
                for (x0, at) in self.phases() {
                    for (d, v) in prow[at..].iter_mut().zip(row[x0..].iter().step_by(self.s)) {
                        *d = *v;
                    }
                }
            }
        }
        pad
    }

    /// An output-shaped plane with rows widened to `w8` by zeros.
    #[inline(always)]
    fn widened(&self, g: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; self.ho * self.w8];
        for (row, src) in out.chunks_exact_mut(self.w8).zip(g.chunks_exact(self.wo)) {
            row[..self.wo].copy_from_slice(src);
        }
        out
    }

    /// Values in an input and in an output plane.
    fn sizes(&self) -> (usize, usize) {
        (self.h * self.w, self.ho * self.wo)
    }

    /// The convolution of every plane of `x` `[n, c, h, w]`, channel `ch` with filter `wt[ch]`.
    pub fn forward_all(&self, x: &[f32], wt: &[f32], c: usize) -> Vec<f32> {
        let ((hw, ohw), kk) = (self.sizes(), self.k * self.k);
        let mut out = vec![0f32; x.len() / hw * ohw];
        out.par_chunks_mut(ohw).enumerate().for_each(|(nc, o)| {
            let ch = nc % c;
            self.forward(&x[nc * hw..(nc + 1) * hw], &wt[ch * kk..(ch + 1) * kk], o);
        });
        out
    }

    /// The input gradient of [`Plane::forward_all`] for the output gradient `dy` `[n, c, ho, wo]`.
    pub fn backward_input_all(&self, dy: &[f32], wt: &[f32], c: usize) -> Vec<f32> {
        let ((hw, ohw), kk) = (self.sizes(), self.k * self.k);
        let mut dx = vec![0f32; dy.len() / ohw * hw];
        dx.par_chunks_mut(hw).enumerate().for_each(|(nc, d)| {
            let ch = nc % c;
            self.backward_input(
                &dy[nc * ohw..(nc + 1) * ohw],
                &wt[ch * kk..(ch + 1) * kk],
                d,
            );
        });
        dx
    }

    /// The filter gradient of [`Plane::forward_all`]: per channel, summed over the images in order.
    pub fn backward_weight_all(&self, x: &[f32], dy: &[f32], c: usize) -> Vec<f32> {
        let ((hw, ohw), kk) = (self.sizes(), self.k * self.k);
        let n = x.len() / (c * hw).max(1);
        let mut dw = vec![0f32; c * kk];
        dw.par_chunks_mut(kk).enumerate().for_each(|(ch, d)| {
            for b in 0..n {
                let nc = b * c + ch;
                self.backward_weight(&x[nc * hw..(nc + 1) * hw], &dy[nc * ohw..(nc + 1) * ohw], d);
            }
        });
        dw
    }

    /// `out += conv(inp, wt)` for one plane.
    fn forward(&self, inp: &[f32], wt: &[f32], out: &mut [f32]) {
        plane_forward(self, inp, wt, out)
    }

    /// `dx += convᵀ(dy, wt)` for one plane.
    fn backward_input(&self, dy: &[f32], wt: &[f32], dx: &mut [f32]) {
        if self.s == 1 {
            // at stride 1 the transposed convolution is the convolution with the kernel turned by 180°
            let flipped: Vec<f32> = wt.iter().rev().copied().collect();
            plane_forward(self, dy, &flipped, dx)
        } else {
            plane_backward_input_strided(self, dy, wt, dx)
        }
    }

    /// `dw += Σ dy · x` over one plane.
    fn backward_weight(&self, x: &[f32], dy: &[f32], dw: &mut [f32]) {
        plane_backward_weight(self, x, dy, dw)
    }
}

/// The 8 outputs of row `oy` from column `j0` of a convolution over the padded plane `pad`.
#[inline(always)]
fn taps<const S: usize>(p: &Plane, pad: &[f32], wt: &[f32], oy: usize, j0: usize) -> [f32; 8] {
    let (k, wp) = (p.k, p.wp);
    let mut acc = [0f32; 8];
    for kr in 0..k {
        let row = &pad[(oy * S + kr) * wp..(oy * S + kr + 1) * wp];
        let w = &wt[kr * k..(kr + 1) * k];
        for (kc, &wv) in w.iter().enumerate() {
            let at = kc % S * p.ws + j0 + kc / S;
            let src = &row[at..at + 8];
            for i in 0..8 {
                acc[i] += wv * src[i];
            }
        }
    }
    acc
}

/// [`plane_forward`] for a stride known at compile time.
#[inline(always)]
fn forward_rows<const S: usize>(p: &Plane, pad: &[f32], wt: &[f32], out: &mut [f32]) {
    for oy in 0..p.ho {
        let orow = &mut out[oy * p.wo..(oy + 1) * p.wo];
        for j0 in (0..p.w8).step_by(8) {
            let acc = taps::<S>(p, pad, wt, oy, j0);
            let n = 8.min(p.wo - j0);
            for (o, a) in orow[j0..j0 + n].iter_mut().zip(&acc) {
                *o += a;
            }
        }
    }
}

/// Stride 1 with a K×K kernel known at compile time, two output rows at a time: the K+1 input rows
/// they read are loaded once for both (2K² taps from K(K+1) loads instead of 2K²).
#[inline(always)]
fn forward_row_pairs<const K: usize>(p: &Plane, pad: &[f32], wt: &[f32], out: &mut [f32]) {
    let wp = p.wp;
    let w: &[f32; 49] = &{
        let mut w = [0f32; 49];
        w[..K * K].copy_from_slice(&wt[..K * K]);
        w
    };
    let store = |out: &mut [f32], oy: usize, j0: usize, acc: &[f32; 8]| {
        let n = 8.min(p.wo - j0);
        for (o, a) in out[oy * p.wo + j0..oy * p.wo + j0 + n].iter_mut().zip(acc) {
            *o += a;
        }
    };
    let mut oy = 0;
    while oy + 1 < p.ho {
        for j0 in (0..p.w8).step_by(8) {
            let (mut a0, mut a1) = ([0f32; 8], [0f32; 8]);
            for r in 0..=K {
                let row = &pad[(oy + r) * wp..(oy + r + 1) * wp];
                for kc in 0..K {
                    let src = &row[j0 + kc..j0 + kc + 8];
                    if r < K {
                        let wv = w[r * K + kc];
                        for i in 0..8 {
                            a0[i] += wv * src[i];
                        }
                    }
                    if r >= 1 {
                        let wv = w[(r - 1) * K + kc];
                        for i in 0..8 {
                            a1[i] += wv * src[i];
                        }
                    }
                }
            }
            store(out, oy, j0, &a0);
            store(out, oy + 1, j0, &a1);
        }
        oy += 2;
    }
    if oy < p.ho {
        for j0 in (0..p.w8).step_by(8) {
            store(out, oy, j0, &taps::<1>(p, pad, wt, oy, j0));
        }
    }
}

simd_fn! {
/// `out += conv(inp, wt)` for one plane: each 8 outputs of a row are summed over the k×k taps in
/// registers, then stored once.
fn plane_forward(p: &Plane, inp: &[f32], wt: &[f32], out: &mut [f32]) {
    let pad = p.padded(inp);
    match (p.s, p.k) {
        (1, 3) => forward_row_pairs::<3>(p, &pad, wt, out),
        (1, 5) => forward_row_pairs::<5>(p, &pad, wt, out),
        (1, _) => forward_rows::<1>(p, &pad, wt, out),
        (2, _) => forward_rows::<2>(p, &pad, wt, out),
        _ => {
            for oy in 0..p.ho {
                for ox in 0..p.wo {
                    let mut acc = 0f32;
                    for kr in 0..p.k {
                        for kc in 0..p.k {
                            acc += wt[kr * p.k + kc] * pad[(oy * p.s + kr) * p.wp + p.col(ox * p.s + kc)];
                        }
                    }
                    out[oy * p.wo + ox] += acc;
                }
            }
        }
    }
}
}

simd_fn! {
/// `dx += convᵀ(dy, wt)` for one plane at stride > 1, scattered into a padded plane split by column
/// phase, where each tap's share of an output row is one contiguous multiply-add.
fn plane_backward_input_strided(p: &Plane, dy: &[f32], wt: &[f32], dx: &mut [f32]) {
    let (k, s, wp) = (p.k, p.s, p.wp);
    let mut pad = vec![0f32; p.hp * wp];
    for oy in 0..p.ho {
        let grow = &dy[oy * p.wo..(oy + 1) * p.wo];
        for kr in 0..k {
            let row = &mut pad[(oy * s + kr) * wp..(oy * s + kr + 1) * wp];
            for kc in 0..k {
                let wv = wt[kr * k + kc];
                let at = kc % s * p.ws + kc / s;
                for (d, g) in row[at..at + p.wo].iter_mut().zip(grow) {
                    *d += wv * g;
                }
            }
        }
    }
    let pd = k / 2;
    for (drow, prow) in dx.chunks_exact_mut(p.w).zip(pad.chunks_exact(wp).skip(pd)) {
        if s == 2 {
            let (a, b) = p.pair_starts();
            if p.w % 2 == 1 {
                drow[p.w - 1] += prow[a + p.w / 2];
            }
            for ((pr, u), v) in drow.chunks_exact_mut(2).zip(&prow[a..]).zip(&prow[b..]) {
                pr[0] += u;
                pr[1] += v;
            }
        } else {
            for (x0, at) in p.phases() {
                for (d, v) in drow[x0..].iter_mut().step_by(s).zip(&prow[at..]) {
                    *d += v;
                }
            }
        }
    }
}
}

/// `dw[kr, ·] += Σ dy · x` for the K taps of each kernel row, with K 8-lane accumulators in registers.
#[inline(always)]
fn weight_rows<const K: usize, const S: usize>(p: &Plane, pad: &[f32], g: &[f32], dw: &mut [f32]) {
    let (s, wp) = (S, p.wp);
    for kr in 0..K {
        let mut acc = [[0f32; 8]; K];
        for oy in 0..p.ho {
            let row = &pad[(oy * s + kr) * wp..(oy * s + kr + 1) * wp];
            for j0 in (0..p.w8).step_by(8) {
                let gv = &g[oy * p.w8 + j0..oy * p.w8 + j0 + 8];
                for (kc, a) in acc.iter_mut().enumerate() {
                    let at = kc % S * p.ws + j0 + kc / S;
                    let src = &row[at..at + 8];
                    for i in 0..8 {
                        a[i] += gv[i] * src[i];
                    }
                }
            }
        }
        for (kc, a) in acc.iter().enumerate() {
            dw[kr * K + kc] += a.iter().sum::<f32>();
        }
    }
}

simd_fn! {
/// `dw += Σ dy · x` over one plane.
fn plane_backward_weight(p: &Plane, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let pad = p.padded(x);
    let g = p.widened(dy);
    match (p.k, p.s) {
        (3, 1) => weight_rows::<3, 1>(p, &pad, &g, dw),
        (5, 1) => weight_rows::<5, 1>(p, &pad, &g, dw),
        (3, 2) => weight_rows::<3, 2>(p, &pad, &g, dw),
        (5, 2) => weight_rows::<5, 2>(p, &pad, &g, dw),
        (k, _) => {
            for kr in 0..k {
                for kc in 0..k {
                    let mut acc = 0f32;
                    for oy in 0..p.ho {
                        for j in 0..p.wo {
                            acc += g[oy * p.w8 + j] * pad[(oy * p.s + kr) * p.wp + p.col(j * p.s + kc)];
                        }
                    }
                    dw[kr * k + kc] += acc;
                }
            }
        }
    }
}
}

impl CustomOp2 for Depthwise {
    fn name(&self) -> &'static str {
        match self.pass {
            Pass::Forward => "depthwise-conv",
            Pass::InputGrad { .. } => "depthwise-conv-input-grad",
            Pass::WeightGrad => "depthwise-conv-weight-grad",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims @ (_, c, h, w) = self.input(l1.dims());
        let [n1, n2] = self.names();
        let (a, b) = (cpu_slice(s1, l1, n1)?, cpu_slice(s2, l2, n2)?);
        let plane = Plane::new(h, w, self.k, self.stride);
        let out = match self.pass {
            Pass::Forward => plane.forward_all(a, b, c),
            Pass::InputGrad { .. } => plane.backward_input_all(a, b, c),
            Pass::WeightGrad => plane.backward_weight_all(a, b, c),
        };
        Ok((CpuStorage::F32(out), self.output_shape(dims, &plane)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use super::cuda;
        let dims @ (n, c, h, w) = self.input(l1.dims());
        let plane = Plane::new(h, w, self.k, self.stride);
        let d = cuda::DwDims {
            n,
            c,
            h,
            w,
            ho: plane.ho,
            wo: plane.wo,
            k: self.k,
            s: self.stride,
        };
        let [n1, n2] = self.names();
        let dev = cuda::device(s1);
        let (a, b) = (cuda::view(s1, l1, n1)?, cuda::view(s2, l2, n2)?);
        let out = match self.pass {
            Pass::Forward => cuda::dw_values(dev, false, &a, &b, d)?,
            Pass::InputGrad { .. } => cuda::dw_values(dev, true, &a, &b, d)?,
            Pass::WeightGrad => cuda::dw_weight_grad(dev, &a, &b, d)?,
        };
        Ok((cuda::storage(out, dev), self.output_shape(dims, &plane)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        if self.pass != Pass::Forward {
            bail!("{}: no second derivative", self.name())
        }
        let (_, _, h, w) = x.dims4()?;
        let pass = |pass| Depthwise { pass, ..*self };
        let grad = grad.contiguous()?;
        let dx = grad.apply_op2(&weight.contiguous()?, pass(Pass::InputGrad { h, w }))?;
        let dw = x.contiguous()?.apply_op2(&grad, pass(Pass::WeightGrad))?;
        Ok((Some(dx), Some(dw)))
    }
}
