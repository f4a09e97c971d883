//! Export of a trained run for deployment: the shared core's ONNX graph of the architecture (the same
//! code whose blocks the profiler timed) with the trained weights, batch norm folded into the
//! convolutions, fp32 and int8 QDQ (post-training quantisation calibrated on training images), and the
//! model's description in its metadata. Both graphs are run in ONNX Runtime on the test images and
//! checked against the candle model: the report says how close they are.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use candle_core::{Device, Tensor};
use mobile_core::Arch;
use mobile_core::lut::Lut;
use mobile_core::model_meta::{META_FORMAT, ModelMeta, Prediction};
use mobile_core::onnx::weights::{BatchNorm, WeightSource, fold_bn};
use mobile_core::onnx::{Dtype, NetworkGraph, arch_graph};
use mobile_core::rng::SplitMix;
use mobile_core::runtime::{self, RangeEstimate, SessionConfig};
use serde::{Deserialize, Serialize};

use crate::data;
use crate::layers::BN_EPS;
use crate::params::Params;
use crate::train::{TrainConfig, TrainRun, accuracy, prepare_data};
use mobile_core::files::write_atomic;

/// Trained weights by parameter name, handed to the ONNX builder with batch norm folded in.
pub struct TrainedWeights {
    values: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl TrainedWeights {
    pub fn new(params: &Params) -> Result<TrainedWeights> {
        let values = params
            .tensors()
            .into_iter()
            .map(|(k, t)| {
                let dims = t.dims().to_vec();
                Ok((k, (dims, t.flatten_all()?.to_vec1::<f32>()?)))
            })
            .collect::<Result<_>>()?;
        Ok(TrainedWeights { values })
    }

    fn get(&self, name: &str, len: usize) -> mobile_core::Result<&[f32]> {
        let (dims, v) = self.values.get(name).ok_or_else(|| {
            mobile_core::Error::invalid(format!(
                "no trained parameter `{name}`: the weights are of another architecture"
            ))
        })?;
        if v.len() != len {
            return Err(mobile_core::Error::invalid(format!(
                "trained parameter `{name}` has shape {dims:?}, the graph needs {len} values"
            )));
        }
        Ok(v)
    }
}

impl WeightSource for TrainedWeights {
    fn conv(
        &mut self,
        name: &str,
        dims: [usize; 4],
        _relu: bool,
    ) -> mobile_core::Result<(Vec<f32>, Vec<f32>)> {
        let c = dims[0];
        let w = self.get(&format!("{name}.weight"), dims.iter().product())?;
        let bn = BatchNorm {
            gamma: self.get(&format!("{name}.bn.gamma"), c)?,
            beta: self.get(&format!("{name}.bn.beta"), c)?,
            mean: self.get(&format!("{name}.bn.mean"), c)?,
            var: self.get(&format!("{name}.bn.var"), c)?,
            eps: BN_EPS as f32,
        };
        Ok(fold_bn(w, None, &bn))
    }

    fn fc(&mut self, name: &str, dims: [usize; 2]) -> mobile_core::Result<(Vec<f32>, Vec<f32>)> {
        Ok((
            self.get(&format!("{name}.weight"), dims[0] * dims[1])?
                .to_vec(),
            self.get(&format!("{name}.bias"), dims[0])?.to_vec(),
        ))
    }
}

/// What to export.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExportConfig {
    /// Also write the int8 QDQ model.
    pub int8: bool,
    /// Training images that calibrate the int8 activation ranges.
    pub calib: usize,
    pub estimate: RangeEstimate,
    /// Export the last epoch's weights instead of the best epoch's.
    pub last: bool,
    /// Check on at most this many test images (all when `None`).
    pub check_images: Option<usize>,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            int8: true,
            calib: 256,
            estimate: RangeEstimate::Quantile { q: 1e-4 },
            last: false,
            check_images: None,
        }
    }
}

/// One exported file and how it does on the test images.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Exported {
    pub dtype: Dtype,
    pub file: PathBuf,
    pub bytes: u64,
    pub top1: f64,
    pub top5: f64,
    /// Images whose top-1 class equals the candle model's.
    pub same_top1: f64,
    /// Largest |logit difference| against the candle model, and the largest |logit| of the candle
    /// model (the scale to read it against).
    pub max_abs_diff: f64,
    pub logit_scale: f64,
}

/// The export report (`<model>.export.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExportReport {
    pub run: PathBuf,
    pub arch: String,
    /// The best epoch of the run (the one exported unless `last`).
    pub best_epoch: Option<usize>,
    pub images: usize,
    /// Top-1 of the candle model in evaluation mode on the same images.
    pub candle_top1: f64,
    pub fp32: Exported,
    pub int8: Option<Exported>,
    /// int8 top-1 minus fp32 top-1, in percentage points (negative: int8 lost accuracy).
    pub int8_minus_fp32_points: Option<f64>,
    pub calibration: Option<(usize, RangeEstimate)>,
}

/// The int8 file beside the fp32 one: `model.onnx` → `model.int8.onnx`.
pub fn int8_path(fp32: &Path) -> PathBuf {
    let stem = fp32
        .file_stem()
        .map_or_else(|| "model".into(), |s| s.to_string_lossy().to_string());
    fp32.with_file_name(format!("{stem}.int8.onnx"))
}

/// The table's prediction for `arch`, if the run names a table of its space.
fn prediction(lut: Option<&Path>, arch: &Arch) -> Result<Option<Prediction>> {
    let Some(path) = lut else { return Ok(None) };
    let lut = Lut::load(path)?;
    ensure!(
        lut.space_hash == arch.space.hash(),
        "{}: the table is of space {}, the architecture of space {}",
        path.display(),
        lut.space_hash,
        arch.space.hash()
    );
    let latency_us = lut
        .dtypes
        .iter()
        .map(|&d| Ok((d, lut.predict(arch, d)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(Prediction {
        lut: path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().to_string()),
        device: format!("{} ({})", lut.device.model, lut.device.cpu),
        threads: lut.runtime.session.threads,
        latency_us,
    }))
}

/// Top-1/top-5 of a graph in ONNX Runtime on `images` and its agreement with `reference` logits.
fn check(
    graph: &NetworkGraph,
    images: &[Vec<f32>],
    labels: &[u32],
    reference: &[f32],
) -> Result<(f64, f64, f64, f64, f64)> {
    let mut session = SessionConfig { threads: 1 }.session(&graph.model.to_bytes())?;
    let mut logits = Vec::with_capacity(reference.len());
    for x in images {
        let out = runtime::run(&mut session, x, &graph.input_shape)?;
        logits.extend_from_slice(&out.first().context("the graph has no output")?.1);
    }
    ensure!(
        logits.len() == reference.len(),
        "the ONNX model gives {} logits, the candle model {}",
        logits.len(),
        reference.len()
    );
    let classes = reference.len() / labels.len().max(1);
    let argmax = |row: &[f32]| {
        (0..row.len())
            .max_by(|&a, &b| row[a].total_cmp(&row[b]))
            .unwrap_or(0)
    };
    let same = logits
        .chunks_exact(classes)
        .zip(reference.chunks_exact(classes))
        .filter(|(a, b)| argmax(a) == argmax(b))
        .count();
    let max_diff = logits
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs() as f64)
        .fold(0.0, f64::max);
    let scale = reference.iter().map(|v| v.abs() as f64).fold(0.0, f64::max);
    let (top1, top5, _) = accuracy(&logits, labels);
    Ok((
        top1,
        top5,
        same as f64 / labels.len().max(1) as f64,
        max_diff,
        scale,
    ))
}

fn write_model(graph: &NetworkGraph, meta: &ModelMeta, path: &Path) -> Result<u64> {
    let mut model = graph.model.clone();
    model.metadata_props = meta
        .to_props()
        .into_iter()
        .map(|(key, value)| mobile_core::onnx::proto::StringStringEntryProto { key, value })
        .collect();
    let bytes = model.to_bytes();
    write_atomic(path, &bytes)?;
    Ok(bytes.len() as u64)
}

/// Exports the run in `run_dir` to `out` (fp32) and, with `cfg.int8`, to [`int8_path`]`(out)`.
/// `progress(what, done, total)` reports the long phases.
pub fn export(
    run_dir: &Path,
    out: &Path,
    cfg: &ExportConfig,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<ExportReport> {
    let run = TrainRun(crate::runs::RunDir(run_dir.to_path_buf()));
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    let train_cfg: TrainConfig = run.0.load_config("training")?;
    let arch = run.arch()?;
    let info = run.data_info()?;
    let (net, best) = run.load_network(cfg.last, &Device::Cpu)?;
    let pred = prediction(train_cfg.lut.as_deref(), &arch)?;

    // the test images, preprocessed once for candle and ONNX Runtime alike
    let mut check_cfg = train_cfg.clone();
    check_cfg.max_val_images = cfg.check_images.or(train_cfg.max_val_images);
    // the training's normalisation, which the metadata also records
    let data = prepare_data(
        &check_cfg,
        &arch,
        Some((info.mean.clone(), info.std.clone())),
    )?;
    let (mut images, mut labels, mut reference) = (Vec::new(), Vec::new(), Vec::new());
    let loader = data::batches(data.val_source.clone(), &data.val, &data.eval_loader, 0)?;
    let steps = loader.len();
    for (step, batch) in loader.enumerate() {
        let b = batch?;
        let [n, c, h, w] = b.shape;
        let per = c * h * w;
        let x = Tensor::from_vec(b.images.clone(), (n, c, h, w), &Device::Cpu)?;
        reference.extend(
            net.forward(&x, None, false)?
                .detach()
                .flatten_all()?
                .to_vec1::<f32>()?,
        );
        images.extend(b.images.chunks_exact(per).map(<[f32]>::to_vec));
        labels.extend(b.labels);
        progress("candle model on the test images", step + 1, steps);
    }
    let (candle_top1, _, _) = accuracy(&reference, &labels);

    let mut weights = TrainedWeights::new(&net.params)?;
    let meta = |dtype: Dtype, top1: f64| ModelMeta {
        format: META_FORMAT,
        name: arch.name.clone(),
        arch: arch.text(),
        space: arch.space.name.clone(),
        space_hash: arch.space.hash(),
        dtype,
        labels: info.labels.clone(),
        input_shape: vec![
            1,
            arch.space.input_channels,
            arch.space.resolution,
            arch.space.resolution,
        ],
        mean: info.mean.clone(),
        std: info.std.clone(),
        dataset: info.dataset.clone(),
        accuracy: Some(top1),
        prediction: pred.clone(),
    };
    let fp32 = arch_graph(&arch, Dtype::Fp32, &mut weights, None, 1, &[])?;
    progress("fp32 model in ONNX Runtime", 0, 1);
    let (top1, top5, same, diff, scale) = check(&fp32, &images, &labels, &reference)?;
    let bytes = write_model(&fp32, &meta(Dtype::Fp32, top1), out)?;
    let fp32_report = Exported {
        dtype: Dtype::Fp32,
        file: out.to_path_buf(),
        bytes,
        top1,
        top5,
        same_top1: same,
        max_abs_diff: diff,
        logit_scale: scale,
    };

    let (mut int8, mut calibration) = (None, None);
    if cfg.int8 {
        ensure!(cfg.calib > 0, "--calib must be at least 1 image");
        progress("int8 calibration", 0, 1);
        let mut pool: Vec<usize> = data.train.clone();
        SplitMix::new(train_cfg.seed ^ 0xca1b).shuffle(&mut pool);
        pool.truncate(cfg.calib);
        let mut eval = data.eval_loader.clone();
        eval.shuffle = false;
        let mut inputs = Vec::new();
        for batch in data::batches(data.train_source.clone(), &pool, &eval, 0)? {
            let b = batch?;
            let per = b.images.len() / b.labels.len().max(1);
            inputs.extend(b.images.chunks_exact(per).map(<[f32]>::to_vec));
        }
        let ranges =
            runtime::calibrate(&fp32, &inputs, SessionConfig { threads: 1 }, cfg.estimate)?;
        let q = arch_graph(&arch, Dtype::Int8, &mut weights, Some(&ranges), 1, &[])?;
        progress("int8 model in ONNX Runtime", 0, 1);
        let (t1, t5, same, diff, scale) = check(&q, &images, &labels, &reference)?;
        let path = int8_path(out);
        let bytes = write_model(&q, &meta(Dtype::Int8, t1), &path)?;
        int8 = Some(Exported {
            dtype: Dtype::Int8,
            file: path,
            bytes,
            top1: t1,
            top5: t5,
            same_top1: same,
            max_abs_diff: diff,
            logit_scale: scale,
        });
        calibration = Some((inputs.len(), cfg.estimate));
    }
    let report = ExportReport {
        run: run_dir.to_path_buf(),
        arch: arch.text(),
        best_epoch: best.map(|b| b.epoch),
        images: labels.len(),
        candle_top1,
        int8_minus_fp32_points: int8
            .as_ref()
            .map(|q: &Exported| 100.0 * (q.top1 - fp32_report.top1)),
        fp32: fp32_report,
        int8,
        calibration,
    };
    write_atomic(
        &out.with_extension("export.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    Ok(report)
}
