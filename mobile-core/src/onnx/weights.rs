//! Where a graph's weights come from: seeded random values for timing, trained values for export.

use crate::error::Result;
use crate::rng::SplitMix;

/// Supplies BN-folded convolution weights and classifier weights by parameter name.
pub trait WeightSource {
    /// Weight `[cout, cin/groups, k, k]` (flattened) and bias `[cout]` of the convolution `name`
    /// (its BN already folded in).
    fn conv(&mut self, name: &str, dims: [usize; 4], relu: bool) -> Result<(Vec<f32>, Vec<f32>)>;
    /// Weight `[out, in]` (flattened) and bias `[out]` of the fully connected layer `name`.
    fn fc(&mut self, name: &str, dims: [usize; 2]) -> Result<(Vec<f32>, Vec<f32>)>;
}

/// Batch-norm parameters of one layer (inference form).
#[derive(Clone, Debug)]
pub struct BatchNorm<'a> {
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub mean: &'a [f32],
    pub var: &'a [f32],
    pub eps: f32,
}

/// Folds BN into the convolution before it: `BN(conv(x, w) + b) = conv(x, w') + b'` with
/// `w' = w·γ/√(σ²+ε)` per output channel and `b' = (b − μ)·γ/√(σ²+ε) + β`. Exported graphs carry folded
/// convolutions only, which is also what the profiler timed.
pub fn fold_bn(w: &[f32], b: Option<&[f32]>, bn: &BatchNorm<'_>) -> (Vec<f32>, Vec<f32>) {
    let cout = bn.gamma.len();
    let per = w.len() / cout.max(1);
    let mut wf = w.to_vec();
    let mut bf = Vec::with_capacity(cout);
    for c in 0..cout {
        let k = bn.gamma[c] / (bn.var[c] + bn.eps).sqrt();
        for v in &mut wf[c * per..(c + 1) * per] {
            *v *= k;
        }
        let bias = b.map_or(0.0, |b| b[c]);
        bf.push((bias - bn.mean[c]) * k + bn.beta[c]);
    }
    (wf, bf)
}

/// Seeded random weights, He-scaled so activations keep their magnitude through a deep network. Each
/// parameter's values depend only on the seed and the parameter's name.
#[derive(Clone, Debug)]
pub struct RandomWeights {
    pub seed: u64,
}

impl RandomWeights {
    fn rng(&self, name: &str) -> SplitMix {
        // FNV-1a of the name, mixed with the seed.
        let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        SplitMix::new(h ^ self.seed.rotate_left(17))
    }
}

impl WeightSource for RandomWeights {
    fn conv(&mut self, name: &str, dims: [usize; 4], relu: bool) -> Result<(Vec<f32>, Vec<f32>)> {
        let mut rng = self.rng(name);
        let fan_in = (dims[1] * dims[2] * dims[3]) as f32;
        let std = ((if relu { 2.0 } else { 1.0 }) / fan_in).sqrt();
        let w = rng
            .normals(dims.iter().product())
            .into_iter()
            .map(|v| v * std)
            .collect();
        let b = rng.normals(dims[0]).into_iter().map(|v| v * 0.05).collect();
        Ok((w, b))
    }

    fn fc(&mut self, name: &str, dims: [usize; 2]) -> Result<(Vec<f32>, Vec<f32>)> {
        let mut rng = self.rng(name);
        let std = (1.0 / dims[1] as f32).sqrt();
        let w = rng
            .normals(dims[0] * dims[1])
            .into_iter()
            .map(|v| v * std)
            .collect();
        Ok((w, vec![0.0; dims[0]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1x1 convolution of a single pixel is a matrix–vector product: compare conv then BN, computed
    /// step by step, with the folded convolution.
    #[test]
    fn folded_bn_equals_conv_then_bn() {
        let (cin, cout) = (3, 2);
        let w = [0.5, -1.0, 2.0, 1.5, 0.25, -0.75];
        let b = [0.1, -0.2];
        let bn = BatchNorm {
            gamma: &[1.5, 0.5],
            beta: &[0.2, -0.3],
            mean: &[0.4, -0.1],
            var: &[2.0, 0.25],
            eps: 1e-5,
        };
        let x = [0.3, -0.6, 0.9];
        let (wf, bf) = fold_bn(&w, Some(&b), &bn);
        for c in 0..cout {
            let conv: f32 = (0..cin).map(|i| w[c * cin + i] * x[i]).sum::<f32>() + b[c];
            let expect =
                (conv - bn.mean[c]) / (bn.var[c] + bn.eps).sqrt() * bn.gamma[c] + bn.beta[c];
            let folded: f32 = (0..cin).map(|i| wf[c * cin + i] * x[i]).sum::<f32>() + bf[c];
            assert!(
                (folded - expect).abs() < 1e-5,
                "channel {c}: {folded} vs {expect}"
            );
        }
    }
}
