//! The layers of FBNet networks in candle: convolution + batch norm (+ ReLU) in the three forms the space
//! uses, the candidate block of Table 2, and the classifier. The block is the one the ONNX graphs of the
//! shared core describe (`mobile_core::onnx::network::emit_op`): 1x1 (grouped) expansion + BN + ReLU,
//! channel shuffle after a grouped expansion, k×k depthwise + BN + ReLU, 1x1 (grouped) projection + BN,
//! residual add when shapes allow; parameters carry the same names.

use anyhow::Result;
use candle_core::{D, DType, Tensor, Var};
use mobile_core::onnx::network::shuffle_indices;
use mobile_core::ops::mid_channels;
use mobile_core::{Block, LayerSpec};

use crate::kernels::{
    BatchStats, BlockShape, batch_norm_train, block_train, dense_conv, depthwise_conv,
    pointwise_conv,
};
use crate::params::{Init, Kind, Params};

thread_local! {
    static FROZEN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// While it lives, the candidate blocks' training-mode forwards on this thread take their weights as
/// constants, so their backward computes the gradients of the input and of θ only. A θ step of the
/// search updates θ alone: the weight gradients of every candidate (three of the block's five matrix
/// products) would be computed and thrown away.
#[must_use = "the weights are frozen only while the guard lives"]
pub struct FrozenWeights(bool);

impl FrozenWeights {
    pub fn enter() -> FrozenWeights {
        FrozenWeights(FROZEN.with(|f| f.replace(true)))
    }
}

impl Drop for FrozenWeights {
    fn drop(&mut self) {
        FROZEN.with(|f| f.set(self.0));
    }
}

/// PyTorch's defaults, which the paper's training used.
pub const BN_EPS: f64 = 1e-5;
const BN_MOMENTUM: f64 = 0.1;

/// Batch norm with running statistics (updated in training mode, used in evaluation mode).
#[derive(Clone, Debug)]
pub struct BatchNorm {
    pub gamma: Var,
    pub beta: Var,
    pub running_mean: Var,
    pub running_var: Var,
}

impl BatchNorm {
    pub fn new(p: &mut Params, prefix: &str, c: usize) -> Result<BatchNorm> {
        Ok(BatchNorm {
            gamma: p.create(
                &format!("{prefix}.gamma"),
                &[c],
                Init::Const(1.0),
                Kind::NoDecay,
            )?,
            beta: p.create(
                &format!("{prefix}.beta"),
                &[c],
                Init::Const(0.0),
                Kind::NoDecay,
            )?,
            running_mean: p.create(
                &format!("{prefix}.mean"),
                &[c],
                Init::Const(0.0),
                Kind::Buffer,
            )?,
            running_var: p.create(
                &format!("{prefix}.var"),
                &[c],
                Init::Const(1.0),
                Kind::Buffer,
            )?,
        })
    }

    /// Blends a training batch's statistics into the running averages (PyTorch's momentum, and its
    /// unbiased variance).
    /// On the statistics' device, in f64 as `(1 − m)·old + (m·scale)·batch` rounded once to f32, so a
    /// GPU's queue is never stalled for them and the CPU's results stay what they were.
    fn record(&self, stats: BatchStats) -> Result<()> {
        let unbias = stats.count as f64 / (stats.count.max(2) - 1) as f64;
        let blend = |var: &Var, batch: &Tensor, scale: f64| -> Result<()> {
            let old = var.as_tensor().to_dtype(DType::F64)?;
            let new = (old.affine(1.0 - BN_MOMENTUM, 0.0)?
                + batch
                    .to_dtype(DType::F64)?
                    .affine(BN_MOMENTUM * scale, 0.0)?)?;
            Ok(var.set(&new.to_dtype(DType::F32)?)?)
        };
        blend(&self.running_mean, &stats.mean, 1.0)?;
        blend(&self.running_var, &stats.var, unbias)
    }

    pub fn forward(&self, x: &Tensor, relu: bool, train: bool) -> Result<Tensor> {
        if train {
            let (y, stats) = batch_norm_train(
                x,
                self.gamma.as_tensor(),
                self.beta.as_tensor(),
                BN_EPS,
                relu,
            )?;
            self.record(stats)?;
            return Ok(y);
        }
        let c = x.dim(1)?;
        let shape = (1, c, 1, 1);
        let inv = (self.running_var.as_tensor() + BN_EPS)?.sqrt()?.recip()?;
        let scale = self.gamma.as_tensor().mul(&inv)?;
        let shift = (self.beta.as_tensor() - self.running_mean.as_tensor().mul(&scale)?)?;
        let y = x
            .broadcast_mul(&scale.reshape(shape)?)?
            .broadcast_add(&shift.reshape(shape)?)?;
        Ok(if relu { y.relu()? } else { y })
    }
}

/// How a convolution is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Conv {
    /// A full k×k convolution (the stem).
    Full { k: usize, stride: usize },
    /// A 1x1 convolution with `groups`, as (batched) matrix products.
    Pointwise { groups: usize },
    /// A k×k depthwise convolution (the custom kernel).
    Depthwise { k: usize, stride: usize },
}

/// A bias-free convolution followed by batch norm and optionally ReLU. The weight has the ONNX layout
/// `[cout, cin/groups, k, k]`.
#[derive(Clone, Debug)]
pub struct ConvBn {
    conv: Conv,
    pub weight: Var,
    pub bn: BatchNorm,
    pub relu: bool,
}

impl ConvBn {
    fn new(
        p: &mut Params,
        name: &str,
        conv: Conv,
        cin: usize,
        cout: usize,
        relu: bool,
    ) -> Result<ConvBn> {
        let (k, per_group) = match conv {
            Conv::Full { k, .. } => (k, cin),
            Conv::Pointwise { groups } => (1, cin / groups),
            Conv::Depthwise { k, .. } => (k, 1),
        };
        let fan_out = match conv {
            Conv::Depthwise { k, .. } => k * k,
            _ => cout * k * k,
        };
        let weight = p.create(
            &format!("{name}.weight"),
            &[cout, per_group, k, k],
            Init::Kaiming { fan_out },
            Kind::Weight,
        )?;
        Ok(ConvBn {
            conv,
            weight,
            bn: BatchNorm::new(p, &format!("{name}.bn"), cout)?,
            relu,
        })
    }

    pub fn full(
        p: &mut Params,
        name: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
    ) -> Result<ConvBn> {
        ConvBn::new(p, name, Conv::Full { k, stride }, cin, cout, true)
    }

    pub fn pointwise(
        p: &mut Params,
        name: &str,
        cin: usize,
        cout: usize,
        groups: usize,
        relu: bool,
    ) -> Result<ConvBn> {
        ConvBn::new(p, name, Conv::Pointwise { groups }, cin, cout, relu)
    }

    pub fn depthwise(
        p: &mut Params,
        name: &str,
        c: usize,
        k: usize,
        stride: usize,
    ) -> Result<ConvBn> {
        ConvBn::new(p, name, Conv::Depthwise { k, stride }, c, c, true)
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let w = self.weight.as_tensor();
        let y = match self.conv {
            Conv::Full { stride, .. } => dense_conv(x, w, stride)?,
            Conv::Depthwise { stride, .. } => depthwise_conv(x, w, stride)?,
            Conv::Pointwise { groups } => pointwise_conv(x, w, groups)?,
        };
        self.bn.forward(&y, self.relu, train)
    }
}

/// One candidate block of Table 2 at one layer (`skip` has no parameters and is not built).
#[derive(Clone, Debug)]
pub struct BlockNet {
    pub block: Block,
    pub pw1: Option<ConvBn>,
    shuffle: Option<Tensor>,
    pub dw: ConvBn,
    pub pw2: ConvBn,
    /// The block's geometry: for the fused training kernel, and whether it adds its input.
    shape: BlockShape,
}

impl BlockNet {
    /// The block's parameters under `prefix` (`l3` in a stand-alone net, `l3.k5_e6` in the super net).
    /// Returns `None` for `skip`.
    pub fn new(
        p: &mut Params,
        prefix: &str,
        block: Block,
        layer: &LayerSpec,
    ) -> Result<Option<BlockNet>> {
        if block == Block::Skip {
            return Ok(None);
        }
        let (cin, cout) = (layer.cin, layer.cout);
        let mid = mid_channels(block, cin);
        let g = block.groups();
        let pw1 = if block.has_expansion_conv() {
            Some(ConvBn::pointwise(
                p,
                &format!("{prefix}.pw1"),
                cin,
                mid,
                g,
                true,
            )?)
        } else {
            None
        };
        let shuffle_idx = if block.has_expansion_conv() && g > 1 {
            shuffle_indices(mid, g)
        } else {
            Vec::new()
        };
        let shuffle = if shuffle_idx.is_empty() {
            None
        } else {
            let idx: Vec<u32> = shuffle_idx.iter().map(|&i| i as u32).collect();
            Some(Tensor::from_vec(idx, mid, p.device())?)
        };
        Ok(Some(BlockNet {
            block,
            pw1,
            shuffle,
            dw: ConvBn::depthwise(
                p,
                &format!("{prefix}.dw"),
                mid,
                block.kernel(),
                layer.stride,
            )?,
            pw2: {
                let c = ConvBn::pointwise(p, &format!("{prefix}.pw2"), mid, cout, g, false)?;
                // A residual block starts as the identity (its last BN scale at 0; Goyal et al. 2017,
                // "Accurate, Large Minibatch SGD"): the 22-layer thin networks of the small preset
                // then train much faster (Fashion-MNIST, 2 epochs of 4,000 images: 66.6% test top-1
                // against 42.2% with the scale at 1).
                if layer.shape_preserving() {
                    c.bn.gamma.set(&c.bn.gamma.as_tensor().zeros_like()?)?;
                }
                c
            },
            shape: BlockShape {
                cin,
                mid,
                cout,
                groups: g,
                kernel: block.kernel(),
                stride: layer.stride,
                expand: block.has_expansion_conv(),
                residual: layer.shape_preserving(),
                shuffle: shuffle_idx,
            },
        }))
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if train && x.device().is_cpu() {
            return self.forward_fused(x);
        }
        self.forward_layers(x, train)
    }

    /// Training mode on the CPU: the whole block as one op (`kernels::block`).
    fn forward_fused(&self, x: &Tensor) -> Result<Tensor> {
        let convs: Vec<&ConvBn> = self.pw1.iter().chain([&self.dw, &self.pw2]).collect();
        let frozen = FROZEN.with(|f| f.get());
        let params: Vec<Tensor> = convs
            .iter()
            .flat_map(|c| {
                [
                    c.weight.as_tensor(),
                    c.bn.gamma.as_tensor(),
                    c.bn.beta.as_tensor(),
                ]
            })
            .map(|t| if frozen { t.detach() } else { t.clone() })
            .collect();
        let params: Vec<&Tensor> = params.iter().collect();
        let (y, stats) = block_train(x, &self.shape, &params, BN_EPS)?;
        for (c, s) in convs.iter().zip(stats) {
            c.bn.record(s)?;
        }
        Ok(y)
    }

    /// Layer by layer with stock ops and the single-layer kernels: evaluation, and other devices.
    pub fn forward_layers(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = match &self.pw1 {
            Some(c) => c.forward(x, train)?,
            None => x.clone(),
        };
        if let Some(idx) = &self.shuffle {
            h = h.index_select(idx, 1)?;
        }
        h = self.dw.forward(&h, train)?;
        h = self.pw2.forward(&h, train)?;
        Ok(if self.shape.residual { (h + x)? } else { h })
    }
}

/// The fully connected layer with bias after global average pooling.
#[derive(Clone, Debug)]
pub struct Classifier {
    pub weight: Var,
    pub bias: Var,
}

impl Classifier {
    pub fn new(p: &mut Params, name: &str, cin: usize, classes: usize) -> Result<Classifier> {
        Ok(Classifier {
            weight: p.create(
                &format!("{name}.weight"),
                &[classes, cin],
                Init::Normal(0.01),
                Kind::Weight,
            )?,
            bias: p.create(
                &format!("{name}.bias"),
                &[classes],
                Init::Const(0.0),
                Kind::NoDecay,
            )?,
        })
    }

    /// Global average pooling `[n, c, h, w]` → `[n, c]`.
    pub fn pool(x: &Tensor) -> Result<Tensor> {
        Ok(x.flatten_from(2)?.mean(D::Minus1)?)
    }

    /// Logits of pooled features `[n, c]`.
    pub fn forward(&self, pooled: &Tensor) -> Result<Tensor> {
        Ok(pooled
            .matmul(&self.weight.as_tensor().t()?)?
            .broadcast_add(self.bias.as_tensor())?)
    }
}
