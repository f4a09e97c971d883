//! An exported model loaded for use: the ONNX session and the description the file carries
//! ([`ModelMeta`]), so that an app needs nothing but the file to classify images with it and to check
//! its latency against what the search's table predicted.
//!
//! The session sits behind a mutex so every method takes `&self`: one `Model` can be shared between
//! threads (and, later, handed across the FFI as one object) without the caller arranging exclusivity.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use ort::session::Session;
use ort::value::Tensor;
use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::device::DeviceInfo;
use crate::error::{Error, Result};
use crate::lut::Lut;
use crate::measure::{Stats, random_inputs};
use crate::model_meta::{ModelMeta, decode_model};
use crate::onnx::Dtype;
use crate::onnx::proto::ModelProto;
use crate::preprocess::{Image, decode, model_input};
use crate::reference::Pace;
use crate::runtime::{self, SessionConfig};

/// Seed of the benchmark's input: a fixed input makes two benchmarks of one model comparable.
pub const BENCH_SEED: u64 = 0x6265_6e63;

/// A loaded exported model.
pub struct Model {
    meta: ModelMeta,
    origin: PathBuf,
    config: SessionConfig,
    session: Mutex<Session>,
    /// Set by [`Model::cancel`]: a benchmark in flight stops after its current run.
    cancel: AtomicBool,
}

/// Most timed runs and warm-up runs one benchmark may ask for: enough for any measurement, and a
/// bound on how long one call can hold the model.
pub const MAX_BENCH_RUNS: usize = 100_000;

/// One class of a classification, with its softmax probability.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Class {
    /// Output index.
    pub index: usize,
    pub label: String,
    pub probability: f32,
}

/// How a benchmark runs: `warmup` untimed runs, then `runs` timed single-image runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchConfig {
    pub warmup: usize,
    pub runs: usize,
    /// Also time the table's speed reference, just before and just after the runs, and report the
    /// device's pace now against the table's ([`BenchReport::speed_now`]).
    #[serde(default)]
    pub time_reference: bool,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            warmup: 10,
            runs: 100,
            time_reference: false,
        }
    }
}

/// What a benchmark measured, in µs per single-image run, and how it compares with a prediction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// The architecture's name from the metadata.
    pub model: String,
    pub dtype: Dtype,
    pub threads: usize,
    /// The ONNX Runtime version that ran it.
    pub runtime: String,
    pub warmup: usize,
    pub runs: usize,
    pub mean_us: f64,
    /// Mean of the runs between the 10th and 90th percentiles: the statistic latency tables are made
    /// of ([`Stats::trimmed_mean`]), hence the one compared with a prediction.
    pub trimmed_mean_us: f64,
    pub min_us: f64,
    pub p10_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    /// The predicted latency for this dtype, from the metadata's table or a table the caller passed.
    pub predicted_us: Option<f64>,
    /// Which table predicted it and for which device (`lut.json (Pixel 8)`).
    pub predicted_by: Option<String>,
    /// `trimmed_mean_us / predicted_us`: above 1 the device runs slower than the table says.
    pub measured_over_predicted: Option<f64>,
    /// With [`BenchConfig::time_reference`]: the speed reference's time around the runs over its time
    /// in the table (1.1: the device takes 10% longer now than when the table was made).
    #[serde(default)]
    pub speed_now: Option<f64>,
    /// `predicted_us · speed_now`: the prediction at the device's pace now.
    #[serde(default)]
    pub predicted_now_us: Option<f64>,
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("origin", &self.origin)
            .field("meta", &self.meta)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Loads the exported model at `path`.
    pub fn load(path: impl AsRef<Path>, config: SessionConfig) -> Result<Model> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Model::from_bytes(&bytes, path, config)
    }

    /// Loads an exported model from its bytes (an app's bundled asset); `origin` names it in errors.
    pub fn from_bytes(
        bytes: &[u8],
        origin: impl AsRef<Path>,
        config: SessionConfig,
    ) -> Result<Model> {
        let origin = origin.as_ref();
        let proto = decode_model(bytes, origin)?;
        let meta = ModelMeta::from_model(&proto, origin)?;
        check_input(&proto, &meta, origin)?;
        let session = config.session(bytes).map_err(|e| match e {
            Error::Runtime(m) => Error::bad_file(origin, format!("ONNX Runtime refuses it: {m}")),
            other => other,
        })?;
        Ok(Model {
            meta,
            origin: origin.to_path_buf(),
            config,
            session: Mutex::new(session),
            cancel: AtomicBool::new(false),
        })
    }

    /// Stops a benchmark in flight (from another thread) after its current run; it returns
    /// [`Error::Cancelled`].
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// The description the file carries.
    pub fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    /// The file (or name) the model was loaded from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// How its session was built.
    pub fn config(&self) -> SessionConfig {
        self.config
    }

    /// Floats of one input: `channels × height × width`.
    pub fn input_len(&self) -> usize {
        self.meta.input_shape.iter().product()
    }

    /// The raw logits, one per label, of an already preprocessed input (see
    /// [`crate::preprocess::model_input`]).
    pub fn logits(&self, input: &[f32]) -> Result<Vec<f32>> {
        if input.len() != self.input_len() {
            return Err(Error::invalid(format!(
                "{}: the model takes {} floats (shape {:?}), not {}",
                self.origin.display(),
                self.input_len(),
                self.meta.input_shape,
                input.len()
            )));
        }
        let mut outputs = runtime::run(&mut self.session(), input, &self.meta.input_shape)
            .map_err(|e| self.runtime_error(e))?;
        let classes = self.meta.labels.len();
        match outputs.first_mut() {
            Some((_, logits)) if logits.len() == classes => Ok(std::mem::take(logits)),
            Some((shape, _)) => Err(Error::bad_file(
                &self.origin,
                format!(
                    "the graph outputs shape {shape:?}, but the metadata names {classes} labels"
                ),
            )),
            None => Err(Error::bad_file(&self.origin, "the graph has no output")),
        }
    }

    /// The `top_k` most probable classes of `img` (fewer if the model has fewer), most probable first.
    pub fn classify(&self, img: &Image, top_k: usize) -> Result<Vec<Class>> {
        let input = model_input(img, &self.meta)
            .map_err(|e| Error::invalid(format!("{}: {e}", self.origin.display())))?;
        let logits = self.logits(&input)?;
        Ok(top_classes(&logits, &self.meta.labels, top_k))
    }

    /// [`Model::classify`] on an encoded JPEG or PNG, decoded to the model's channels.
    pub fn classify_bytes(&self, bytes: &[u8], top_k: usize) -> Result<Vec<Class>> {
        let img = decode(bytes, self.channels(), Path::new("image"))?;
        self.classify(&img, top_k)
    }

    /// [`Model::classify`] on the image file at `path`.
    pub fn classify_file(&self, path: impl AsRef<Path>, top_k: usize) -> Result<Vec<Class>> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let img = decode(&bytes, self.channels(), path)?;
        self.classify(&img, top_k)
    }

    /// The predicted latency (µs) of this model at its dtype and what predicted it: the given table
    /// (with the name it is known by, usually its file name), else the prediction the metadata carries,
    /// else none. A table of another space is an error: its entries are for other ops.
    pub fn predicted(&self, table: Option<(&Lut, &str)>) -> Result<Option<(f64, String)>> {
        let Some((lut, name)) = table else {
            return Ok(self.meta.prediction.as_ref().and_then(|p| {
                let us = p.latency_us.iter().find(|(d, _)| *d == self.meta.dtype)?.1;
                Some((us, format!("{} ({})", p.lut, p.device)))
            }));
        };
        let in_table = |e: Error| Error::bad_file(name, e.to_string());
        if lut.space_hash != self.meta.space_hash {
            return Err(Error::bad_file(
                name,
                format!(
                    "the latency table is for space `{}` (hash {}), but {} is of space `{}` (hash {})",
                    lut.space.name,
                    lut.space_hash,
                    self.origin.display(),
                    self.meta.space,
                    self.meta.space_hash
                ),
            ));
        }
        let arch = Arch::parse(&self.meta.name, &lut.space, &self.meta.arch).map_err(in_table)?;
        let us = lut.predict(&arch, self.meta.dtype).map_err(in_table)?;
        Ok(Some((us, format!("{name} ({})", device_name(&lut.device)))))
    }

    /// Times `config.runs` single-image runs after `config.warmup` untimed ones, on a fixed seeded input,
    /// and compares with the prediction of [`Model::predicted`] for `table`.
    pub fn bench(&self, config: &BenchConfig, table: Option<(&Lut, &str)>) -> Result<BenchReport> {
        if config.runs == 0 {
            return Err(Error::invalid("a benchmark needs at least one timed run"));
        }
        if config.runs > MAX_BENCH_RUNS || config.warmup > MAX_BENCH_RUNS {
            return Err(Error::invalid(format!(
                "a benchmark takes at most {MAX_BENCH_RUNS} timed and {MAX_BENCH_RUNS} warm-up runs, not {} and {}",
                config.runs, config.warmup
            )));
        }
        self.cancel.store(false, Ordering::Relaxed);
        let prediction = self.predicted(table)?;
        let runtime = runtime::init(None)?.version;
        let input = random_inputs(&self.meta.input_shape, 1, BENCH_SEED).remove(0);
        let dtype = self.meta.dtype;
        let mut pace = match (config.time_reference, table) {
            (false, _) => None,
            (true, None) => {
                return Err(Error::invalid(
                    "the device's pace is measured with a latency table's speed reference: pass the table",
                ));
            }
            (true, Some((lut, name))) => Some(Pace::of(lut, dtype, self.config)?.ok_or_else(|| {
                Error::bad_file(
                    name,
                    match lut.reference {
                        None => "the table has no speed reference (schema 1): profile again to measure the device's pace".to_string(),
                        Some(_) => format!("the speed reference was not timed at {dtype}"),
                    },
                )
            })?),
        };
        let mut pace_now = || pace.as_mut().map(|p| p.now(&self.cancel)).transpose();
        let before = pace_now()?;
        let samples = self
            .time_runs(&input, config)
            .map_err(|e| self.runtime_error(e))?;
        let after = pace_now()?;
        let speed_now = before.zip(after).map(|(a, b)| (a + b) / 2.0);
        let stats =
            Stats::from_samples(&samples).ok_or_else(|| Error::Runtime("no timed runs".into()))?;
        let min_us = samples.iter().copied().fold(f64::INFINITY, f64::min);
        let (predicted_us, predicted_by) = prediction.unzip();
        Ok(BenchReport {
            model: self.meta.name.clone(),
            dtype: self.meta.dtype,
            threads: self.config.threads,
            runtime,
            warmup: config.warmup,
            runs: config.runs,
            mean_us: stats.mean,
            trimmed_mean_us: stats.trimmed_mean,
            min_us,
            p10_us: stats.p10,
            p50_us: stats.p50,
            p90_us: stats.p90,
            predicted_us,
            predicted_by,
            measured_over_predicted: predicted_us.map(|p| stats.trimmed_mean / p),
            speed_now,
            predicted_now_us: predicted_us.zip(speed_now).map(|(p, s)| p * s),
        })
    }

    /// The timed samples (µs). The input tensor is made once, as the table's measurements do, so only
    /// the run is timed.
    fn time_runs(&self, input: &[f32], config: &BenchConfig) -> Result<Vec<f64>> {
        let tensor = Tensor::from_array((self.meta.input_shape.clone(), input.to_vec()))?;
        let mut session = self.session();
        let cancelled = || self.cancel.load(Ordering::Relaxed);
        for _ in 0..config.warmup {
            if cancelled() {
                return Err(Error::Cancelled);
            }
            session.run(ort::inputs![&tensor])?;
        }
        let mut samples = Vec::with_capacity(config.runs);
        for _ in 0..config.runs {
            if cancelled() {
                return Err(Error::Cancelled);
            }
            let start = Instant::now();
            let out = session.run(ort::inputs![&tensor])?;
            let us = start.elapsed().as_secs_f64() * 1e6;
            drop(out);
            samples.push(us);
        }
        Ok(samples)
    }

    fn channels(&self) -> usize {
        self.meta.input_shape[1]
    }

    /// The session; a panic in another thread while it was held leaves it usable (ONNX Runtime keeps no
    /// state between runs), so poisoning is ignored rather than turned into a panic here.
    fn session(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Names the model file in a runtime failure.
    fn runtime_error(&self, e: Error) -> Error {
        match e {
            Error::Runtime(m) => Error::Runtime(format!("{}: {m}", self.origin.display())),
            other => other,
        }
    }
}

/// Fails unless the graph's input `input` has the shape the metadata promises, so a model whose
/// description was copied from another file is caught at load rather than at its first run.
fn check_input(proto: &ModelProto, meta: &ModelMeta, origin: &Path) -> Result<()> {
    let graph = proto.graph.as_ref();
    let input = graph.and_then(|g| g.input.iter().find(|i| i.name == "input"));
    let Some(input) = input else {
        return Err(Error::bad_file(
            origin,
            "the graph has no input named `input`",
        ));
    };
    let dims: Option<Vec<Option<i64>>> = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.shape.as_ref())
        .map(|s| s.dim.iter().map(|d| d.dim_value).collect());
    // Every dimension must be fixed and equal to the metadata's: a symbolic one (`batch`, `height`)
    // would let the graph accept shapes its description does not promise.
    let matches = dims.as_ref().is_some_and(|dims| {
        dims.len() == meta.input_shape.len()
            && dims
                .iter()
                .zip(&meta.input_shape)
                .all(|(d, &m)| *d == Some(m as i64))
    });
    if !matches {
        return Err(Error::bad_file(
            origin,
            format!(
                "the graph's input has shape {:?} (None: a symbolic dimension), but the metadata promises the fixed shape {:?}",
                dims.unwrap_or_default(),
                meta.input_shape
            ),
        ));
    }
    Ok(())
}

/// Softmax of `logits` (computed in f64 after subtracting the largest, so it neither overflows nor
/// loses the small classes), the `top_k` largest first; ties keep the lower index first.
fn top_classes(logits: &[f32], labels: &[String], top_k: usize) -> Vec<Class> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let total: f64 = exp.iter().sum();
    let mut classes: Vec<Class> = exp
        .iter()
        .zip(labels)
        .enumerate()
        .map(|(index, (e, label))| Class {
            index,
            label: label.clone(),
            probability: (e / total) as f32,
        })
        .collect();
    classes.sort_by(|a, b| {
        b.probability
            .total_cmp(&a.probability)
            .then(a.index.cmp(&b.index))
    });
    classes.truncate(top_k);
    classes
}

/// How a table's device is named in a report: its model, and its CPU where known.
fn device_name(device: &DeviceInfo) -> String {
    let parts: Vec<&str> = [device.model.as_str(), device.cpu.as_str()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    if parts.is_empty() {
        "unknown device".into()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One model serves every thread of an app (and, later, an FFI object).
    #[test]
    fn a_model_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Model>();
    }

    #[test]
    fn softmax_is_stable_sorted_and_truncated() {
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        // huge logits would overflow a naive exp
        let top = top_classes(&[1000.0, 1002.0, 1000.0], &labels, 5);
        assert_eq!(
            top.iter().map(|c| c.index).collect::<Vec<_>>(),
            vec![1, 0, 2]
        );
        let sum: f32 = top.iter().map(|c| c.probability).sum();
        assert!((sum - 1.0).abs() < 1e-6);
        // e² / (e² + 2)
        let expected = (2f64.exp() / (2f64.exp() + 2.0)) as f32;
        assert!((top[0].probability - expected).abs() < 1e-6);
        assert_eq!(top_classes(&[0.0, 1.0, 2.0], &labels, 1).len(), 1);
    }
}
