//! Measuring a graph: the one timing method used for table entries and for whole-network checks (warm up,
//! then time single runs until both a minimum count and a minimum time are reached, and summarise the
//! distribution), the seeded inputs it runs on, and the building of a network's graph at a dtype (an
//! int8 graph calibrated on those inputs). The profiler, validation, the model runner and `arch onnx`
//! share it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use ort::session::Session;
use ort::value::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::onnx::{Dtype, NetworkGraph, Ranges};
use crate::rng::SplitMix;
use crate::runtime::{RangeEstimate, SessionConfig, calibrate};

/// How long and how often to time one graph.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct TimingConfig {
    /// Warm-up runs before timing (at least; warm-up also lasts at least `warmup_ms`).
    pub warmup_runs: usize,
    pub warmup_ms: f64,
    /// Timed runs: at least `min_runs` and at least `min_ms` of timed work, at most `max_runs`.
    pub min_runs: usize,
    pub min_ms: f64,
    pub max_runs: usize,
    /// Relative spread (p90 − p10) / p50 above which an op is measured again, then flagged noisy.
    pub max_spread: f64,
}

impl TimingConfig {
    /// The default for a full profile.
    pub fn standard() -> Self {
        TimingConfig {
            warmup_runs: 5,
            warmup_ms: 30.0,
            min_runs: 20,
            min_ms: 150.0,
            max_runs: 2000,
            max_spread: 0.15,
        }
    }

    /// A fast, rougher setting for tests and `--quick`.
    pub fn quick() -> Self {
        TimingConfig {
            warmup_runs: 2,
            warmup_ms: 2.0,
            min_runs: 5,
            min_ms: 5.0,
            max_runs: 200,
            max_spread: 0.5,
        }
    }
}

impl TimingConfig {
    /// One of `n` equal shares of the timed runs and time (at least 5 runs each); warm-up unchanged.
    pub fn split(&self, n: usize) -> Self {
        TimingConfig {
            min_ms: self.min_ms / n as f64,
            min_runs: self.min_runs.div_ceil(n).max(5),
            ..*self
        }
    }

    /// Twice the runs and time: the second try for a noisy measurement.
    pub fn doubled(&self) -> Self {
        TimingConfig {
            min_ms: self.min_ms * 2.0,
            min_runs: self.min_runs * 2,
            ..*self
        }
    }
}

/// The median of `values` (the mean of the two middle ones for an even count); `None` when empty.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// Summary of the timed runs of one graph, in microseconds.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    /// Mean of the samples between the 10th and 90th percentiles: the figure tables predict with. Unlike
    /// the median it adds up (the mean of a sum is the sum of the means, and per-kernel times inside a
    /// network are often bimodal), and unlike the plain mean it ignores rare spikes.
    pub trimmed_mean: f64,
    pub p10: f64,
    pub p50: f64,
    pub p90: f64,
    pub mean: f64,
    pub std: f64,
    pub count: usize,
}

impl Stats {
    /// Summarises samples (µs). `None` when there are none.
    pub fn from_samples(samples: &[f64]) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let q = |p: f64| {
            let pos = p * (s.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
        };
        let mean = s.iter().sum::<f64>() / s.len() as f64;
        let var = s.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / s.len() as f64;
        let cut = s.len() / 10;
        let kept = &s[cut..s.len() - cut];
        Some(Stats {
            trimmed_mean: kept.iter().sum::<f64>() / kept.len() as f64,
            p10: q(0.1),
            p50: q(0.5),
            p90: q(0.9),
            mean,
            std: var.sqrt(),
            count: s.len(),
        })
    }

    /// (p90 − p10) / p50.
    pub fn spread(&self) -> f64 {
        (self.p90 - self.p10) / self.p50
    }
}

/// Times `session` on `input` and returns the summary. Checks `cancel` between runs.
pub fn time_session(
    session: &mut Session,
    input: &[f32],
    shape: &[usize],
    cfg: &TimingConfig,
    cancel: &AtomicBool,
) -> Result<Stats> {
    let tensor = Tensor::from_array((shape.to_vec(), input.to_vec()))?;
    let start = Instant::now();
    let mut runs = 0;
    while runs < cfg.warmup_runs || start.elapsed().as_secs_f64() * 1e3 < cfg.warmup_ms {
        session.run(ort::inputs![&tensor])?;
        runs += 1;
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
    }
    let mut samples = Vec::with_capacity(cfg.min_runs * 4);
    let mut total_ms = 0.0;
    while samples.len() < cfg.max_runs && (samples.len() < cfg.min_runs || total_ms < cfg.min_ms) {
        let t = Instant::now();
        let out = session.run(ort::inputs![&tensor])?;
        let us = t.elapsed().as_secs_f64() * 1e6;
        drop(out);
        samples.push(us);
        total_ms += us / 1e3;
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
    }
    Stats::from_samples(&samples).ok_or_else(|| Error::Runtime("no timed runs".into()))
}

/// Seeded inputs of `shape` for calibration and timing.
pub fn random_inputs(shape: &[usize], count: usize, seed: u64) -> Vec<Vec<f32>> {
    let n: usize = shape.iter().product();
    let mut rng = SplitMix::new(seed);
    (0..count).map(|_| rng.normals(n)).collect()
}

/// Builds the graph of a network at `dtype` from `make(dtype, ranges)`; an int8 graph is calibrated on
/// seeded random inputs through the fp32 graph made by the same function.
pub fn build_at(
    dtype: Dtype,
    session: SessionConfig,
    seed: u64,
    make: &mut dyn FnMut(Dtype, Option<&Ranges>) -> Result<NetworkGraph>,
) -> Result<NetworkGraph> {
    let fp32 = make(Dtype::Fp32, None)?;
    if dtype == Dtype::Fp32 {
        return Ok(fp32);
    }
    let inputs = random_inputs(&fp32.input_shape, 2, seed ^ 0xca1b);
    let ranges = calibrate(&fp32, &inputs, session, RangeEstimate::MinMax)?;
    make(Dtype::Int8, Some(&ranges))
}

/// Sessions a whole-graph measurement is spread over. A fresh session of the same graph can run
/// several percent faster or slower than the last (its buffers land elsewhere in memory), and a burst of
/// load from outside the process hits one session's runs rather than all of them.
const MEASURE_SESSIONS: usize = 3;

/// Times a built graph with the standard method in `MEASURE_SESSIONS` (3) fresh sessions, each taking its
/// share of the runs and measuring again with twice the time if its spread is too wide, and returns the
/// session whose trimmed mean is the median, with whether its spread stayed too wide (noisy).
pub fn measure(
    graph: &NetworkGraph,
    session: SessionConfig,
    timing: &TimingConfig,
    seed: u64,
    cancel: &AtomicBool,
) -> Result<(Stats, bool)> {
    let model = graph.model.to_bytes();
    let input = random_inputs(&graph.input_shape, 1, seed).remove(0);
    let share = timing.split(MEASURE_SESSIONS);
    let mut sessions = Vec::with_capacity(MEASURE_SESSIONS);
    for _ in 0..MEASURE_SESSIONS {
        let mut s = session.session(&model)?;
        let mut stats = time_session(&mut s, &input, &graph.input_shape, &share, cancel)?;
        if stats.spread() > timing.max_spread {
            let again = time_session(&mut s, &input, &graph.input_shape, &share.doubled(), cancel)?;
            if again.spread() < stats.spread() {
                stats = again;
            }
        }
        sessions.push(stats);
    }
    sessions.sort_by(|a, b| a.trimmed_mean.total_cmp(&b.trimmed_mean));
    let median = sessions[MEASURE_SESSIONS / 2];
    Ok((median, median.spread() > timing.max_spread))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn percentiles_interpolate() {
        let s = Stats::from_samples(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0])
            .unwrap();
        assert_eq!(s.p50, 6.0);
        assert!((s.p10 - 2.0).abs() < 1e-12);
        assert!((s.p90 - 10.0).abs() < 1e-12);
        assert_eq!(s.count, 11);
        assert!((s.mean - 6.0).abs() < 1e-12);
        // one spike moves the mean but not the trimmed mean
        let mut v: Vec<f64> = (0..20).map(|_| 10.0).collect();
        v[3] = 1000.0;
        let s = Stats::from_samples(&v).unwrap();
        assert!(s.mean > 50.0);
        assert_eq!(s.trimmed_mean, 10.0);
        assert!(Stats::from_samples(&[]).is_none());
    }
}
