//! The profiler: times every op of a space at each dtype with ONNX Runtime and fills a latency table.
//! It is what the phone app runs when the user taps "Profile device"; on a host `fbnet profile` runs it.
//!
//! Two methods, both on graphs made by [`crate::onnx`]:
//! - `in-network` (the default, [`crate::in_network`]) times ops where they really run: inside whole
//!   covering networks, attributed per kernel with ONNX Runtime's profiler.
//! - `isolated` times each op as a graph of its own. It pays what a network does not (quantising its
//!   input, reordering layouts at both edges) and gets what a network does not (its weights and buffers
//!   hot in cache from the previous run); `fbnet lut validate` shows how far that is off on a machine.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::device::DeviceInfo;
use crate::error::{Error, Result};
use crate::in_network::{planned_steps, profile_in_network};
use crate::lut::{Entry, Lut, RuntimeDesc};
use crate::onnx::weights::SplitMix;
use crate::onnx::{Dtype, NetworkGraph, RandomWeights, Ranges, op_graph};
use crate::ops::Op;
use crate::runtime::{self, RangeEstimate, SessionConfig, calibrate};
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
    /// Steps of this run done and planned (a resumed profile plans only what is left).
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
    let ranges = calibrate(&fp32, &inputs, session, RangeEstimate::MinMax)?;
    make(Dtype::Int8, Some(&ranges))
}

/// Sessions a whole-graph measurement is spread over. A fresh session of the same graph can run
/// several percent faster or slower than the last (its buffers land elsewhere in memory), and a burst of
/// load from outside the process hits one session's runs rather than all of them.
const MEASURE_SESSIONS: usize = 3;

/// Times a built graph with the standard method in [`MEASURE_SESSIONS`] fresh sessions, each taking its
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
            if lut.timing != cfg.timing {
                return Err(Error::invalid(format!(
                    "cannot resume: the table was measured with the timing {:?}, this run asks for {:?} \
                     (a quick and a full profile do not mix; profile to another file)",
                    lut.timing, cfg.timing
                )));
            }
            let (a, b) = (&lut.device, &cfg.device);
            if (&a.model, &a.soc, &a.cpu, a.cores) != (&b.model, &b.soc, &b.cpu, b.cores) {
                return Err(Error::invalid(format!(
                    "cannot resume: the table was measured on {} ({}, {} cores), this is {} ({}, {} cores)",
                    a.model, a.cpu, a.cores, b.model, b.cpu, b.cores
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
    let total = match cfg.method {
        Method::Isolated => cfg
            .space
            .unique_ops()
            .iter()
            .map(|op| {
                cfg.dtypes
                    .iter()
                    .filter(|d| lut.get(op, **d).is_none())
                    .count()
            })
            .sum(),
        Method::InNetwork => planned_steps(cfg, &lut)?,
    };
    let start = Instant::now();
    let save = |lut: &Lut| out.map_or(Ok(()), |p| lut.save(p));
    save(&lut)?;
    let mut done = 0;
    let mut report = |step: String| {
        done += 1;
        let elapsed_s = start.elapsed().as_secs_f64();
        on_progress(&Progress {
            done,
            total,
            step,
            elapsed_s,
            eta_s: elapsed_s / done as f64 * total.saturating_sub(done) as f64,
        });
    };
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
                    report(step);
                }
            }
        }
        Method::InNetwork => profile_in_network(cfg, &mut lut, cancel, &mut |lut, step| {
            save(lut)?;
            report(step);
            Ok(())
        })?,
    }
    Ok(lut)
}
