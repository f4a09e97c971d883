//! The latency side of DNAS (paper section 3.2): per-layer candidate latencies from a lookup table, and
//! the loss that combines cross-entropy with the expected latency of the stochastic super net.
//!
//! With `m_l` the (Gumbel-softmax) mixing weights of layer `l`, the expected latency is
//! `LAT = fixed + Σ_l Σ_i m_{l,i} · LUT(b_{l,i})` (eq. 3 made differentiable, eq. 7 of section 3.3), in µs.
//! The paper's loss is `CE · α · (log LAT)^β` (eq. 2, α = 0.2, β = 0.6 in its appendix); NNI also offers
//! the additive `CE + α · LAT^β`, and with a latency target the loss pulls the expected latency to it.

use anyhow::{Result, ensure};
use candle_core::Tensor;
use mobile_core::lut::Lut;
use mobile_core::onnx::Dtype;
use mobile_core::{Block, Space};

/// Candidate latencies of every searchable layer of a space, from a table, at one dtype.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencyTable {
    pub dtype: Dtype,
    /// Stem, head, classifier and the table's per-network overhead, µs.
    pub fixed_us: f64,
    /// Per layer, the candidates in the space's order (`Space::candidates_at`)…
    pub candidates: Vec<Vec<Block>>,
    /// …and their latencies, µs (`skip` costs 0).
    pub layers: Vec<Vec<f64>>,
}

impl LatencyTable {
    /// Reads the latencies of `space` from `lut`. The table must be for this very space (hash) and
    /// complete at `dtype`.
    pub fn new(lut: &Lut, space: &Space, dtype: Dtype) -> Result<LatencyTable> {
        lut.check_space(space)?;
        lut.require_complete(dtype)?;
        let mut fixed_us = lut.latency(&space.stem_op(), dtype)?;
        for op in space.tail_ops() {
            fixed_us += lut.latency(&op, dtype)?;
        }
        fixed_us += lut.overhead(dtype).map_or(0.0, |e| e.stats.trimmed_mean);
        let mut candidates = Vec::new();
        let mut layers = Vec::new();
        for layer in space.layers() {
            let blocks = space.candidates_at(&layer);
            let lat = blocks
                .iter()
                .map(|&block| lut.latency(&layer.op(block), dtype))
                .collect::<mobile_core::Result<Vec<f64>>>()?;
            candidates.push(blocks);
            layers.push(lat);
        }
        Ok(LatencyTable {
            dtype,
            fixed_us,
            candidates,
            layers,
        })
    }

    /// Expected latency (µs) of the distribution `probs` (one probability vector per layer).
    pub fn expected_us(&self, probs: &[Vec<f64>]) -> f64 {
        self.fixed_us
            + self
                .layers
                .iter()
                .zip(probs)
                .map(|(lat, p)| lat.iter().zip(p).map(|(l, p)| l * p).sum::<f64>())
                .sum::<f64>()
    }

    /// Latency (µs) of the architecture taking candidate `choice[l]` at layer `l`.
    pub fn latency_of(&self, choice: &[usize]) -> f64 {
        self.fixed_us
            + self
                .layers
                .iter()
                .zip(choice)
                .map(|(lat, &i)| lat[i])
                .sum::<f64>()
    }

    /// The differentiable expected latency (µs, a scalar tensor) of the layers' mixing weights `m`
    /// (one `[k]` tensor per layer, or `[n, k]` per image, whose mean over the images counts).
    pub fn expected(&self, m: &[Tensor]) -> Result<Tensor> {
        ensure!(
            m.len() == self.layers.len(),
            "{} mixing vectors for {} layers",
            m.len(),
            self.layers.len()
        );
        let device = m[0].device();
        let mut total = Tensor::new(self.fixed_us as f32, device)?;
        for (weights, lat) in m.iter().zip(&self.layers) {
            let lat: Vec<f32> = lat.iter().map(|&v| v as f32).collect();
            let lat = Tensor::new(lat.as_slice(), device)?;
            let weights = match weights.rank() {
                2 => weights.mean(0)?,
                _ => weights.clone(),
            };
            total = total.add(&weights.mul(&lat)?.sum_all()?)?;
        }
        Ok(total)
    }
}

/// How cross-entropy and latency are combined.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LatencyLoss {
    /// The paper's `CE · α · (log LAT)^β`.
    Multiplicative { alpha: f64, beta: f64 },
    /// NNI's `CE + α · LAT^β`.
    Additive { alpha: f64, beta: f64 },
    /// A latency target T: `CE + λ · |ln(LAT / T)|`, an elastic pull towards T from both sides (as
    /// TF-NAS's elastic constraint, in log space so that λ means the same for any device). Below T the
    /// cross-entropy is free to buy accuracy with latency, above it latency is paid for.
    Elastic { target_us: f64, weight: f64 },
    /// MnasNet's soft reward turned into a loss: `CE · (LAT / T)^w`, a trade-off that only balances at T
    /// when w suits the cross-entropy's pull.
    Mnas { target_us: f64, weight: f64 },
}

impl Default for LatencyLoss {
    /// The paper's loss with its appendix's α = 0.2, β = 0.6.
    fn default() -> Self {
        LatencyLoss::Multiplicative {
            alpha: 0.2,
            beta: 0.6,
        }
    }
}

impl LatencyLoss {
    /// ∂loss/∂CE at an expected latency `lat_us` (µs; every form is linear in CE): how much the loss
    /// scales the cross-entropy's gradient. The joint search divides the weights' gradient by it, so the
    /// weights learn on the cross-entropy alone while θ learns on the whole loss from one backward.
    pub fn ce_factor(&self, lat_us: f64) -> f64 {
        match *self {
            LatencyLoss::Multiplicative { alpha, beta } => alpha * lat_us.ln().powf(beta),
            LatencyLoss::Additive { .. } | LatencyLoss::Elastic { .. } => 1.0,
            LatencyLoss::Mnas { target_us, weight } => (lat_us / target_us).powf(weight),
        }
    }

    /// The loss from a scalar cross-entropy and a scalar expected latency in µs.
    pub fn combine(&self, ce: &Tensor, lat_us: &Tensor) -> Result<Tensor> {
        Ok(match *self {
            LatencyLoss::Multiplicative { alpha, beta } => {
                let term = lat_us.log()?.powf(beta)?.affine(alpha, 0.0)?;
                ce.mul(&term)?
            }
            LatencyLoss::Additive { alpha, beta } => {
                ce.add(&lat_us.powf(beta)?.affine(alpha, 0.0)?)?
            }
            LatencyLoss::Elastic { target_us, weight } => {
                let ratio = lat_us.affine(1.0 / target_us, 0.0)?.log()?;
                ce.add(&ratio.abs()?.affine(weight, 0.0)?)?
            }
            LatencyLoss::Mnas { target_us, weight } => {
                let ratio = lat_us.affine(1.0 / target_us, 0.0)?;
                ce.mul(&ratio.powf(weight)?)?
            }
        })
    }
}
