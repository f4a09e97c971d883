//! The in-network profiling method: ops timed where they really run, inside whole networks.
//!
//! A handful of covering networks ([`covering_archs`]) place every candidate at every layer at least
//! once. Each is timed whole without the profiler (its wall time), then run under ONNX Runtime's profiler,
//! whose per-kernel times are traced back to the layers ([`super::attribution`]). The profiler's kernel
//! times are not quite the kernels' cost in a plain run: each carries some of the profiler's own
//! bookkeeping, and the executor's time between kernels is missing. Both are per-kernel costs, so per
//! dtype one constant is fitted over the covering networks,
//!
//! ```text
//! wall = (profiled kernel time) + β · (number of kernels)
//! ```
//!
//! as the median over the networks of `(wall − kernel time) / kernels`, and each op's latency is
//! `k + β·n` from its own profiled kernel time `k` and kernel count `n`; the kernels before the first
//! layer (quantising the input, changing its layout) are the per-network overhead. (A free scale factor
//! on `k` as well was tried: with nine similar networks and a noisy machine it traded off against β and
//! made both meaningless. Kernel compute is what the profiler times best, so its scale is taken as 1.)
//!
//! The raw record of each network is kept in the table (`pending`) until the dtype's fit, so an
//! interrupted profile resumes without measuring those networks again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::ProfileConfig;
use super::attribution::{RunBreakdown, breakdown};
use crate::arch::Arch;
use crate::error::{Error, Result};
use crate::lut::{Calibration, Entry, Lut, NETWORK_OVERHEAD, NetworkRecord, OpRecord};
use crate::measure::{Stats, TimingConfig, build_at, median, random_inputs, time_session};
use crate::onnx::{Dtype, NetworkGraph, RandomWeights, arch_graph};
use crate::reference::{Reference, new_record};
use crate::runtime::run;
use crate::space::Space;

/// Networks that together place every candidate of every layer at least once: network `j` takes
/// candidate `(j + l) mod n_l` at layer `l`, so neighbouring layers differ and an op that several
/// layers share meets several contexts.
pub fn covering_archs(space: &Space) -> Result<Vec<Arch>> {
    let layers = space.layers();
    let per_layer: Vec<_> = layers.iter().map(|l| space.candidates_at(l)).collect();
    let n = per_layer.iter().map(Vec::len).max().unwrap_or(0);
    (0..n)
        .map(|j| {
            let choices = per_layer
                .iter()
                .enumerate()
                .map(|(l, c)| c[(j + l) % c.len()])
                .collect();
            Arch::new(&format!("cover-{j}"), space.clone(), choices)
        })
        .collect()
}

static TRACE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Sessions over which a network's profiled runs are spread: the same network in a fresh session can
/// run an op markedly faster or slower (its buffers land elsewhere in memory).
const PROFILED_SESSIONS: usize = 3;

/// A private folder for one profiled session's trace, removed with everything in it on drop.
struct TraceDir(PathBuf);

impl TraceDir {
    fn new(parent: &Path) -> Result<TraceDir> {
        let n = TRACE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = parent.join(format!(".fbnet-trace-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(TraceDir(dir))
    }
}

impl Drop for TraceDir {
    fn drop(&mut self) {
        // Best effort: nothing else can be done about a folder that cannot be removed.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A covering network built for measurement, with what every run of it needs.
struct Subject<'a> {
    model: Vec<u8>,
    graph: NetworkGraph,
    input: Vec<f32>,
    n_ops: usize,
    cfg: &'a ProfileConfig,
    cancel: &'a AtomicBool,
}

impl Subject<'_> {
    /// Runs the network in a fresh session under ONNX Runtime's profiler: warm-up, then `runs` runs
    /// whose kernels are attributed to the network's ops. The trace file is deleted after reading.
    fn profiled_runs(&self, runs: usize) -> Result<Vec<RunBreakdown>> {
        let cfg = self.cfg;
        // Declared before the session, so dropped after it: whichever way this returns (cancelled,
        // failed), the trace ONNX Runtime writes when the session drops lands in this private
        // folder and is removed with it.
        let traces = TraceDir::new(&cfg.trace_dir)?;
        let mut profiled = cfg
            .session
            .profiled_session(&self.model, &traces.0.join("trace"))?;
        for _ in 0..cfg.timing.warmup_runs + runs {
            run(&mut profiled, &self.input, &self.graph.input_shape)?;
            if self.cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
        }
        let trace_path = PathBuf::from(profiled.end_profiling()?);
        drop(profiled);
        let text = std::fs::read_to_string(&trace_path).map_err(|e| Error::io(&trace_path, e))?;
        let mut all = breakdown(&text, self.n_ops)?;
        Ok(all.split_off(all.len().saturating_sub(runs)))
    }

    /// Wall time of plain runs (no profiler) in a fresh session, timed as `timing` says: the trimmed
    /// mean in µs and the number of runs it took.
    fn plain_runs(&self, timing: &TimingConfig) -> Result<(f64, usize)> {
        let mut plain = self.cfg.session.session(&self.model)?;
        let wall = time_session(
            &mut plain,
            &self.input,
            &self.graph.input_shape,
            timing,
            self.cancel,
        )?;
        Ok((wall.trimmed_mean, wall.count))
    }
}

fn spread(samples: &[f64]) -> f64 {
    Stats::from_samples(samples).map_or(f64::INFINITY, |s| s.spread())
}

/// Per-op records of a network's runs (ops of the same key pooled).
fn op_records(arch: &Arch, runs: &[RunBreakdown]) -> Vec<OpRecord> {
    let mut by_key: BTreeMap<String, OpRecord> = BTreeMap::new();
    for (i, op) in arch.ops().iter().enumerate() {
        if op.is_identity() {
            continue;
        }
        let r = by_key.entry(op.key()).or_insert_with(|| OpRecord {
            op: op.key(),
            kernels: runs[0].kernels[i],
            samples: Vec::new(),
            noisy: false,
        });
        r.samples.extend(runs.iter().map(|run| run.ops[i]));
    }
    by_key.into_values().collect()
}

/// Measures one covering network at `dtype`: its wall time, then its kernels under the profiler. Ops
/// whose samples are too spread get a second, longer measurement; the steadier samples are kept.
pub fn measure_network(
    arch: &Arch,
    dtype: Dtype,
    cfg: &ProfileConfig,
    cancel: &AtomicBool,
) -> Result<NetworkRecord> {
    let n_ops = arch.ops().len();
    let mut weights = RandomWeights { seed: cfg.seed };
    let graph = build_at(dtype, cfg.session, cfg.seed, &mut |d, r| {
        arch_graph(arch, d, &mut weights, r, 1, &[])
    })?;
    let subject = Subject {
        model: graph.model.to_bytes(),
        input: random_inputs(&graph.input_shape, 1, cfg.seed).remove(0),
        graph,
        n_ops,
        cfg,
        cancel,
    };
    // Plain and profiled sessions alternate (PROFILED_SESSIONS of each), so a drift of the machine's
    // speed shows in both the wall time and the kernel times instead of coming between them.
    let share = cfg.timing.split(PROFILED_SESSIONS);
    let mut walls = Vec::new();
    let mut timed = Vec::new();
    for _ in 0..PROFILED_SESSIONS {
        let (wall, count) = subject.plain_runs(&share)?;
        walls.push(wall);
        timed.extend(subject.profiled_runs(count.clamp(share.min_runs, share.max_runs))?);
    }
    walls.sort_by(f64::total_cmp);
    let wall = walls[walls.len() / 2];
    if timed.is_empty() {
        return Err(Error::Runtime("the profiler recorded no runs".into()));
    }
    let mut ops = op_records(arch, &timed);
    let max = cfg.timing.max_spread;
    if ops.iter().any(|o| spread(&o.samples) > max) {
        // Once more, with twice the runs, in as many fresh sessions.
        let per_session = (2 * timed.len()).div_ceil(PROFILED_SESSIONS);
        let mut again = Vec::new();
        for _ in 0..PROFILED_SESSIONS {
            again.extend(subject.profiled_runs(per_session)?);
        }
        for (o, a) in ops.iter_mut().zip(op_records(arch, &again)) {
            if spread(&a.samples) < spread(&o.samples) {
                *o = a;
            }
        }
        for o in &mut ops {
            o.noisy = spread(&o.samples) > max;
        }
    }
    let kernel_times: Vec<f64> = timed.iter().map(RunBreakdown::kernel_time).collect();
    let kernel_time = Stats::from_samples(&kernel_times)
        .map(|s| s.trimmed_mean)
        .unwrap_or_default();
    Ok(NetworkRecord {
        dtype,
        network: arch.name.clone(),
        wall,
        kernel_time,
        kernels: timed[0].kernel_count(),
        edge: OpRecord {
            op: NETWORK_OVERHEAD.into(),
            kernels: timed[0].edge_kernels,
            samples: timed.iter().map(|r| r.edge).collect(),
            noisy: false,
        },
        ops,
        reference_us: 0.0,
    })
}

/// Fits β of `wall = kernel_time + β·kernels` as the median of the networks' `(wall − kernel_time) /
/// kernels` (a median, so one network measured in a slow spell does not move it).
pub fn fit(dtype: Dtype, records: &[&NetworkRecord]) -> Calibration {
    let beta = median(
        records
            .iter()
            .filter(|r| r.kernels > 0)
            .map(|r| (r.wall - r.kernel_time) / r.kernels as f64)
            .collect(),
    )
    .unwrap_or(0.0);
    let max_residual = records
        .iter()
        .map(|r| ((r.kernel_time + beta * r.kernels as f64) - r.wall).abs() / r.wall)
        .fold(0.0, f64::max);
    Calibration {
        dtype,
        per_kernel_us: beta,
        networks: records.len(),
        max_residual,
    }
}

impl Calibration {
    /// Latency samples of an op from its profiled kernel samples. Never below a twentieth of the
    /// kernel time: on microscopic networks the per-kernel term could otherwise exceed the op.
    pub fn apply(&self, record: &OpRecord) -> Vec<f64> {
        let offset = self.per_kernel_us * record.kernels as f64;
        record
            .samples
            .iter()
            .map(|k| (k + offset).max(0.05 * k))
            .collect()
    }
}

/// The records scaled to the speed the table stands for: each divided by the speed reference's time
/// around it over the reference's median time at `dtype` (records without a reference time, from a
/// schema-1 partial table, are kept as measured).
fn at_reference_speed(lut: &Lut, dtype: Dtype, records: Vec<NetworkRecord>) -> Vec<NetworkRecord> {
    let Some(baseline) = lut.reference_time(dtype) else {
        return records;
    };
    records
        .into_iter()
        .map(|mut r| {
            if r.reference_us > 0.0 {
                let f = r.reference_us / baseline;
                r.wall /= f;
                r.kernel_time /= f;
                for o in r.ops.iter_mut().chain(std::iter::once(&mut r.edge)) {
                    o.samples.iter_mut().for_each(|v| *v /= f);
                }
            }
            r
        })
        .collect()
}

/// Turns the pending network records of `dtype` into entries for the ops the table lacks and the
/// network overhead, and drops the records.
pub fn finalize(lut: &mut Lut, dtype: Dtype) -> Result<()> {
    let (records, rest): (Vec<NetworkRecord>, Vec<NetworkRecord>) =
        lut.pending.drain(..).partition(|r| r.dtype == dtype);
    lut.pending = rest;
    // Timings of the reference at a dtype none of whose records were taken beside it (a schema-1
    // partial table resumed with every network already measured) describe no entry: dropped.
    if !records.iter().any(|r| r.reference_us > 0.0)
        && let Some(reference) = lut.reference.as_mut()
    {
        reference.timings.retain(|t| t.dtype != dtype);
    }
    let records = at_reference_speed(lut, dtype, records);
    let refs: Vec<&NetworkRecord> = records.iter().collect();
    let cal = fit(dtype, &refs);
    let mut pooled: BTreeMap<&str, (Vec<f64>, bool)> = BTreeMap::new();
    for r in &records {
        for o in &r.ops {
            let slot = pooled.entry(o.op.as_str()).or_default();
            slot.0.extend(cal.apply(o));
            slot.1 |= o.noisy;
        }
    }
    for op in lut.missing(dtype) {
        let key = op.key();
        let (samples, noisy) = pooled.get(key.as_str()).ok_or_else(|| {
            Error::Runtime(format!("no covering network measured `{key}` ({dtype})"))
        })?;
        let stats = Stats::from_samples(samples)
            .filter(|s| s.trimmed_mean > 0.0 && s.p10 > 0.0)
            .ok_or_else(|| {
                Error::Runtime(format!("no time could be attributed to `{key}` ({dtype})"))
            })?;
        lut.entries.push(Entry {
            op: key,
            dtype,
            stats,
            noisy: *noisy,
        });
    }
    if lut.overhead(dtype).is_none() {
        let samples: Vec<f64> = records.iter().flat_map(|r| cal.apply(&r.edge)).collect();
        let stats = Stats::from_samples(&samples)
            .ok_or_else(|| Error::Runtime("no overhead samples".into()))?;
        lut.overhead.push(Entry {
            op: NETWORK_OVERHEAD.into(),
            dtype,
            stats,
            noisy: false,
        });
    }
    lut.calibration.retain(|c| c.dtype != dtype);
    lut.calibration.push(cal);
    Ok(())
}

/// Profiles the dtypes of `cfg` the table lacks with the covering networks. `after_step` is called
/// after each network and after each dtype's fit (to save the table and report progress).
pub fn profile_in_network(
    cfg: &ProfileConfig,
    lut: &mut Lut,
    cancel: &AtomicBool,
    after_step: &mut dyn FnMut(&Lut, String) -> Result<()>,
) -> Result<()> {
    let archs = covering_archs(&cfg.space)?;
    // The reference before and after each network: when they disagree by more than the timing
    // preset's spread, the device changed pace during it, and the network is measured once more; the
    // record with the steadier pair is kept, its ops flagged noisy if that pair still disagrees.
    let steady = (1.0 + cfg.timing.max_spread).ln();
    for &dtype in &cfg.dtypes {
        if lut.require_complete(dtype).is_ok() {
            continue;
        }
        let record = lut
            .reference
            .get_or_insert(new_record(&cfg.space, cfg.seed)?);
        let mut reference = Reference::build(record, &cfg.space, dtype, cfg.session, &cfg.timing)?;
        let started = if lut.pending.iter().any(|r| r.dtype == dtype) {
            "resume"
        } else {
            "start"
        };
        let mut before = reference.time_into(lut, started, cancel)?;
        for arch in &archs {
            if measured(lut, dtype, &arch.name) {
                continue;
            }
            let mut measure_between = |before: &mut f64,
                                       lut: &mut Lut|
             -> Result<(f64, NetworkRecord)> {
                let mut record = measure_network(arch, dtype, cfg, cancel)?;
                let after = reference.time_into(lut, &format!("after {}", arch.name), cancel)?;
                record.reference_us = (*before + after) / 2.0;
                let change = (after / *before).ln().abs();
                *before = after;
                Ok((change, record))
            };
            let (mut change, mut record) = measure_between(&mut before, lut)?;
            let remeasured = change > steady;
            if remeasured {
                let (again, other) = measure_between(&mut before, lut)?;
                if again < change {
                    (change, record) = (again, other);
                }
            }
            let unsteady = change > steady;
            if unsteady {
                record.ops.iter_mut().for_each(|o| o.noisy = true);
            }
            // The step tells the user (the app shows it) how fast the device runs against the
            // profile so far, and when it changed pace under a measurement.
            let pace = lut.reference_time(dtype).map_or(String::new(), |b| {
                format!(
                    ", device at {:.2}x the profile's median time",
                    record.reference_us / b
                )
            });
            let why = match (remeasured, unsteady) {
                (_, true) => "; the device changed pace during it twice: flagged noisy",
                (true, false) => "; measured twice: the device changed pace during the first",
                (false, false) => "",
            };
            let step = format!(
                "{} {dtype}: {:.0} us, {} kernels{pace}{why}",
                arch.name, record.wall, record.kernels
            );
            lut.pending.push(record);
            after_step(lut, step)?;
        }
        reference.time_into(lut, "end", cancel)?;
        finalize(lut, dtype)?;
        after_step(lut, format!("{dtype}: table entries fitted"))?;
    }
    Ok(())
}

/// Steps [`profile_in_network`] will take for `lut`: one per covering network still to measure, plus
/// one fit per dtype.
pub fn planned_steps(cfg: &ProfileConfig, lut: &Lut) -> Result<usize> {
    let archs = covering_archs(&cfg.space)?;
    Ok(cfg
        .dtypes
        .iter()
        .filter(|&&d| lut.require_complete(d).is_err())
        .map(|&d| 1 + archs.iter().filter(|a| !measured(lut, d, &a.name)).count())
        .sum())
}

/// Whether a partial table already holds the record of covering network `name` at `dtype`.
fn measured(lut: &Lut, dtype: Dtype, name: &str) -> bool {
    lut.pending
        .iter()
        .any(|r| r.dtype == dtype && r.network == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kernel_time: f64, kernels: usize, wall: f64) -> NetworkRecord {
        NetworkRecord {
            dtype: Dtype::Fp32,
            network: String::new(),
            wall,
            kernel_time,
            kernels,
            edge: OpRecord {
                op: NETWORK_OVERHEAD.into(),
                kernels: 0,
                samples: vec![],
                noisy: false,
            },
            ops: vec![],
            reference_us: 0.0,
        }
    }

    #[test]
    fn a_cancelled_profiled_run_leaves_no_trace_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let space = crate::Space::fbnet_small().with_variant(Some(16), Some(0.25), Some(10));
        let cfg = ProfileConfig {
            space: space.clone(),
            dtypes: vec![Dtype::Fp32],
            session: crate::runtime::SessionConfig::default(),
            timing: crate::measure::TimingConfig::quick(),
            device: crate::device::DeviceInfo::default(),
            method: crate::lut::Method::InNetwork,
            seed: 1,
            trace_dir: dir.clone(),
        };
        let arch = covering_archs(&space).unwrap().remove(0);
        let graph = build_at(Dtype::Fp32, cfg.session, 1, &mut |d, r| {
            arch_graph(&arch, d, &mut RandomWeights { seed: 1 }, r, 1, &[])
        })
        .unwrap();
        let cancel = AtomicBool::new(true);
        let subject = Subject {
            model: graph.model.to_bytes(),
            input: random_inputs(&graph.input_shape, 1, 1).remove(0),
            n_ops: arch.ops().len(),
            graph,
            cfg: &cfg,
            cancel: &cancel,
        };
        assert!(matches!(subject.profiled_runs(3), Err(Error::Cancelled)));
        cancel.store(false, Ordering::Relaxed);
        assert_eq!(subject.profiled_runs(3).unwrap().len(), 3);
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }

    #[test]
    fn the_fit_is_the_median_per_kernel_gap() {
        // four networks with wall = K − 1.8·N, one measured in a slow spell
        let mut recs: Vec<NetworkRecord> =
            [(6000.0, 120), (7000.0, 80), (5000.0, 70), (8000.0, 130)]
                .iter()
                .map(|&(k, n)| record(k, n, k - 1.8 * n as f64))
                .collect();
        recs.push(record(6000.0, 100, 9000.0));
        let refs: Vec<&NetworkRecord> = recs.iter().collect();
        let c = fit(Dtype::Fp32, &refs);
        assert!((c.per_kernel_us + 1.8).abs() < 1e-9, "{c:?}");
        assert!(
            c.max_residual > 0.3,
            "the slow network shows as a residual: {c:?}"
        );
        assert_eq!(fit(Dtype::Fp32, &[]).per_kernel_us, 0.0);
    }

    #[test]
    fn records_are_brought_to_the_pace_the_table_stands_for() {
        // the same network measured twice: once at the table's pace, once while the device (and the
        // reference around it) took 1.5x as long; both end up at the table's pace
        let space = crate::Space::fbnet_small();
        let mut lut = Lut::new(
            space.clone(),
            vec![Dtype::Fp32],
            crate::device::DeviceInfo::default(),
            crate::lut::RuntimeDesc::onnxruntime("1", crate::runtime::SessionConfig::default()),
            TimingConfig::quick(),
            crate::lut::Method::InNetwork,
        );
        let mut reference = new_record(&space, 1).unwrap();
        for us in [100.0, 100.0, 150.0] {
            reference.timings.push(crate::lut::ReferenceTiming {
                dtype: Dtype::Fp32,
                at: String::new(),
                us,
            });
        }
        lut.reference = Some(reference);
        let mut steady = record(6000.0, 100, 5800.0);
        steady.ops.push(OpRecord {
            op: "x".into(),
            kernels: 2,
            samples: vec![40.0, 44.0],
            noisy: false,
        });
        steady.reference_us = 100.0;
        let mut slow = steady.clone();
        slow.reference_us = 150.0;
        slow.wall *= 1.5;
        slow.kernel_time *= 1.5;
        slow.ops[0].samples = vec![60.0, 66.0];
        let mut old = slow.clone();
        old.reference_us = 0.0;
        let out = at_reference_speed(&lut, Dtype::Fp32, vec![steady.clone(), slow, old.clone()]);
        for r in &out[..2] {
            assert!((r.wall - steady.wall).abs() < 1e-9);
            assert!((r.kernel_time - steady.kernel_time).abs() < 1e-9);
            assert!((r.ops[0].samples[1] - 44.0).abs() < 1e-9);
        }
        // a record of schema 1 (no reference time) is used as measured
        assert_eq!(out[2], old);
    }

    #[test]
    fn reference_timings_beside_no_record_are_dropped_at_the_fit() {
        // a resumed schema-1 table: every fp32 entry measured, one network record without a reference
        // time; the reference timings taken at fp32 in this run describe no entry, int8's are kept
        let space = crate::Space::fbnet_small();
        let mut lut = Lut::new(
            space.clone(),
            vec![Dtype::Fp32, Dtype::Int8],
            crate::device::DeviceInfo::default(),
            crate::lut::RuntimeDesc::onnxruntime("1", crate::runtime::SessionConfig::default()),
            TimingConfig::quick(),
            crate::lut::Method::InNetwork,
        );
        let stats = Stats::from_samples(&[10.0, 11.0]).unwrap();
        for op in space.unique_ops() {
            lut.entries.push(Entry {
                op: op.key(),
                dtype: Dtype::Fp32,
                stats,
                noisy: false,
            });
        }
        lut.overhead.push(Entry {
            op: NETWORK_OVERHEAD.into(),
            dtype: Dtype::Fp32,
            stats,
            noisy: false,
        });
        let mut reference = new_record(&space, 1).unwrap();
        for dtype in [Dtype::Fp32, Dtype::Int8] {
            reference.timings.push(crate::lut::ReferenceTiming {
                dtype,
                at: "resume".into(),
                us: 100.0,
            });
        }
        lut.reference = Some(reference);
        lut.pending.push(record(6000.0, 100, 5800.0));
        finalize(&mut lut, Dtype::Fp32).unwrap();
        let r = lut.reference.as_ref().unwrap();
        assert_eq!(r.baseline(Dtype::Fp32), None);
        assert_eq!(r.baseline(Dtype::Int8), Some(100.0));
        assert!(lut.pending.is_empty());
    }

    #[test]
    fn op_latency_follows_the_fit_but_stays_positive() {
        let c = Calibration {
            dtype: Dtype::Fp32,
            per_kernel_us: -2.0,
            networks: 9,
            max_residual: 0.0,
        };
        let r = OpRecord {
            op: "x".into(),
            kernels: 3,
            samples: vec![100.0, 4.0],
            noisy: false,
        };
        assert_eq!(c.apply(&r), vec![94.0, 0.2]);
    }
}
