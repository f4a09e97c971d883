//! Where a graph's weights come from: seeded random values for timing, trained values for export.

use crate::error::Result;

/// Supplies BN-folded convolution weights and classifier weights by parameter name.
pub trait WeightSource {
    /// Weight `[cout, cin/groups, k, k]` (flattened) and bias `[cout]` of the convolution `name`
    /// (its BN already folded in).
    fn conv(&mut self, name: &str, dims: [usize; 4], relu: bool) -> Result<(Vec<f32>, Vec<f32>)>;
    /// Weight `[out, in]` (flattened) and bias `[out]` of the fully connected layer `name`.
    fn fc(&mut self, name: &str, dims: [usize; 2]) -> Result<(Vec<f32>, Vec<f32>)>;
}

/// SplitMix64: a tiny, well-mixed generator, enough for reproducible random weights and inputs.
#[derive(Clone, Debug)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }

    /// `n` standard normal values.
    pub fn normals(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.normal()).collect()
    }
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
