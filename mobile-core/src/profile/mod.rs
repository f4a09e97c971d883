//! The profiler: times every op of a space at each dtype with ONNX Runtime and fills a latency table.
//! It is what the phone app runs when the user taps "Profile device"; on a host `fbnet profile` runs it.
//!
//! Two methods, both on graphs made by [`crate::onnx`]:
//! - `in-network` (the default, [`in_network`]) times ops where they really run: inside whole
//!   covering networks, attributed per kernel with ONNX Runtime's profiler.
//! - `isolated` times each op as a graph of its own. It pays what a network does not (quantising its
//!   input, reordering layouts at both edges) and gets what a network does not (its weights and buffers
//!   hot in cache from the previous run); `fbnet lut validate` shows how far that is off on a machine.

pub mod attribution;
pub mod in_network;

use in_network::{planned_steps, profile_in_network};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::device::DeviceInfo;
use crate::error::{Error, Result};
use crate::lut::{Entry, Lut, Method, RuntimeDesc};
use crate::measure::{TimingConfig, build_at, measure};
use crate::onnx::{Dtype, RandomWeights, op_graph};
use crate::ops::Op;
use crate::reference::{Reference, new_record};
use crate::runtime::{self, SessionConfig};
use crate::space::Space;

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
            // A schema-1 partial table continues as schema 2: its old records keep no reference
            // time and are used as measured.
            lut.schema = crate::lut::LUT_SCHEMA;
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
            // The reference at the start and the end only: its drift is measured, ops are not
            // rescaled (each is timed on its own, with no network to bracket).
            // only the dtypes with ops still to measure: the others' entries were timed in another run
            let open: Vec<Dtype> = cfg
                .dtypes
                .iter()
                .copied()
                .filter(|&d| !lut.missing(d).is_empty())
                .collect();
            let record = lut
                .reference
                .get_or_insert(new_record(&cfg.space, cfg.seed)?);
            let mut references = open
                .into_iter()
                .map(|d| Reference::build(record, &cfg.space, d, cfg.session, &cfg.timing))
                .collect::<Result<Vec<Reference>>>()?;
            for r in &mut references {
                r.time_into(&mut lut, "start", cancel)?;
            }
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
            for r in &mut references {
                r.time_into(&mut lut, "end", cancel)?;
            }
            save(&lut)?;
        }
        Method::InNetwork => profile_in_network(cfg, &mut lut, cancel, &mut |lut, step| {
            save(lut)?;
            report(step);
            Ok(())
        })?,
    }
    Ok(lut)
}
