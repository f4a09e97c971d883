//! The profiler: times every op of a space at each dtype with ONNX Runtime and fills a latency table.
//! It is what the phone app runs when the user taps "Profile device"; on a host `fbnet profile` runs it.
//!
//! Two methods, both on graphs made by [`crate::onnx`]:
//! - `in-network` (the default) times ops where they really run: inside whole networks. A handful of
//!   covering networks ([`covering_archs`]) place every candidate at every layer at least once; each is
//!   timed as a whole, then run again under ONNX Runtime's profiler, whose per-kernel times are traced back
//!   to the layers ([`crate::attribution`]); the time between kernels is taken from the unprofiled run
//!   (the profiler's own bookkeeping sits there) and shared among the kernels.
//!   What belongs to no op (the input's quantisation, layout changes at the edges, time between kernels)
//!   becomes the table's per-network overhead. This is the additive model of the paper's eq. 3 measured in
//!   the context it is used in.
//! - `isolated` times each op as a graph of its own. It pays what a network does not (quantising its
//!   input, reordering layouts at both edges) and gets what a network does not (its weights and buffers
//!   hot in cache from the previous run); `fbnet lut validate` shows how far that is off on a machine.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::attribution::{RunBreakdown, breakdown};
use crate::device::DeviceInfo;
use crate::error::{Error, Result};
use crate::lut::{Entry, Lut, NETWORK_OVERHEAD, RuntimeDesc};
use crate::onnx::weights::SplitMix;
use crate::onnx::{Dtype, NetworkGraph, RandomWeights, Ranges, arch_graph, op_graph};
use crate::ops::Op;
use crate::runtime::{self, SessionConfig, calibrate, run};
use crate::space::Space;
use crate::timing::{Stats, TimingConfig, time_session};

/// How op latencies are measured (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    #[default]
    InNetwork,
    Isolated,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::InNetwork => "in-network",
            Method::Isolated => "isolated",
        })
    }
}

impl FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "in-network" => Ok(Method::InNetwork),
            "isolated" => Ok(Method::Isolated),
            _ => Err(Error::invalid(format!(
                "unknown profiling method `{s}` (expected in-network or isolated)"
            ))),
        }
    }
}

/// What to profile and how.
#[derive(Clone, Debug)]
pub struct ProfileConfig {
    pub space: Space,
    pub dtypes: Vec<Dtype>,
    pub session: SessionConfig,
    pub timing: TimingConfig,
    pub device: DeviceInfo,
    pub method: Method,
    /// Seed of the random weights and inputs.
    pub seed: u64,
    /// Folder for ONNX Runtime's profiler traces (deleted after reading).
    pub trace_dir: PathBuf,
}

/// Progress of a running profile, reported after each step (an op, or a network of ops).
#[derive(Clone, Debug)]
pub struct Progress {
    /// Entries in the table now (including those a resumed table already had).
    pub done: usize,
    pub total: usize,
    /// What was just measured.
    pub step: String,
    /// Seconds since this run started, and the estimated seconds left.
    pub elapsed_s: f64,
    pub eta_s: f64,
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
    let ranges = calibrate(&fp32, &inputs, session)?;
    make(Dtype::Int8, Some(&ranges))
}

/// Times a built graph with the standard method; measures again once with twice the time if the spread
/// is too wide, and reports whether it stayed too wide (noisy).
pub fn measure(
    graph: &NetworkGraph,
    session: SessionConfig,
    timing: &TimingConfig,
    seed: u64,
    cancel: &AtomicBool,
) -> Result<(Stats, bool)> {
    let mut s = session.session(&graph.model.to_bytes())?;
    let input = random_inputs(&graph.input_shape, 1, seed).remove(0);
    let first = time_session(&mut s, &input, &graph.input_shape, timing, cancel)?;
    if first.spread() <= timing.max_spread {
        return Ok((first, false));
    }
    let second = time_session(
        &mut s,
        &input,
        &graph.input_shape,
        &timing.doubled(),
        cancel,
    )?;
    let best = if second.spread() < first.spread() {
        second
    } else {
        first
    };
    Ok((best, best.spread() > timing.max_spread))
}

/// Measures one op at one dtype as a graph of its own (the `isolated` method).
pub fn measure_op(
    op: &Op,
    dtype: Dtype,
    cfg: &ProfileConfig,
    cancel: &AtomicBool,
) -> Result<Entry> {
    let mut weights = RandomWeights { seed: cfg.seed };
    let graph = build_at(dtype, cfg.session, cfg.seed, &mut |d, r| {
        op_graph(op, d, &mut weights, r)
    })?;
    let (stats, noisy) = measure(&graph, cfg.session, &cfg.timing, cfg.seed, cancel)?;
    Ok(Entry {
        op: op.key(),
        dtype,
        stats,
        noisy,
    })
}

/// Networks that together place every candidate of every layer at least once: network `j` takes
/// candidate `(j + l) mod n_l` at layer `l`, so neighbouring layers differ and every op meets several
/// contexts across the set.
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

/// Per-op and per-network samples (µs) of one network measured in context.
struct NetworkSamples {
    /// Samples of each op of `arch.ops()`, with its share of the time between kernels.
    ops: Vec<Vec<f64>>,
    /// Samples of the time that belongs to no op.
    rest: Vec<f64>,
}

static TRACE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Sessions over which a network's profiled runs are spread.
const PROFILED_SESSIONS: usize = 3;

/// Runs `model` in a fresh session under ONNX Runtime's profiler: warm-up, then `runs` runs whose
/// kernels are attributed to the network's ops. The trace file is deleted after reading.
#[allow(clippy::too_many_arguments)]
fn profiled_runs(
    model: &[u8],
    graph: &NetworkGraph,
    input: &[f32],
    runs: usize,
    cfg: &ProfileConfig,
    timing: &TimingConfig,
    n_ops: usize,
    cancel: &AtomicBool,
) -> Result<Vec<RunBreakdown>> {
    std::fs::create_dir_all(&cfg.trace_dir).map_err(|e| Error::io(&cfg.trace_dir, e))?;
    let n = TRACE_COUNTER.fetch_add(1, Ordering::Relaxed);
    let prefix = cfg
        .trace_dir
        .join(format!("fbnet-trace-{}-{n}", std::process::id()));
    let mut profiled = cfg.session.profiled_session(model, &prefix)?;
    for _ in 0..timing.warmup_runs + runs {
        run(&mut profiled, input, &graph.input_shape)?;
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
    }
    let trace_path = PathBuf::from(profiled.end_profiling()?);
    drop(profiled);
    let text = std::fs::read_to_string(&trace_path).map_err(|e| Error::io(&trace_path, e));
    let _ = std::fs::remove_file(&trace_path);
    let mut all = breakdown(&text?, n_ops)?;
    Ok(all.split_off(all.len().saturating_sub(runs)))
}

/// Times `graph` (the network of `n_ops` ops) whole, then under the profiler, and attributes the time:
/// per op its kernels, per network its edge kernels, each with a share of the time between kernels.
fn time_in_network(
    graph: &NetworkGraph,
    n_ops: usize,
    cfg: &ProfileConfig,
    timing: &TimingConfig,
    cancel: &AtomicBool,
) -> Result<NetworkSamples> {
    let model = graph.model.to_bytes();
    let input = random_inputs(&graph.input_shape, 1, cfg.seed).remove(0);
    let mut plain = cfg.session.session(&model)?;
    let wall = time_session(&mut plain, &input, &graph.input_shape, timing, cancel)?;
    drop(plain);

    // The same network in a fresh session can run an op 10–50% slower or faster than in the last one
    // (where ONNX Runtime's buffers land in memory differs), so the profiled runs are spread over
    // several sessions.
    let runs = wall.count.clamp(timing.min_runs, timing.max_runs);
    let per_session = runs.div_ceil(PROFILED_SESSIONS).max(3);
    let mut timed = Vec::new();
    for _ in 0..PROFILED_SESSIONS {
        timed.extend(profiled_runs(
            &model,
            graph,
            &input,
            per_session,
            cfg,
            timing,
            n_ops,
            cancel,
        )?);
    }
    // Kernel durations are the profiler's; the time between kernels is not (its bookkeeping sits
    // there). That time is taken from the plain run instead, wall − kernels, and shared evenly among the
    // kernels, so an op with more kernels carries more of the executor's per-kernel cost.
    let kernel_times: Vec<f64> = timed.iter().map(|r| r.kernel_time()).collect();
    let kernels = Stats::from_samples(&kernel_times)
        .ok_or_else(|| Error::Runtime("the profiler recorded no runs".into()))?
        .trimmed_mean;
    let count = timed[0].kernel_count().max(1) as f64;
    // When the profiled kernels alone take longer than the plain run, the profiler slowed them down:
    // scale them to the plain wall time instead of sharing a negative gap.
    let (gap, scale) = if wall.trimmed_mean >= kernels {
        ((wall.trimmed_mean - kernels) / count, 1.0)
    } else {
        (0.0, wall.trimmed_mean / kernels)
    };
    let ops = (0..n_ops)
        .map(|i| {
            timed
                .iter()
                .map(|r| r.ops[i] * scale + gap * r.kernels[i] as f64)
                .collect()
        })
        .collect();
    let rest = timed
        .iter()
        .map(|r| r.edge * scale + gap * r.edge_kernels as f64)
        .collect();
    Ok(NetworkSamples { ops, rest })
}

fn entry(op: String, dtype: Dtype, samples: &[f64], noisy: bool) -> Result<Entry> {
    let stats = Stats::from_samples(samples)
        .filter(|s| s.trimmed_mean > 0.0 && s.p10 > 0.0)
        .ok_or_else(|| {
            Error::Runtime(format!("no time could be attributed to `{op}` ({dtype})"))
        })?;
    Ok(Entry {
        op,
        dtype,
        stats,
        noisy,
    })
}

/// Times `arch` in context at `dtype`. If any op in `wanted` has a spread above the limit, the network
/// is timed again for longer and the steadier samples of each such op are kept; ops still too spread
/// are returned as noisy.
fn profile_network(
    arch: &Arch,
    dtype: Dtype,
    cfg: &ProfileConfig,
    wanted: &BTreeSet<String>,
    cancel: &AtomicBool,
) -> Result<(NetworkSamples, BTreeSet<String>)> {
    let ops = arch.ops();
    let mut weights = RandomWeights { seed: cfg.seed };
    let graph = build_at(dtype, cfg.session, cfg.seed, &mut |d, r| {
        arch_graph(arch, d, &mut weights, r, 1, &[])
    })?;
    let spread = |v: &[f64]| Stats::from_samples(v).map_or(f64::INFINITY, |s| s.spread());
    let too_spread = |samples: &NetworkSamples| -> Vec<usize> {
        (0..ops.len())
            .filter(|&i| wanted.contains(&ops[i].key()))
            .filter(|&i| spread(&samples.ops[i]) > cfg.timing.max_spread)
            .collect()
    };
    let mut samples = time_in_network(&graph, ops.len(), cfg, &cfg.timing, cancel)?;
    let mut noisy = too_spread(&samples);
    if !noisy.is_empty() {
        let again = time_in_network(&graph, ops.len(), cfg, &cfg.timing.doubled(), cancel)?;
        for &i in &noisy {
            if spread(&again.ops[i]) < spread(&samples.ops[i]) {
                samples.ops[i] = again.ops[i].clone();
            }
        }
        noisy = too_spread(&samples);
    }
    let noisy = noisy.into_iter().map(|i| ops[i].key()).collect();
    Ok((samples, noisy))
}

/// The in-network method: runs the covering networks that hold ops the table lacks and pools each op's
/// samples over every network it occurs in (up to one per layer of its stage), so an entry averages
/// over several contexts. An op's entry is written once the last network holding it has run; a resumed
/// profile re-runs the networks of the ops still missing.
fn profile_in_network(
    cfg: &ProfileConfig,
    lut: &mut Lut,
    cancel: &AtomicBool,
    after_step: &mut dyn FnMut(&Lut, String) -> Result<()>,
) -> Result<()> {
    let archs = covering_archs(&cfg.space)?;
    for &dtype in &cfg.dtypes {
        let missing: BTreeSet<String> = lut.missing(dtype).iter().map(Op::key).collect();
        let mut last: BTreeMap<String, usize> = BTreeMap::new();
        for (j, arch) in archs.iter().enumerate() {
            for op in arch.ops().iter().filter(|o| missing.contains(&o.key())) {
                last.insert(op.key(), j);
            }
        }
        let need_overhead = lut.overhead(dtype).is_none();
        let last_net = last.values().copied().max().unwrap_or(0);
        let mut pooled: BTreeMap<String, (Vec<f64>, bool)> = BTreeMap::new();
        let mut rest = Vec::new();
        for (j, arch) in archs.iter().enumerate() {
            let ops = arch.ops();
            let overhead_here = need_overhead && j == last_net;
            if !overhead_here && !ops.iter().any(|o| missing.contains(&o.key())) {
                continue;
            }
            let (samples, noisy) = profile_network(arch, dtype, cfg, &missing, cancel)?;
            rest.extend_from_slice(&samples.rest);
            for (i, op) in ops
                .iter()
                .enumerate()
                .filter(|(_, o)| missing.contains(&o.key()))
            {
                let slot = pooled.entry(op.key()).or_default();
                slot.0.extend_from_slice(&samples.ops[i]);
                slot.1 |= noisy.contains(&op.key());
            }
            let mut added = 0;
            for (key, _) in last.iter().filter(|(_, l)| **l == j) {
                if let Some((v, noisy)) = pooled.remove(key) {
                    lut.entries.push(entry(key.clone(), dtype, &v, noisy)?);
                    added += 1;
                }
            }
            if overhead_here {
                // Zero is a valid overhead (an fp32 graph whose first kernel is the stem's).
                let stats = Stats::from_samples(&rest)
                    .ok_or_else(|| Error::Runtime("no overhead samples".into()))?;
                lut.overhead.push(Entry {
                    op: NETWORK_OVERHEAD.into(),
                    dtype,
                    stats,
                    noisy: false,
                });
            }
            after_step(lut, format!("{} {dtype}: {added} ops done", arch.name))?;
        }
    }
    Ok(())
}

/// Profiles the space of `cfg`, continuing `resume` if given (a partial table of the same space, method
/// and runtime settings). With `out`, the table is saved after every step, so cancelling or killing the
/// profile keeps everything measured so far. Returns the table, or [`Error::Cancelled`] once `cancel` is
/// set (the saved file then holds the partial table).
pub fn profile(
    cfg: &ProfileConfig,
    resume: Option<Lut>,
    out: Option<&Path>,
    cancel: &AtomicBool,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<Lut> {
    let info = runtime::init(None)?;
    let runtime = RuntimeDesc::onnxruntime(&info.version, cfg.session);
    let mut lut = match resume {
        Some(mut lut) => {
            lut.check_space(&cfg.space)?;
            if lut.runtime != runtime || lut.method != cfg.method {
                return Err(Error::invalid(format!(
                    "cannot resume: the table was measured {} with {:?}, this run is {} with {:?}",
                    lut.method, lut.runtime, cfg.method, runtime
                )));
            }
            for d in &cfg.dtypes {
                if !lut.dtypes.contains(d) {
                    lut.dtypes.push(*d);
                }
            }
            lut
        }
        None => Lut::new(
            cfg.space.clone(),
            cfg.dtypes.clone(),
            cfg.device.clone(),
            runtime,
            cfg.timing,
            cfg.method,
        ),
    };
    let total = cfg.space.unique_ops().len() * lut.dtypes.len();
    let start = Instant::now();
    let save = |lut: &Lut| out.map_or(Ok(()), |p| lut.save(p));
    save(&lut)?;
    let mut report = |lut: &Lut, step: String, before: usize| {
        let elapsed_s = start.elapsed().as_secs_f64();
        let measured = lut.entries.len() - before;
        let left = total.saturating_sub(lut.entries.len());
        on_progress(&Progress {
            done: lut.entries.len(),
            total,
            step,
            elapsed_s,
            eta_s: if measured > 0 {
                elapsed_s / measured as f64 * left as f64
            } else {
                0.0
            },
        });
    };
    let before = lut.entries.len();
    match cfg.method {
        Method::Isolated => {
            for op in cfg.space.unique_ops() {
                for &dtype in &cfg.dtypes {
                    if lut.get(&op, dtype).is_some() {
                        continue;
                    }
                    let e = measure_op(&op, dtype, cfg, cancel)?;
                    let step = format!("{} {dtype} {:.0} us", e.op, e.stats.trimmed_mean);
                    lut.entries.push(e);
                    save(&lut)?;
                    report(&lut, step, before);
                }
            }
        }
        Method::InNetwork => profile_in_network(cfg, &mut lut, cancel, &mut |lut, step| {
            save(lut)?;
            report(lut, step, before);
            Ok(())
        })?,
    }
    Ok(lut)
}
