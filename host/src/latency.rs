//! The latency side of DNAS (paper section 3.2): per-layer candidate latencies from a lookup table, and
//! the loss that combines cross-entropy with the expected latency of the stochastic super net.
//!
//! With `m_l` the (Gumbel-softmax) mixing weights of layer `l`, the expected latency is
//! `LAT = fixed + Σ_l Σ_i m_{l,i} · LUT(b_{l,i})` (eq. 3 made differentiable, eq. 7 of section 3.3), in µs.
//! The paper's loss is `CE · α · (log LAT)^β` (eq. 2, α = 0.2, β = 0.6 in its appendix); NNI also offers
//! the additive `CE + α · LAT^β`, and with a latency target the loss pulls the expected latency to it.

use anyhow::{Result, ensure};
use candle_core::{D, Tensor};
use mobile_core::lut::Lut;
use mobile_core::onnx::Dtype;
use mobile_core::onnx::weights::SplitMix;
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

/// Gumbel noise `−log(−log u)` for `n` values from the seeded host generator (candle's CPU generator
/// cannot be seeded).
fn gumbel_noise(n: usize, rng: &mut SplitMix) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u = rng.uniform().clamp(1e-12, 1.0 - 1e-12);
            -(-(u.ln())).ln() as f32
        })
        .collect()
}

fn check_tau(tau: f64) -> Result<()> {
    ensure!(
        tau > 0.0 && tau.is_finite(),
        "temperature {tau} must be positive"
    );
    Ok(())
}

/// Soft Gumbel-softmax `softmax((θ + g) / τ)` of the layer's `θ` (`[k]`), differentiable in θ: one
/// sample `[k]` for the whole batch (`rows` None), or one per image `[rows, k]`, so that the images of a
/// batch see different mixtures and the θ gradient averages over as many noise draws as images.
/// (candle's own `gumbel_softmax` returns a hard argmax without gradient.)
pub fn gumbel_softmax(
    theta: &Tensor,
    tau: f64,
    rows: Option<usize>,
    rng: &mut SplitMix,
) -> Result<Tensor> {
    check_tau(tau)?;
    let k = theta.elem_count();
    let logits = match rows {
        None => theta.add(&Tensor::from_vec(gumbel_noise(k, rng), k, theta.device())?)?,
        Some(n) => {
            let g = Tensor::from_vec(gumbel_noise(n * k, rng), (n, k), theta.device())?;
            g.broadcast_add(theta)?
        }
    };
    Ok(candle_nn::ops::softmax(
        &logits.affine(1.0 / tau, 0.0)?,
        D::Minus1,
    )?)
}

/// The noiseless relaxation `softmax(θ / τ)`.
pub fn softmax_tau(theta: &Tensor, tau: f64) -> Result<Tensor> {
    check_tau(tau)?;
    Ok(candle_nn::ops::softmax(
        &theta.affine(1.0 / tau, 0.0)?,
        D::Minus1,
    )?)
}

/// A sample of the hard (straight-through) Gumbel relaxation of GDAS: the candidate `k` of the largest
/// `θ + g`, and the weights `onehot(k) − sg(s) + s` with `s = softmax((θ + g) / τ)`: exactly one-hot
/// forward (the layer runs candidate `k` alone, at full scale), with the gradient of the soft sample
/// backward, so θ learns from the candidate that ran. One draw for the batch (`rows` None: one index,
/// weights `[k]`) or one per image (an index per image, weights `[rows, k]`).
pub fn gumbel_hard(
    theta: &Tensor,
    tau: f64,
    rows: Option<usize>,
    rng: &mut SplitMix,
) -> Result<(Vec<usize>, Tensor)> {
    let soft = gumbel_softmax(theta, tau, rows, rng)?;
    let k = theta.elem_count();
    let values: Vec<f32> = soft.flatten_all()?.to_vec1()?;
    let mut onehot = vec![0f32; values.len()];
    let index: Vec<usize> = values
        .chunks(k)
        .enumerate()
        .map(|(r, row)| {
            let i = (0..k)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap_or(0);
            onehot[r * k + i] = 1.0;
            i
        })
        .collect();
    let onehot = Tensor::from_vec(onehot, soft.shape(), theta.device())?;
    Ok((index, onehot.sub(&soft.detach())?.add(&soft)?))
}

/// Entropy (nats) of a probability vector.
pub fn entropy(p: &[f64]) -> f64 {
    -p.iter()
        .filter(|&&v| v > 0.0)
        .map(|v| v * v.ln())
        .sum::<f64>()
}
