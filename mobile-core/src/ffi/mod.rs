//! The API the phone apps call: a few exported objects that delegate to the plain-Rust core (profile a
//! device, load and run an exported model, the runtime), one small public error type, and records that
//! cross the bridges. uniffi exports it as it is (Swift for iOS, Python for the tests); the JNI facade
//! ([`jni`]) calls the same functions and moves the records as JSON.

/// The JNI facade (Android, and the JVM bridge tests on the host); not built for iOS.
#[cfg(not(target_os = "ios"))]
pub mod jni;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::device::DeviceInfo;
use crate::error::Error;
use crate::lut::{Lut, Method};
use crate::measure::TimingConfig;
use crate::model::{BenchConfig, BenchReport, Class, Model};
use crate::profile::{ProfileConfig, Progress, profile};
use crate::runtime::{self, SessionConfig};
use crate::space::Space;

/// What can go wrong, as the apps see it. Internal errors are converted in one place
/// (`From<crate::Error>`), keeping their message, which names the file or value at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error, uniffi::Error, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FbnetError {
    /// A bad request, space, table, model or image.
    #[error("invalid_input: {message}")]
    InvalidInput { message: String },
    /// The ONNX Runtime library could not be loaded.
    #[error("runtime_unavailable: {message}")]
    RuntimeUnavailable { message: String },
    /// Stopped by `cancel`; what was measured is kept.
    #[error("cancelled: the profile was cancelled")]
    Cancelled,
    /// A file could not be read or written.
    #[error("io: {message}")]
    Io { message: String },
    /// Anything else (ONNX Runtime failures, an internal error).
    #[error("other: {message}")]
    Other { message: String },
}

impl FbnetError {
    /// The kind as a short word (`invalid_input`, `runtime_unavailable`, `cancelled`, `io`, `other`).
    pub fn kind(&self) -> &'static str {
        match self {
            FbnetError::InvalidInput { .. } => "invalid_input",
            FbnetError::RuntimeUnavailable { .. } => "runtime_unavailable",
            FbnetError::Cancelled => "cancelled",
            FbnetError::Io { .. } => "io",
            FbnetError::Other { .. } => "other",
        }
    }

    /// The message without the kind.
    pub fn message(&self) -> String {
        let text = self.to_string();
        text.split_once(": ")
            .map_or(text.clone(), |(_, m)| m.to_string())
    }
}

impl From<Error> for FbnetError {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::Invalid(_) | Error::BadFile { .. } => FbnetError::InvalidInput { message },
            Error::Io { .. } => FbnetError::Io { message },
            Error::RuntimeUnavailable(m) => FbnetError::RuntimeUnavailable { message: m },
            Error::Runtime(_) => FbnetError::Other { message },
            Error::Cancelled => FbnetError::Cancelled,
        }
    }
}

type Result<T> = std::result::Result<T, FbnetError>;

fn invalid(message: impl Into<String>) -> FbnetError {
    FbnetError::InvalidInput {
        message: message.into(),
    }
}

/// The loaded ONNX Runtime.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, uniffi::Record)]
pub struct RuntimeInfo {
    pub version: String,
    pub library: String,
}

/// Loads ONNX Runtime from `library_path` (Android: the app's native library folder), or from the
/// default places when `None`. Later calls return what the first successful call loaded.
#[uniffi::export]
pub fn init_runtime(library_path: Option<String>) -> Result<RuntimeInfo> {
    let info = runtime::init(library_path.as_deref().map(Path::new))?;
    Ok(RuntimeInfo {
        version: info.version,
        library: info.library.display().to_string(),
    })
}

/// mobile-core's version.
#[uniffi::export]
pub fn core_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// The device a table is measured on, as the app knows it (phone model, SoC, …). Empty fields are
/// filled from what the core can see itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, uniffi::Record)]
#[serde(default)]
pub struct DeviceMeta {
    pub model: String,
    pub soc: String,
    pub cpu: String,
    pub cores: u32,
    pub os: String,
    pub abi: String,
}

/// What to profile and where to keep the table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, uniffi::Record)]
#[serde(deny_unknown_fields)]
pub struct ProfileRequest {
    /// A built-in space (`fbnet-224`, `fbnet-small`) or a space as JSON.
    pub space: String,
    #[serde(default)]
    pub resolution: Option<u32>,
    #[serde(default)]
    pub width: Option<f64>,
    #[serde(default)]
    pub classes: Option<u32>,
    #[serde(default)]
    pub input_channels: Option<u32>,
    /// `fp32`, `int8`.
    pub dtypes: Vec<String>,
    pub threads: u32,
    /// Fewer, shorter timing runs: a rough table in a fraction of the time.
    #[serde(default)]
    pub quick: bool,
    #[serde(default)]
    pub device: Option<DeviceMeta>,
    /// The table file; saved after every step, so a killed profile resumes from it.
    pub out_path: String,
    /// Continue the partial table at `out_path` if there is one.
    #[serde(default)]
    pub resume: bool,
}

/// Progress of a running profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, uniffi::Record)]
pub struct ProfileProgress {
    pub done: u64,
    pub total: u64,
    /// The step just measured.
    pub step: String,
    pub elapsed_s: f64,
    /// Estimated seconds left.
    pub eta_s: f64,
}

/// A finished profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, uniffi::Record)]
pub struct ProfileResult {
    /// The table, as the JSON file holds it.
    pub lut_json: String,
    pub path: String,
    pub entries: u64,
    pub noisy: u64,
    pub seconds: f64,
}

/// Receives a profile's progress on the profiling thread. Implemented by the app.
#[uniffi::export(foreign)]
pub trait ProfileListener: Send + Sync {
    fn on_progress(&self, progress: ProfileProgress);
}

/// One profile of this device: built from a request (checked at once), run on the caller's thread
/// (the app calls it from a worker), cancelled from any thread.
#[derive(Debug, uniffi::Object)]
pub struct Profiler {
    config: ProfileConfig,
    out: PathBuf,
    resume: bool,
    cancel: AtomicBool,
}

/// The tables being written by a profile in this process: a second profile of the same object or into
/// the same file would interleave two runs' saves in one file.
static PROFILING: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Holds `path` in [`PROFILING`] while a profile writes it; released on drop, whatever the outcome.
struct Writing(PathBuf);

impl Writing {
    fn claim(path: &Path) -> Result<Writing> {
        let key = crate::files::absolute(path);
        let mut held = PROFILING.lock().unwrap_or_else(|e| e.into_inner());
        if held.contains(&key) {
            return Err(invalid(format!(
                "{}: a profile is already writing this table; wait for it or cancel it",
                path.display()
            )));
        }
        held.push(key.clone());
        Ok(Writing(key))
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        let mut held = PROFILING.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|p| p != &self.0);
    }
}

fn space_of(req: &ProfileRequest) -> Result<Space> {
    let base = if req.space.trim_start().starts_with('{') {
        serde_json::from_str::<Space>(&req.space)
            .map_err(|e| invalid(format!("the space is not valid JSON: {e}")))?
    } else {
        Space::load(&req.space)?
    };
    let mut space = base.with_variant(
        req.resolution.map(|v| v as usize),
        req.width,
        req.classes.map(|v| v as usize),
    );
    if let Some(c) = req.input_channels {
        space = space.with_input_channels(c as usize);
    }
    space.validate()?;
    Ok(space)
}

/// This device, with what the app knows filled over what the core sees.
fn device_of(meta: Option<&DeviceMeta>) -> DeviceInfo {
    let mut d = DeviceInfo::this_host();
    if let Some(m) = meta {
        let set = |field: &mut String, v: &str| {
            if !v.is_empty() {
                *field = v.to_string();
            }
        };
        set(&mut d.model, &m.model);
        set(&mut d.soc, &m.soc);
        set(&mut d.cpu, &m.cpu);
        set(&mut d.os, &m.os);
        set(&mut d.abi, &m.abi);
        if m.cores > 0 {
            d.cores = m.cores as usize;
        }
    }
    d
}

#[uniffi::export]
impl Profiler {
    /// Checks the request: the space, the dtypes, the threads and the output path.
    #[uniffi::constructor]
    pub fn new(request: ProfileRequest) -> Result<Arc<Profiler>> {
        let space = space_of(&request)?;
        let dtypes = request
            .dtypes
            .iter()
            .map(|d| d.parse())
            .collect::<std::result::Result<Vec<_>, Error>>()?;
        if dtypes.is_empty() {
            return Err(invalid("no dtype to profile: ask for fp32, int8 or both"));
        }
        if request.threads == 0 {
            return Err(invalid("threads must be at least 1"));
        }
        if request.out_path.is_empty() {
            return Err(invalid("out_path is empty: the table needs a file"));
        }
        let out = PathBuf::from(&request.out_path);
        let config = ProfileConfig {
            space,
            dtypes,
            session: SessionConfig::clamped(request.threads as usize),
            timing: if request.quick {
                TimingConfig::quick()
            } else {
                TimingConfig::standard()
            },
            device: device_of(request.device.as_ref()),
            method: Method::InNetwork,
            seed: 0,
            trace_dir: out
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(std::env::temp_dir, Path::to_path_buf),
        };
        Ok(Arc::new(Profiler {
            config,
            out,
            resume: request.resume,
            cancel: AtomicBool::new(false),
        }))
    }

    /// Ops the profile times (per dtype, all dtypes together).
    pub fn planned_ops(&self) -> u64 {
        (self.config.space.unique_ops().len() * self.config.dtypes.len()) as u64
    }

    /// Profiles, blocking until done, cancelled or failed. The partial table stays at `out_path`.
    pub fn run(&self, listener: Option<Arc<dyn ProfileListener>>) -> Result<ProfileResult> {
        let _writing = Writing::claim(&self.out)?;
        let started = std::time::Instant::now();
        let previous = if self.resume && self.out.exists() {
            Some(Lut::load(&self.out)?)
        } else {
            None
        };
        let mut report = |p: &Progress| {
            if let Some(l) = &listener {
                l.on_progress(ProfileProgress {
                    done: p.done as u64,
                    total: p.total as u64,
                    step: p.step.clone(),
                    elapsed_s: p.elapsed_s,
                    eta_s: p.eta_s,
                });
            }
        };
        let lut = profile(
            &self.config,
            previous,
            Some(&self.out),
            &self.cancel,
            &mut report,
        )?;
        Ok(ProfileResult {
            lut_json: lut.to_json(),
            path: self.out.display().to_string(),
            entries: lut.entries.len() as u64,
            noisy: lut.entries.iter().filter(|e| e.noisy).count() as u64,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Stops the profile after the step in flight.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// One class of a classification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, uniffi::Record)]
pub struct ClassScore {
    pub index: u32,
    pub label: String,
    pub probability: f32,
}

impl From<Class> for ClassScore {
    fn from(c: Class) -> Self {
        ClassScore {
            index: c.index as u32,
            label: c.label,
            probability: c.probability,
        }
    }
}

/// A benchmark of a model beside its predicted latency (µs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, uniffi::Record)]
pub struct BenchResult {
    pub model: String,
    pub dtype: String,
    pub threads: u32,
    pub runtime: String,
    pub warmup: u32,
    pub runs: u32,
    pub mean_us: f64,
    pub trimmed_mean_us: f64,
    pub min_us: f64,
    pub p10_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub predicted_us: Option<f64>,
    pub predicted_by: Option<String>,
    pub measured_over_predicted: Option<f64>,
    /// How much longer the device takes now than when the table was made, by the table's speed
    /// reference (timed whenever the table has one), and the prediction at that pace.
    pub speed_now: Option<f64>,
    pub predicted_now_us: Option<f64>,
}

impl From<BenchReport> for BenchResult {
    fn from(r: BenchReport) -> Self {
        BenchResult {
            model: r.model,
            dtype: r.dtype.to_string(),
            threads: r.threads as u32,
            runtime: r.runtime,
            warmup: r.warmup as u32,
            runs: r.runs as u32,
            mean_us: r.mean_us,
            trimmed_mean_us: r.trimmed_mean_us,
            min_us: r.min_us,
            p10_us: r.p10_us,
            p50_us: r.p50_us,
            p90_us: r.p90_us,
            predicted_us: r.predicted_us,
            predicted_by: r.predicted_by,
            measured_over_predicted: r.measured_over_predicted,
            speed_now: r.speed_now,
            predicted_now_us: r.predicted_now_us,
        }
    }
}

/// An exported model, loaded: its description, classification, benchmark.
#[derive(Debug, uniffi::Object)]
pub struct ModelRunner {
    model: Model,
}

#[uniffi::export]
impl ModelRunner {
    /// Loads an exported model file.
    #[uniffi::constructor]
    pub fn load(path: String, threads: u32) -> Result<Arc<ModelRunner>> {
        let model = Model::load(&path, SessionConfig::clamped(threads as usize))?;
        Ok(Arc::new(ModelRunner { model }))
    }

    /// Loads an exported model from its bytes; `name` identifies it in errors.
    #[uniffi::constructor]
    pub fn from_bytes(bytes: Vec<u8>, name: String, threads: u32) -> Result<Arc<ModelRunner>> {
        let model = Model::from_bytes(&bytes, &name, SessionConfig::clamped(threads as usize))?;
        Ok(Arc::new(ModelRunner { model }))
    }

    /// The model's description (its fbnet metadata) as JSON.
    pub fn info_json(&self) -> String {
        serde_json::to_string(self.model.meta()).unwrap_or_default()
    }

    /// The `top_k` most likely classes of a PNG or JPEG image, best first.
    pub fn classify(&self, image: Vec<u8>, top_k: u32) -> Result<Vec<ClassScore>> {
        Ok(self
            .model
            .classify_bytes(&image, top_k as usize)?
            .into_iter()
            .map(ClassScore::from)
            .collect())
    }

    /// Stops a `bench` in flight after its current run (it then fails with `Cancelled`).
    pub fn cancel(&self) {
        self.model.cancel();
    }

    /// Times `runs` single-image runs after `warmup`, beside the prediction of the model's own table or
    /// of the table at `lut_path` (this device's).
    pub fn bench(&self, warmup: u32, runs: u32, lut_path: Option<String>) -> Result<BenchResult> {
        if runs == 0 {
            return Err(invalid("runs must be at least 1"));
        }
        let table = lut_path
            .as_deref()
            .map(|p| Lut::load(Path::new(p)))
            .transpose()?;
        let name = lut_path.unwrap_or_default();
        let report = self.model.bench(
            &BenchConfig {
                warmup: warmup as usize,
                runs: runs as usize,
                // the device's pace, where the table's reference was timed at the model's dtype
                time_reference: table
                    .as_ref()
                    .is_some_and(|t| t.reference_time(self.model.meta().dtype).is_some()),
            },
            table.as_ref().map(|t| (t, name.as_str())),
        )?;
        Ok(report.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_profile_at_a_time_writes_a_table() {
        let path = std::env::temp_dir().join("fbnet-api-writing.json");
        let first = Writing::claim(&path).unwrap();
        let err = Writing::claim(&path).err().unwrap().to_string();
        assert!(err.contains("already writing"), "{err}");
        // another file is free, and the first is free again once its profile ends
        let other = Writing::claim(&path.with_extension("other.json")).unwrap();
        drop(first);
        Writing::claim(&path).unwrap();
        drop(other);
    }

    #[test]
    fn threads_are_clamped_to_the_cores() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(SessionConfig::clamped(0).threads, 1);
        assert_eq!(SessionConfig::clamped(1_000_000).threads, cores);
    }
}
