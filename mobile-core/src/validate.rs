//! Checking a latency table against reality: whole networks are built and timed with the same method as
//! the table's entries, and their measured latency is compared with the table's prediction (the sum of
//! their ops' entries, the paper's eq. 3). This is how a user knows whether a table can be trusted.

use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};

use crate::arch::{Arch, builtin_in};
use crate::error::Result;
use crate::lut::Lut;
use crate::measure::{Stats, TimingConfig, build_at, median, random_inputs, time_session};
use crate::onnx::{Dtype, RandomWeights, arch_graph};
use crate::reference::{Pace, SpeedTrack};
use crate::rng::SplitMix;
use crate::runtime::SessionConfig;
use crate::space::Space;

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
    /// The device's pace while this network was timed, as the speed reference's time over its time in
    /// the table (1.2: everything took 20% longer than when the table was made); `None` without a
    /// reference.
    #[serde(default)]
    pub speed: Option<f64>,
    /// The error with the prediction scaled by that pace: what the table's shape gets wrong once the
    /// device's drift is taken out by measurement.
    #[serde(default)]
    pub corrected_error: Option<f64>,
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
    /// Median of measured / predicted: how much faster or slower the device runs now than when the
    /// table was measured (thermal state, other load), as opposed to errors of the table's shape.
    pub drift: f64,
    /// The same two figures after dividing every measurement by `drift`: how well the table ranks and
    /// scales networks against each other, which is what a search needs.
    pub within_10pct_relative: f64,
    pub mean_abs_error_relative: f64,
    /// The device's pace during the validation: the median over the networks of [`Check::speed`].
    #[serde(default)]
    pub speed_now: Option<f64>,
    /// The two accuracy figures of [`Check::corrected_error`] (drift corrected by the reference).
    #[serde(default)]
    pub within_10pct_corrected: Option<f64>,
    #[serde(default)]
    pub mean_abs_error_corrected: Option<f64>,
}

/// The median, 1 (no drift) for no values.
fn median_or_one(v: Vec<f64>) -> f64 {
    median(v).unwrap_or(1.0)
}

/// (fraction within ±10%, mean |error|) of errors.
fn accuracy(errors: &[f64]) -> (f64, f64) {
    let n = errors.len().max(1) as f64;
    (
        errors.iter().filter(|e| e.abs() <= 0.10).count() as f64 / n,
        errors.iter().map(|e| e.abs()).sum::<f64>() / n,
    )
}

/// Summarises checks per dtype.
pub fn summarize(checks: &[Check], dtypes: &[Dtype]) -> Vec<DtypeSummary> {
    dtypes
        .iter()
        .map(|&dtype| {
            let mine: Vec<&Check> = checks.iter().filter(|c| c.dtype == dtype).collect();
            let errors: Vec<f64> = mine.iter().map(|c| c.error).collect();
            let drift = median_or_one(
                mine.iter()
                    .map(|c| c.measured_us / c.predicted_us)
                    .collect(),
            );
            let relative: Vec<f64> = mine
                .iter()
                .map(|c| c.predicted_us * drift / c.measured_us - 1.0)
                .collect();
            let (within_10pct, mean_abs_error) = accuracy(&errors);
            let (within_10pct_relative, mean_abs_error_relative) = accuracy(&relative);
            let corrected: Option<Vec<f64>> = mine.iter().map(|c| c.corrected_error).collect();
            let corrected = corrected.filter(|c| !c.is_empty()).map(|c| accuracy(&c));
            let speeds: Option<Vec<f64>> = mine.iter().map(|c| c.speed).collect();
            DtypeSummary {
                dtype,
                networks: mine.len(),
                within_10pct,
                mean_abs_error,
                max_abs_error: errors.iter().map(|e| e.abs()).fold(0.0, f64::max),
                drift,
                within_10pct_relative,
                mean_abs_error_relative,
                speed_now: speeds.and_then(median),
                within_10pct_corrected: corrected.map(|c| c.0),
                mean_abs_error_corrected: corrected.map(|c| c.1),
            }
        })
        .collect()
}

/// The whole report of `fbnet lut validate`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ValidateReport {
    pub space: String,
    pub space_hash: String,
    pub device: crate::device::DeviceInfo,
    pub runtime: crate::lut::RuntimeDesc,
    /// Intra-op threads the networks were timed with (the table's own unless asked otherwise).
    #[serde(default)]
    pub threads: usize,
    pub seed: u64,
    pub checks: Vec<Check>,
    pub summary: Vec<DtypeSummary>,
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
        archs.push(Arch::random(space, &format!("random-{i}"), &mut rng)?);
    }
    Ok(archs)
}

/// Rounds over all networks in [`validate`]: each network is timed once per round, in a fresh session.
pub const ROUNDS: usize = 3;

/// Networks timed between two timings of the speed reference in [`validate`].
const REFERENCE_EVERY: usize = 4;

/// Times every network of `archs` at each of the table's dtypes with `session` (normally the table's
/// own settings) and compares with its prediction.
///
/// The networks are timed in [`ROUNDS`] interleaved rounds (every network once per round, each time in
/// a fresh session with a share of the runs) and each network's figure is the round whose trimmed mean
/// is the median: a slow spell of the machine then hits every network a little instead of a few a lot,
/// and one disturbed round does not decide a result. When the table has a speed reference, it is timed
/// at each dtype before the first network, after every [`REFERENCE_EVERY`] networks and at the end, and
/// each timing of a network is also set against the reference's pace around it ([`Check::speed`],
/// [`Check::corrected_error`]). `on_progress(done, total)` follows the timings.
pub fn validate(
    lut: &Lut,
    archs: &[Arch],
    timing: &TimingConfig,
    session: SessionConfig,
    seed: u64,
    cancel: &AtomicBool,
    on_progress: &mut dyn FnMut(usize, usize),
) -> Result<ValidateReport> {
    for d in &lut.dtypes {
        lut.require_complete(*d)?;
    }
    let mut cases = Vec::new();
    for arch in archs {
        for &dtype in &lut.dtypes {
            let predicted_us = lut.predict(arch, dtype)?;
            let mut weights = RandomWeights { seed };
            let graph = build_at(dtype, session, seed, &mut |d, r| {
                arch_graph(arch, d, &mut weights, r, 1, &[])
            })?;
            let input = random_inputs(&graph.input_shape, 1, seed).remove(0);
            cases.push((
                arch,
                dtype,
                predicted_us,
                graph.model.to_bytes(),
                graph.input_shape,
                input,
            ));
        }
    }
    let mut paces = lut
        .dtypes
        .iter()
        .filter_map(|&d| Pace::of(lut, d, session).transpose())
        .collect::<Result<Vec<Pace>>>()?;
    let mut track = SpeedTrack::default();
    let mut time_references = |position: usize, track: &mut SpeedTrack| -> Result<()> {
        for p in &mut paces {
            track.push(position, p.dtype(), p.now(cancel)?);
        }
        Ok(())
    };
    let share = timing.split(ROUNDS);
    let total = cases.len() * ROUNDS;
    let mut rounds: Vec<Vec<(Stats, usize)>> = vec![Vec::with_capacity(ROUNDS); cases.len()];
    for round in 0..ROUNDS {
        for (i, (_, _, _, model, shape, input)) in cases.iter().enumerate() {
            let position = round * cases.len() + i;
            if position % REFERENCE_EVERY == 0 {
                time_references(position, &mut track)?;
            }
            let mut s = session.session(model)?;
            rounds[i].push((
                time_session(&mut s, input, shape, &share, cancel)?,
                position,
            ));
            on_progress(position + 1, total);
        }
    }
    time_references(total, &mut track)?;
    let checks: Vec<Check> = cases
        .iter()
        .zip(rounds)
        .map(|((arch, dtype, predicted_us, ..), r)| {
            let mut raw: Vec<Stats> = r.iter().map(|x| x.0).collect();
            raw.sort_by(|a, b| a.trimmed_mean.total_cmp(&b.trimmed_mean));
            let stats = raw[raw.len() / 2];
            // Each round's time at the table's pace, and the median of those.
            let paced: Option<Vec<(f64, f64)>> = r
                .iter()
                .map(|(s, position)| {
                    let speed = track.around(*position, *dtype)?;
                    Some((s.trimmed_mean / speed, speed))
                })
                .collect();
            let (speed, corrected_error) = match paced {
                Some(mut p) => {
                    p.sort_by(|a, b| a.0.total_cmp(&b.0));
                    let (at_table_pace, speed) = p[p.len() / 2];
                    (Some(speed), Some(predicted_us / at_table_pace - 1.0))
                }
                None => (None, None),
            };
            Check {
                arch: arch.name.clone(),
                text: arch.text(),
                dtype: *dtype,
                predicted_us: *predicted_us,
                measured_us: stats.trimmed_mean,
                error: (predicted_us - stats.trimmed_mean) / stats.trimmed_mean,
                noisy: stats.spread() > timing.max_spread,
                speed,
                corrected_error,
            }
        })
        .collect();
    Ok(ValidateReport {
        space: lut.space.name.clone(),
        space_hash: lut.space_hash.clone(),
        device: lut.device.clone(),
        runtime: lut.runtime.clone(),
        threads: session.threads,
        seed,
        summary: summarize(&checks, &lut.dtypes),
        checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(predicted_us: f64, measured_us: f64) -> Check {
        Check {
            arch: String::new(),
            text: String::new(),
            dtype: Dtype::Int8,
            predicted_us,
            measured_us,
            error: (predicted_us - measured_us) / measured_us,
            noisy: false,
            speed: None,
            corrected_error: None,
        }
    }

    #[test]
    fn a_uniformly_slower_device_is_drift_not_shape_error() {
        // every network runs 25% slower than predicted, except one that is also off in shape
        let checks = vec![
            check(100.0, 125.0),
            check(200.0, 250.0),
            check(300.0, 375.0),
            check(100.0, 160.0),
        ];
        let s = &summarize(&checks, &[Dtype::Int8])[0];
        assert_eq!(s.networks, 4);
        assert_eq!(s.within_10pct, 0.0);
        assert!((s.mean_abs_error - (0.2 * 3.0 + 0.375) / 4.0).abs() < 1e-9);
        assert!((s.drift - 1.25).abs() < 1e-9);
        assert_eq!(s.within_10pct_relative, 0.75);
        // no reference: no corrected figures
        assert_eq!((s.speed_now, s.within_10pct_corrected), (None, None));

        // the same networks with the reference timed 25% slower around the first three and 30% around
        // the last: the correction takes the measured pace of each, not one factor for all
        let paced: Vec<Check> = checks
            .iter()
            .zip([1.25, 1.25, 1.25, 1.3])
            .map(|(c, speed)| Check {
                speed: Some(speed),
                corrected_error: Some(c.predicted_us * speed / c.measured_us - 1.0),
                ..c.clone()
            })
            .collect();
        let s = &summarize(&paced, &[Dtype::Int8])[0];
        assert_eq!(s.speed_now, Some(1.25));
        assert_eq!(s.within_10pct_corrected, Some(0.75));
        let last: f64 = 100.0 * 1.3 / 160.0 - 1.0;
        assert!((s.mean_abs_error_corrected.unwrap() - last.abs() / 4.0).abs() < 1e-9);
    }
}
