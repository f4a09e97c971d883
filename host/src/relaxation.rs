//! The continuous relaxation of the architecture choice (paper section 3.3): Gumbel-softmax mixtures of
//! each layer's candidates (soft, per batch or per image, or without noise), GDAS's straight-through
//! one-hot sample (hard), and the entropy that says how far P_θ is from deciding. The noise comes from
//! the seeded host generator, so a search is reproducible from its seed.

use anyhow::{Result, ensure};
use candle_core::{D, Tensor};
use mobile_core::rng::SplitMix;

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
