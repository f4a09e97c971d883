//! Checking a latency table against reality: whole networks are built and timed with the same method as
//! the table's entries, and their measured latency is compared with the table's prediction (the sum of
//! their ops' entries, the paper's eq. 3). This is how a user knows whether a table can be trusted.

use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};

use crate::arch::{Arch, builtin_in};
use crate::error::Result;
use crate::lut::Lut;
use crate::onnx::weights::SplitMix;
use crate::onnx::{Dtype, RandomWeights, arch_graph};
use crate::profile::{build_at, measure};
use crate::space::{Block, Space};
use crate::timing::TimingConfig;

/// One network's prediction against its measurement.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Check {
    pub arch: String,
    pub text: String,
    pub dtype: Dtype,
    pub predicted_us: f64,
    pub measured_us: f64,
    /// (predicted − measured) / measured.
    pub error: f64,
    pub noisy: bool,
}

/// Summary for one dtype.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DtypeSummary {
    pub dtype: Dtype,
    pub networks: usize,
    /// Fraction of networks whose prediction is within ±10% of the measurement.
    pub within_10pct: f64,
    /// Mean of |error|.
    pub mean_abs_error: f64,
    pub max_abs_error: f64,
}

/// The whole report of `fbnet lut validate`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ValidateReport {
    pub space: String,
    pub space_hash: String,
    pub device: crate::device::DeviceInfo,
    pub runtime: crate::lut::RuntimeDesc,
    pub seed: u64,
    pub checks: Vec<Check>,
    pub summary: Vec<DtypeSummary>,
}

/// A uniformly random architecture of `space` (each layer picks among its allowed candidates).
pub fn random_arch(space: &Space, name: &str, rng: &mut SplitMix) -> Result<Arch> {
    let choices: Vec<Block> = space
        .layers()
        .iter()
        .map(|l| {
            let c = space.candidates_at(l);
            c[(rng.next_u64() % c.len() as u64) as usize]
        })
        .collect();
    Arch::new(name, space.clone(), choices)
}

/// The networks a validation times: FBNet-A/B/C placed in the table's space (where their choices are
/// legal there) and `random` random architectures.
pub fn validation_archs(space: &Space, random: usize, seed: u64) -> Result<Vec<Arch>> {
    let mut archs: Vec<Arch> = ["fbnet-a", "fbnet-b", "fbnet-c"]
        .iter()
        .filter_map(|n| builtin_in(n, space).and_then(|r| r.ok()))
        .collect();
    let mut rng = SplitMix::new(seed);
    for i in 0..random {
        archs.push(random_arch(space, &format!("random-{i}"), &mut rng)?);
    }
    Ok(archs)
}

/// Summarises checks per dtype.
pub fn summarize(checks: &[Check], dtypes: &[Dtype]) -> Vec<DtypeSummary> {
    dtypes
        .iter()
        .map(|&dtype| {
            let errs: Vec<f64> = checks
                .iter()
                .filter(|c| c.dtype == dtype)
                .map(|c| c.error.abs())
                .collect();
            let n = errs.len().max(1) as f64;
            DtypeSummary {
                dtype,
                networks: errs.len(),
                within_10pct: errs.iter().filter(|e| **e <= 0.10).count() as f64 / n,
                mean_abs_error: errs.iter().sum::<f64>() / n,
                max_abs_error: errs.iter().cloned().fold(0.0, f64::max),
            }
        })
        .collect()
}

/// Times every network of `archs` at each of the table's dtypes and compares with its prediction.
pub fn validate(
    lut: &Lut,
    archs: &[Arch],
    timing: &TimingConfig,
    seed: u64,
    cancel: &AtomicBool,
    on_check: &mut dyn FnMut(&Check, usize, usize),
) -> Result<ValidateReport> {
    for d in &lut.dtypes {
        lut.require_complete(*d)?;
    }
    let session = lut.runtime.session;
    let total = archs.len() * lut.dtypes.len();
    let mut checks = Vec::new();
    for arch in archs {
        for &dtype in &lut.dtypes {
            let predicted_us = lut.predict(arch, dtype)?;
            let mut weights = RandomWeights { seed };
            let graph = build_at(dtype, session, seed, &mut |d, r| {
                arch_graph(arch, d, &mut weights, r, 1, &[])
            })?;
            let (stats, noisy) = measure(&graph, session, timing, seed, cancel)?;
            let check = Check {
                arch: arch.name.clone(),
                text: arch.text(),
                dtype,
                predicted_us,
                measured_us: stats.trimmed_mean,
                error: (predicted_us - stats.trimmed_mean) / stats.trimmed_mean,
                noisy,
            };
            on_check(&check, checks.len() + 1, total);
            checks.push(check);
        }
    }
    Ok(ValidateReport {
        space: lut.space.name.clone(),
        space_hash: lut.space_hash.clone(),
        device: lut.device.clone(),
        runtime: lut.runtime.clone(),
        seed,
        summary: summarize(&checks, &lut.dtypes),
        checks,
    })
}
