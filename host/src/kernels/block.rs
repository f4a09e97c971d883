//! A whole candidate block of Table 2 in training mode as one differentiable op: 1x1 (grouped) expansion +
//! BN + ReLU, channel shuffle, k×k depthwise + BN + ReLU, 1x1 (grouped) projection + BN, residual add.
//!
//! Built from the stock ops and the single-layer kernels, a block is a dozen graph nodes, and candle's
//! backward gives every edge a freshly zeroed gradient that the edge's gradient is then added to (two extra
//! passes and two allocations per activation-sized edge), apart from the matrix products' own per-image
//! bookkeeping. Here the block keeps its intermediate activations, computes its backward in place on
//! buffers it owns and frees each as soon as it is consumed, so the graph sees one node per block.
//! On the FBNet-B network of the small preset (batch 128) this alone took a training step from 155 to
//! 184 images/s and its peak memory from 1.41 to 1.14 GB (README, "Training speed against PyTorch").

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::batchnorm::{BatchStats, HostStats, normalise, normalise_backward};
use super::depthwise::Plane;
use super::pointwise::Pointwise;
use super::{cpu_slice, with_cpu_data};

/// The geometry of one block (the fields of `mobile_core::ops` a block is built from).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockShape {
    pub cin: usize,
    pub mid: usize,
    pub cout: usize,
    pub groups: usize,
    pub kernel: usize,
    pub stride: usize,
    /// Whether there is a 1x1 expansion (without it the depthwise reads the input, `mid == cin`).
    pub expand: bool,
    /// Whether the input is added to the output (shape-preserving layers).
    pub residual: bool,
    /// The channel shuffle after a grouped expansion: output channel `i` is expansion channel
    /// `shuffle[i]` (empty: no shuffle).
    pub shuffle: Vec<usize>,
}

impl BlockShape {
    /// `(offset, length)` of each parameter in the flat vector, in the order of [`block_train`]'s
    /// `params`: [expansion weight, γ, β,] depthwise weight, γ, β, projection weight, γ, β.
    fn layout(&self) -> Vec<(usize, usize)> {
        let mut lens = Vec::new();
        if self.expand {
            lens.extend([self.mid * self.cin / self.groups, self.mid, self.mid]);
        }
        lens.extend([self.mid * self.kernel * self.kernel, self.mid, self.mid]);
        lens.extend([self.cout * self.mid / self.groups, self.cout, self.cout]);
        let mut at = 0;
        lens.into_iter()
            .map(|l| {
                at += l;
                (at - l, l)
            })
            .collect()
    }
}

/// The block's output for `x` `[n, cin, h, w]` with batch statistics, differentiable in `x` and every
/// parameter, and the statistics of its batch norms (expansion, depthwise, projection; without an
/// expansion the first is absent) for the running averages. `params` as in `BlockShape::layout`;
/// CPU tensors only (other devices use the layer-by-layer ops).
pub fn block_train(
    x: &Tensor,
    shape: &BlockShape,
    params: &[&Tensor],
    eps: f64,
) -> Result<(Tensor, Vec<BatchStats>)> {
    let layout = shape.layout();
    let (_, cin, _, _) = x.dims4()?;
    if cin != shape.cin || params.len() != layout.len() {
        bail!(
            "block of {} input channels and {} parameters given {:?} and {} parameters",
            shape.cin,
            layout.len(),
            x.dims(),
            params.len()
        )
    }
    for (p, &(_, len)) in params.iter().zip(&layout) {
        if p.elem_count() != len {
            bail!(
                "block parameter of shape {:?}, expected {len} values",
                p.dims()
            )
        }
    }
    if !x.device().is_cpu() {
        bail!("the fused block runs on the CPU only")
    }
    let flat = Tensor::cat(
        &params
            .iter()
            .map(|p| p.flatten_all())
            .collect::<Result<Vec<_>>>()?,
        0,
    )?;
    let saved = Arc::new(Mutex::new(None));
    let op = FusedBlock {
        shape: shape.clone(),
        eps,
        saved: saved.clone(),
    };
    let y = x.contiguous()?.apply_op2(&flat, op)?;
    let stats = match &*saved.lock().map_err(|_| lost())? {
        Some(s) => {
            s.bn.iter()
                .map(|(stats, _)| stats.to_device(x.device()))
                .collect::<Result<_>>()?
        }
        None => bail!("block: the forward pass left nothing"),
    };
    Ok((y, stats))
}

fn lost() -> candle_core::Error {
    candle_core::Error::Msg("block: saved activations lost".into())
}

/// Activations the backward pass needs, all `[n, c, plane]`.
struct Saved {
    /// Expansion output before BN (empty without expansion).
    a1: Vec<f32>,
    /// The depthwise input after BN, ReLU and shuffle (empty without expansion: it is `x`).
    h1: Vec<f32>,
    /// Depthwise output before BN.
    a2: Vec<f32>,
    /// Projection input (after BN and ReLU).
    h2: Vec<f32>,
    /// Projection output before BN.
    a3: Vec<f32>,
    /// Statistics and 1/σ of each batch norm, in order.
    bn: Vec<(HostStats, Vec<f32>)>,
}

struct FusedBlock {
    shape: BlockShape,
    eps: f64,
    saved: Arc<Mutex<Option<Saved>>>,
}

/// `out` plane `(b, i)` = `inp` plane `(b, idx[i])`.
fn gather_planes(inp: &[f32], idx: &[usize], plane: usize) -> Vec<f32> {
    let c = idx.len();
    let mut out = vec![0f32; inp.len()];
    out.par_chunks_mut(plane).enumerate().for_each(|(nc, o)| {
        let (b, i) = (nc / c, nc % c);
        let src = (b * c + idx[i]) * plane;
        o.copy_from_slice(&inp[src..src + plane]);
    });
    out
}

/// The inverse of [`gather_planes`]: `out` plane `(b, idx[i])` = `inp` plane `(b, i)`.
fn scatter_planes(inp: &[f32], idx: &[usize], plane: usize) -> Vec<f32> {
    let c = idx.len();
    let mut inverse = vec![0; c];
    for (i, &j) in idx.iter().enumerate() {
        inverse[j] = i;
    }
    gather_planes(inp, &inverse, plane)
}

/// The geometry derived from an input of `h`×`w` planes.
struct Dims {
    p0: usize,
    p1: usize,
    plane: Plane,
    pw1: Pointwise,
    pw2: Pointwise,
}

impl FusedBlock {
    fn dims(&self, h: usize, w: usize) -> Dims {
        let s = &self.shape;
        let plane = Plane::new(h, w, s.kernel, s.stride);
        let (p0, p1) = (h * w, plane.ho * plane.wo);
        Dims {
            p0,
            p1,
            plane,
            pw1: Pointwise {
                cin: s.cin,
                cout: s.mid,
                groups: s.groups,
                plane: p0,
            },
            pw2: Pointwise {
                cin: s.mid,
                cout: s.cout,
                groups: s.groups,
                plane: p1,
            },
        }
    }

    /// The parameter slices of `flat`, by role.
    fn params<'a>(&self, flat: &'a [f32]) -> Weights<'a> {
        let mut p = self
            .shape
            .layout()
            .into_iter()
            .map(|(at, len)| &flat[at..at + len]);
        let mut next = || p.next().expect("the layout has every parameter");
        Weights {
            pw1: self.shape.expand.then(|| (next(), next(), next())),
            dw: (next(), next(), next()),
            pw2: (next(), next(), next()),
        }
    }
}

/// A block's parameters: (convolution weight, BN γ, BN β) of each convolution.
struct Weights<'a> {
    pw1: Option<(&'a [f32], &'a [f32], &'a [f32])>,
    dw: (&'a [f32], &'a [f32], &'a [f32]),
    pw2: (&'a [f32], &'a [f32], &'a [f32]),
}

impl CustomOp2 for FusedBlock {
    fn name(&self) -> &'static str {
        "fused-block"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let s = &self.shape;
        let x = cpu_slice(s1, l1, "block input")?;
        let flat = cpu_slice(s2, l2, "block parameters")?;
        let (n, _, h, w) = l1.shape().dims4()?;
        let d = self.dims(h, w);
        let p = self.params(flat);
        let ((wdw, g2, b2), (w2, g3, b3)) = (p.dw, p.pw2);
        let mut bn = Vec::new();
        let (a1, h1) = if let Some((w1, g1, b1)) = p.pw1 {
            let mut a1 = vec![0f32; n * s.mid * d.p0];
            d.pw1.forward(x, w1, &mut a1);
            let (mut h1, stats, inv) =
                normalise(&a1, (n, s.mid, d.p0), (g1, b1), self.eps, true, None);
            bn.push((stats, inv));
            if !s.shuffle.is_empty() {
                h1 = gather_planes(&h1, &s.shuffle, d.p0);
            }
            (a1, h1)
        } else {
            (Vec::new(), Vec::new())
        };
        let din: &[f32] = if s.expand { &h1 } else { x };
        let a2 = d.plane.forward_all(din, wdw, s.mid);
        let (h2, stats, inv) = normalise(&a2, (n, s.mid, d.p1), (g2, b2), self.eps, true, None);
        bn.push((stats, inv));
        let mut a3 = vec![0f32; n * s.cout * d.p1];
        d.pw2.forward(&h2, w2, &mut a3);
        let residual = s.residual.then_some(x);
        let (y, stats, inv) =
            normalise(&a3, (n, s.cout, d.p1), (g3, b3), self.eps, false, residual);
        bn.push((stats, inv));
        *self.saved.lock().map_err(|_| lost())? = Some(Saved {
            a1,
            h1,
            a2,
            h2,
            a3,
            bn,
        });
        Ok((
            CpuStorage::F32(y),
            Shape::from((n, s.cout, d.plane.ho, d.plane.wo)),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        flat: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let s = &self.shape;
        let Some(saved) = self.saved.lock().map_err(|_| lost())?.take() else {
            bail!("block: backward run twice or before the forward pass")
        };
        let Saved {
            a1,
            h1,
            a2,
            h2,
            a3,
            bn,
        } = saved;
        // Weights taken as constants (`layers::FrozenWeights`): no weight gradients to compute.
        let weight_grads = flat.track_op();
        let flat_v: Vec<f32> = flat.to_vec1()?;
        let p = self.params(&flat_v);
        let (n, _, h, w) = x.dims4()?;
        let d = self.dims(h, w);
        let ((wdw, g2, b2), (w2, g3, b3)) = (p.dw, p.pw2);
        let mut grads: Vec<Vec<f32>> = Vec::new();
        let dx = with_cpu_data(x, "block input", |x| -> Result<Vec<f32>> {
            let mut dy: Vec<f32> = grad.flatten_all()?.to_vec1()?;
            // the residual's share of dx
            let dres = s.residual.then(|| dy.clone());
            let bn3 = &bn[bn.len() - 1];
            let (dg3, db3) = normalise_backward(
                &mut dy,
                &a3,
                (n, s.cout, d.p1),
                g3,
                b3,
                &bn3.0.mean,
                &bn3.1,
                false,
            );
            drop(a3);
            let dw2 = if weight_grads {
                d.pw2.backward_weight(&dy, &h2)
            } else {
                Vec::new()
            };
            drop(h2);
            let mut dh2 = vec![0f32; n * s.mid * d.p1];
            d.pw2.backward_input(&dy, w2, &mut dh2, false);
            drop(dy);
            let bn2 = &bn[bn.len() - 2];
            let (dg2, db2) = normalise_backward(
                &mut dh2,
                &a2,
                (n, s.mid, d.p1),
                g2,
                b2,
                &bn2.0.mean,
                &bn2.1,
                true,
            );
            drop(a2);
            let din: &[f32] = if s.expand { &h1 } else { x };
            let ddw = if weight_grads {
                d.plane.backward_weight_all(din, &dh2, s.mid)
            } else {
                Vec::new()
            };
            drop(h1);
            let mut dh1 = d.plane.backward_input_all(&dh2, wdw, s.mid);
            drop(dh2);
            let dx = if let Some((w1, g1, b1)) = p.pw1 {
                if !s.shuffle.is_empty() {
                    dh1 = scatter_planes(&dh1, &s.shuffle, d.p0);
                }
                let (dg1, db1) = normalise_backward(
                    &mut dh1,
                    &a1,
                    (n, s.mid, d.p0),
                    g1,
                    b1,
                    &bn[0].0.mean,
                    &bn[0].1,
                    true,
                );
                let dw1 = if weight_grads {
                    d.pw1.backward_weight(&dh1, x)
                } else {
                    Vec::new()
                };
                let (mut dx, accumulate) = match dres {
                    Some(r) => (r, true),
                    None => (vec![0f32; x.len()], false),
                };
                d.pw1.backward_input(&dh1, w1, &mut dx, accumulate);
                grads.extend([dw1, dg1, db1]);
                dx
            } else {
                if let Some(r) = dres {
                    dh1.iter_mut().zip(&r).for_each(|(a, b)| *a += b);
                }
                dh1
            };
            grads.extend([ddw, dg2, db2, dw2, dg3, db3]);
            Ok(dx)
        })??;
        let dflat = if weight_grads {
            Some(Tensor::from_vec(
                grads.concat(),
                flat.shape(),
                flat.device(),
            )?)
        } else {
            None
        };
        Ok((Some(Tensor::from_vec(dx, x.shape(), x.device())?), dflat))
    }
}
