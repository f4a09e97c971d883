//! ONNX Runtime: loading the library, building sessions the way every measurement needs them, running
//! graphs and calibrating int8 ranges.
//!
//! The library is loaded dynamically from an explicit path (never ort's implicit load, which panics when
//! the library is missing): the path given by the caller, else `ORT_DYLIB_PATH`, else the cache folder that
//! `scripts/setup-ort.sh` fills from the official PyPI wheel.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::onnx::{NetworkGraph, Ranges};

/// The ONNX Runtime release the project is built and tested against (ort's `api-31`).
pub const ORT_VERSION: &str = "1.31.1";

/// What was loaded.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RuntimeInfo {
    /// ONNX Runtime version, from the library's build information.
    pub version: String,
    /// The library file.
    pub library: PathBuf,
}

struct Loaded {
    info: RuntimeInfo,
    env: ort::environment::Environment,
}

static LOADED: OnceLock<Loaded> = OnceLock::new();
static LOADING: Mutex<()> = Mutex::new(());

/// The cache folder for downloaded runtime files: `$FBNET_CACHE`, else `$XDG_CACHE_HOME/fbnet`, else
/// `~/.cache/fbnet`.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("FBNET_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("fbnet");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("fbnet")
}

/// Where the library is looked for when no path is given: `ORT_DYLIB_PATH`, else the `capi` folder of the
/// wheel unpacked under [`cache_dir`].
pub fn default_library_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return Ok(PathBuf::from(p));
    }
    let capi = cache_dir()
        .join(format!("onnxruntime-{ORT_VERSION}"))
        .join("onnxruntime")
        .join("capi");
    let found = std::fs::read_dir(&capi).ok().and_then(|entries| {
        entries.filter_map(|e| e.ok().map(|e| e.path())).find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.") && !n.contains("providers"))
        })
    });
    found.ok_or_else(|| {
        Error::RuntimeUnavailable(format!(
            "no ONNX Runtime library in {}; run scripts/setup-ort.sh or set ORT_DYLIB_PATH",
            capi.display()
        ))
    })
}

/// Loads ONNX Runtime once per process from `library` (or [`default_library_path`]). Later calls return
/// what the first successful one loaded.
pub fn init(library: Option<&Path>) -> Result<RuntimeInfo> {
    if let Some(l) = LOADED.get() {
        return Ok(l.info.clone());
    }
    let _guard = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(l) = LOADED.get() {
        return Ok(l.info.clone());
    }
    let path = match library {
        Some(p) => p.to_path_buf(),
        None => default_library_path()?,
    };
    if !path.exists() {
        return Err(Error::RuntimeUnavailable(format!(
            "{} does not exist",
            path.display()
        )));
    }
    let builder = ort::init_from(&path).map_err(|e| Error::RuntimeUnavailable(e.to_string()))?;
    let env = builder
        .with_name("fbnet")
        .with_telemetry(false)
        .build()
        .map_err(|e| Error::RuntimeUnavailable(e.to_string()))?;
    let version = library_version(&path).unwrap_or_else(|| "unknown".into());
    let info = RuntimeInfo {
        version,
        library: path,
    };
    let _ = LOADED.set(Loaded {
        info: info.clone(),
        env,
    });
    Ok(info)
}

/// The process's ONNX Runtime environment, loading the library from the default place if needed.
fn environment() -> Result<&'static ort::environment::Environment> {
    init(None)?;
    LOADED
        .get()
        .map(|l| &l.env)
        .ok_or_else(|| Error::RuntimeUnavailable("ONNX Runtime environment missing".into()))
}

/// The version string the library reports (`OrtGetApiBase()->GetVersionString()`); ort does not expose
/// it and the build-info string of the PyPI build carries no version.
fn library_version(path: &Path) -> Option<String> {
    // SAFETY: `path` is the ONNX Runtime library ort has just loaded successfully, so opening it again
    // returns the same loaded image. `OrtGetApiBase` takes no arguments and returns a pointer to a static
    // struct (checked for null); `GetVersionString` returns a static NUL-terminated string.
    unsafe {
        let lib = libloading::Library::new(path).ok()?;
        let get: libloading::Symbol<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase> =
            lib.get(b"OrtGetApiBase").ok()?;
        let base = get();
        if base.is_null() {
            return None;
        }
        let version = ((*base).GetVersionString)();
        if version.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr(version)
            .to_str()
            .ok()
            .map(str::to_string)
    }
}

/// How sessions are built for measurement: the settings a phone deployment would use.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionConfig {
    /// Intra-op threads (1 = the single big-core figure the paper's tables use).
    pub threads: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig { threads: 1 }
    }
}

impl SessionConfig {
    /// `threads` intra-op threads, at least 1 and at most this device's cores: more threads than cores
    /// only time the scheduler, and an absurd count from a caller would spawn that many threads.
    pub fn clamped(threads: usize) -> SessionConfig {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        SessionConfig {
            threads: threads.clamp(1, cores),
        }
    }

    fn builder(&self) -> Result<ort::session::builder::SessionBuilder> {
        Ok(Session::builder(environment()?)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(ort::Error::from)?
            .with_intra_threads(self.threads.max(1))
            .map_err(ort::Error::from)?
            .with_inter_threads(1)
            .map_err(ort::Error::from)?
            .with_parallel_execution(false)
            .map_err(ort::Error::from)?)
    }

    /// A session for `model` with optimisation level All and sequential execution.
    pub fn session(&self, model: &[u8]) -> Result<Session> {
        Ok(self.builder()?.commit_from_memory(model)?)
    }

    /// The same session with ONNX Runtime's profiler on, writing its trace under the path prefix
    /// `trace` (the file name is returned by `Session::end_profiling`).
    pub fn profiled_session(&self, model: &[u8], trace: &Path) -> Result<Session> {
        Ok(self
            .builder()?
            .with_profiling(trace)
            .map_err(ort::Error::from)?
            .commit_from_memory(model)?)
    }
}

/// Runs `session` on one float input and returns every output as (shape, values).
pub fn run(
    session: &mut Session,
    input: &[f32],
    shape: &[usize],
) -> Result<Vec<(Vec<usize>, Vec<f32>)>> {
    let tensor = TensorRef::from_array_view((shape.to_vec(), input))?;
    let outputs = session.run(ort::inputs![tensor])?;
    let mut out = Vec::with_capacity(outputs.len());
    for (_, value) in outputs.iter() {
        let (s, data) = value.try_extract_tensor::<f32>()?;
        out.push((s.iter().map(|&d| d as usize).collect(), data.to_vec()));
    }
    Ok(out)
}

/// How the range of an activation is estimated from calibration images.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum RangeEstimate {
    /// The smallest and largest value over all images: nothing clips, but one outlier widens the
    /// quantisation step of every value.
    MinMax,
    /// The `q` and `1 − q` quantiles of all the activation's values over all images (from a
    /// histogram): the rarest extreme values clip, the common ones get finer steps. A small tensor
    /// (the logits) keeps its extremes, since `q` of its few values is less than one value.
    Quantile { q: f64 },
}

/// Bins of the calibration histograms: fine enough that the bin width is well under a uint8 step.
const BINS: usize = 4096;

/// A histogram of one activation's values over `[lo, hi]`.
struct Histogram {
    lo: f32,
    hi: f32,
    counts: Vec<u64>,
}

impl Histogram {
    fn new(lo: f32, hi: f32) -> Histogram {
        Histogram {
            lo,
            hi,
            counts: vec![0; BINS],
        }
    }

    fn add(&mut self, values: &[f32]) {
        let width = (self.hi - self.lo).max(f32::MIN_POSITIVE);
        for &v in values {
            let b = (((v - self.lo) / width) * BINS as f32) as isize;
            self.counts[b.clamp(0, BINS as isize - 1) as usize] += 1;
        }
    }

    /// The value below which a fraction `f` of the values lie (bin edges, the outer edge for the top
    /// bin, so that `f = 1` gives `hi`).
    fn quantile(&self, f: f64) -> f32 {
        let total: u64 = self.counts.iter().sum();
        let target = (f * total as f64).ceil() as u64;
        let mut acc = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            acc += c;
            if acc >= target.max(1) {
                let edge = if f >= 0.5 { b + 1 } else { b };
                return self.lo + (self.hi - self.lo) * edge as f32 / BINS as f32;
            }
        }
        self.hi
    }
}

/// Runs the fp32 graph with every activation exposed on each of `inputs` and estimates the range of
/// each activation: the ranges an int8 graph is built with.
pub fn calibrate(
    graph: &NetworkGraph,
    inputs: &[Vec<f32>],
    config: SessionConfig,
    estimate: RangeEstimate,
) -> Result<Ranges> {
    let model = graph.calibration_model().to_bytes();
    let mut session = config.session(&model)?;
    let mut ranges = Ranges::new();
    for input in inputs {
        let outputs = run(&mut session, input, &graph.input_shape)?;
        for (name, (_, values)) in graph.activations.iter().zip(outputs) {
            let (lo, hi) = values
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                    (lo.min(v), hi.max(v))
                });
            let e = ranges.entry(name.clone()).or_insert((lo, hi));
            *e = (e.0.min(lo), e.1.max(hi));
        }
    }
    let RangeEstimate::Quantile { q } = estimate else {
        return Ok(ranges);
    };
    // second pass: histograms over the observed ranges, then the quantiles
    let mut hists: Vec<Histogram> = graph
        .activations
        .iter()
        .map(|name| {
            let (lo, hi) = ranges.get(name).copied().unwrap_or((0.0, 0.0));
            Histogram::new(lo, hi)
        })
        .collect();
    for input in inputs {
        let outputs = run(&mut session, input, &graph.input_shape)?;
        for (h, (_, values)) in hists.iter_mut().zip(outputs) {
            h.add(&values);
        }
    }
    for (name, h) in graph.activations.iter().zip(&hists) {
        ranges.insert(name.clone(), (h.quantile(q), h.quantile(1.0 - q)));
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_clip_rare_extremes_only() {
        let mut h = Histogram::new(0.0, 1000.0);
        let v: Vec<f32> = (0..=1000).map(|i| i as f32).collect();
        h.add(&v);
        assert_eq!((h.quantile(0.0), h.quantile(1.0)), (0.0, 1000.0));
        let (lo, hi) = (h.quantile(0.01), h.quantile(0.99));
        assert!(
            (lo - 10.0).abs() < 0.5 && (hi - 990.0).abs() < 0.5,
            "{lo} {hi}"
        );
        // ten values: a 1e-4 quantile is less than one value, so the extremes stay
        let mut small = Histogram::new(-3.0, 7.0);
        small.add(&[-3.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 6.5, 7.0]);
        assert_eq!(
            (small.quantile(1e-4), small.quantile(1.0 - 1e-4)),
            (-3.0, 7.0)
        );
    }

    #[test]
    fn the_loaded_library_reports_its_version() {
        let info = init(None).unwrap();
        assert_eq!(info.version, ORT_VERSION);
    }
}
