//! Training an architecture from scratch (paper appendix A, FBNet-{A,B,C}): the stand-alone network of
//! the super net's own block code, SGD with momentum 0.9 and weight decay 4e-5, step decay ×0.1 at
//! quarter points (or cosine), dropout 0.2 before the classifier, optional label smoothing. Each epoch
//! ends with top-1/top-5 on the test split; the best epoch's weights are kept beside the last checkpoint,
//! and a run folder resumes like a search.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use candle_core::{D, Device, Tensor};
use mobile_core::Arch;
use mobile_core::rng::SplitMix;
use serde::{Deserialize, Serialize};

use crate::data::{self, Augment, LoaderConfig, Source};
use crate::network::Network;
use crate::optim::{Schedule, Sgd};
use crate::runs::{
    RunDir, Tally, batch_tensors, checkpoint_to_read, correct, finite, read_meta,
    stop_if_cancelled, truncate_metrics, write_checkpoint,
};
use mobile_core::files::write_atomic;

/// Everything a training run depends on; written to `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Dataset spec (`fashion-mnist`, `cifar10:DIR`, an image folder); its test split validates.
    pub data: String,
    /// The architecture as given (a built-in name or a file); the run keeps its own copy, `arch.json`.
    pub arch: String,
    /// The latency table the architecture was chosen with (its prediction goes into the exported model).
    pub lut: Option<PathBuf>,
    pub classes: Option<usize>,
    pub class_seed: u64,
    /// At most this many training / test images (stratified samples), for quick runs.
    pub max_images: Option<usize>,
    pub max_val_images: Option<usize>,
    /// Fraction of the training images held out to choose the best epoch, so that no choice is made on
    /// the test images (whose accuracy is then reported for the chosen epoch). 0: nothing held out, the
    /// last epoch is kept. Run folders of earlier releases (no field; they chose on the test images)
    /// resume with 0.
    #[serde(default)]
    pub val_split: f64,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub schedule: Schedule,
    /// Dropout on the pooled features before the classifier (paper: 0.2).
    pub dropout: f64,
    /// Label smoothing ε of the cross-entropy (0 = plain cross-entropy).
    pub label_smoothing: f64,
    pub augment: bool,
    pub seed: u64,
    pub workers: usize,
}

impl Default for TrainConfig {
    /// The paper's protocol on a short schedule (lr 0.1 at batch 256 scaled to batch 128).
    fn default() -> Self {
        TrainConfig {
            data: "fashion-mnist".into(),
            arch: String::new(),
            lut: None,
            classes: None,
            class_seed: 0,
            max_images: None,
            max_val_images: None,
            val_split: 0.1,
            epochs: 12,
            batch_size: 128,
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 4e-5,
            schedule: Schedule::paper(12),
            dropout: 0.2,
            label_smoothing: 0.0,
            augment: true,
            seed: 0,
            workers: 1,
        }
    }
}

impl TrainConfig {
    fn check(&self) -> Result<()> {
        ensure!(self.epochs > 0, "--epochs must be at least 1");
        ensure!(self.batch_size > 1, "--batch-size must be at least 2");
        ensure!(
            (0.0..1.0).contains(&self.dropout),
            "--dropout {} must be in [0, 1)",
            self.dropout
        );
        ensure!(
            (0.0..1.0).contains(&self.label_smoothing),
            "--label-smoothing {} must be in [0, 1)",
            self.label_smoothing
        );
        ensure!(
            (0.0..0.5).contains(&self.val_split),
            "--val-split {} must be in [0, 0.5): the fraction of training images held out to choose the epoch",
            self.val_split
        );
        ensure!(
            self.lr.is_finite() && self.lr > 0.0,
            "--lr {} must be a positive number",
            self.lr
        );
        Ok(())
    }
}

/// What the model's users need to know about its data (`data.json`): written when the run starts,
/// read by export.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    pub dataset: String,
    /// Class names by label.
    pub labels: Vec<String>,
    /// Input normalisation (pixel/255 units), estimated on the training images.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub train_images: usize,
    /// Test images (the dataset's test split) the accuracies are reported on.
    pub val_images: usize,
    /// Training images held out to choose the epoch (`val_split`), not trained on.
    #[serde(default)]
    pub held_out_images: usize,
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainMetrics {
    pub epoch: usize,
    pub lr: f64,
    pub train_ce: f64,
    pub train_acc: f64,
    /// On the test images (the dataset's test split; the field names predate the held-out split).
    pub val_ce: f64,
    pub val_top1: f64,
    pub val_top5: f64,
    /// On the held-out training images that choose the best epoch; absent without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out_top1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out_ce: Option<f64>,
    pub seconds: f64,
    pub images_per_second: f64,
    /// Seconds the training steps waited for their batches (a step idle for data).
    #[serde(default)]
    pub data_wait_s: f64,
    /// Images per second the loader's threads could build (see `data::LoaderStats`).
    #[serde(default)]
    pub loader_images_per_second: f64,
}

/// The best epoch so far (`best/meta.json`, and in the checkpoint).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Best {
    pub epoch: usize,
    /// Test accuracy of the chosen epoch.
    pub top1: f64,
    pub top5: f64,
    /// What chose it: the held-out accuracy (absent when nothing was held out: the last epoch is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out_top1: Option<f64>,
    /// The architecture the weights belong to (text and space hash).
    pub arch: String,
    pub space_hash: String,
}

/// The end of a run (`result.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainResult {
    pub arch: String,
    pub best: Best,
    pub last_top1: f64,
    pub last_top5: f64,
    pub params: u64,
    pub macs: u64,
}

/// Where training is, for a progress display.
#[derive(Clone, Debug)]
pub struct TrainProgress {
    pub epoch: usize,
    pub epochs: usize,
    /// `train` or `val`.
    pub phase: &'static str,
    pub step: usize,
    pub steps: usize,
    pub ce: f64,
    pub acc: f64,
    /// With `done`: how the data side kept up with the training steps.
    pub data: Option<data::LoaderStats>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct CheckpointMeta {
    epochs_done: usize,
    steps: u64,
    dropout_rng: u64,
    best: Option<Best>,
    arch: String,
    space_hash: String,
}

/// A training run's folder: the common files and the architecture, data description and best weights.
pub struct TrainRun(pub RunDir);

impl TrainRun {
    /// The run's folder.
    pub fn path(&self) -> &Path {
        &self.0.0
    }
    pub fn arch_file(&self) -> PathBuf {
        self.path().join("arch.json")
    }
    pub fn data_file(&self) -> PathBuf {
        self.path().join("data.json")
    }
    /// The best epoch's weights and `meta.json` (a [`Best`]).
    pub fn best(&self) -> PathBuf {
        self.path().join("best")
    }

    /// The run's architecture.
    pub fn arch(&self) -> Result<Arch> {
        let file = self.arch_file();
        let text = std::fs::read_to_string(&file).with_context(|| {
            format!(
                "{}: not a training run folder (no arch.json)",
                self.path().display()
            )
        })?;
        Ok(Arch::from_json(&text, &file)?)
    }

    pub fn data_info(&self) -> Result<DataInfo> {
        let file = self.data_file();
        let text = std::fs::read_to_string(&file).with_context(|| {
            format!(
                "{}: not a training run folder (no data.json)",
                self.path().display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{}: not readable", file.display()))
    }

    /// The network of the run's architecture with the weights of `best/` (or of the last checkpoint),
    /// refusing weights of another architecture.
    pub fn load_network(&self, last: bool, device: &Device) -> Result<(Network, Option<Best>)> {
        let arch = self.arch()?;
        let dir = if last {
            checkpoint_to_read(&self.0.checkpoint())
        } else {
            self.best()
        };
        let (owner, best) = if last {
            let m: CheckpointMeta = read_meta(&dir, "training")?;
            ((m.arch, m.space_hash), m.best)
        } else {
            let b: Best = read_meta(&dir, "training").with_context(|| {
                format!(
                    "{}: no finished epoch yet (train at least one epoch)",
                    self.path().display()
                )
            })?;
            ((b.arch.clone(), b.space_hash.clone()), Some(b))
        };
        ensure!(
            owner == (arch.text(), arch.space.hash()),
            "{}: the weights are of architecture `{}` (space {}), the run's arch.json is `{}` (space {})",
            dir.display(),
            owner.0,
            owner.1,
            arch.text(),
            arch.space.hash()
        );
        let net = Network::standalone(&arch, device, 0)?;
        net.params.load(&dir.join("weights.safetensors"))?;
        Ok((net, best))
    }
}

/// The training, held-out and test images of a run.
pub struct TrainData {
    pub train_source: Arc<dyn Source>,
    /// The dataset's test split.
    pub val_source: Arc<dyn Source>,
    pub train: Vec<usize>,
    /// Indices of `train_source` held out to choose the epoch (empty when `val_split` is 0).
    pub held_out: Vec<usize>,
    /// Indices of `val_source`: the test images.
    pub val: Vec<usize>,
    pub train_loader: LoaderConfig,
    pub eval_loader: LoaderConfig,
    pub info: DataInfo,
}

/// The images of a run. `normalisation` is the (mean, std) the run already recorded (a resumed run, an
/// export); without it they are estimated on the training images.
pub fn prepare_data(
    cfg: &TrainConfig,
    arch: &Arch,
    normalisation: Option<(Vec<f32>, Vec<f32>)>,
) -> Result<TrainData> {
    let c = arch.space.input_channels;
    let open = |train: bool| {
        data::open_classes(
            &cfg.data,
            train,
            c,
            cfg.classes,
            cfg.class_seed,
            arch.space.num_classes,
            &|n| {
                format!(
                    "architecture {} classifies {}; use an architecture of a space with --classes {n}, or train with --classes {}",
                    arch.name, arch.space.num_classes, arch.space.num_classes
                )
            },
        )
    };
    let (train_source, val_source) = (open(true)?, open(false)?);
    let pool = data::sample(train_source.as_ref(), cfg.max_images, cfg.seed ^ 0x5eed)?;
    let val = data::sample(val_source.as_ref(), cfg.max_val_images, cfg.seed ^ 0x7a1)?;
    let sampled = pool.len();
    let (held_out, train) = if cfg.val_split > 0.0 {
        data::split_pool(
            train_source.as_ref(),
            &pool,
            cfg.val_split,
            cfg.seed ^ 0x4e1d,
        )?
    } else {
        (Vec::new(), pool)
    };
    ensure!(
        cfg.val_split == 0.0 || !held_out.is_empty(),
        "--val-split {} of {sampled} training images holds out none: use more images or a larger split",
        cfg.val_split
    );
    ensure!(
        train.len() >= cfg.batch_size,
        "{} training images: fewer than a batch of {}",
        train.len(),
        cfg.batch_size
    );
    ensure!(!val.is_empty(), "the test split has no images");
    let (mean, std) = match normalisation {
        Some(known) => known,
        None => data::estimate_mean_std(train_source.as_ref(), 2000)?,
    };
    let size = arch.space.resolution;
    let train_aug = if cfg.augment {
        Augment::train_small(size, c)
    } else {
        Augment::eval(size, c)
    };
    let loader = |augment: Augment, train: bool| LoaderConfig {
        batch_size: if train { cfg.batch_size } else { 256 },
        workers: cfg.workers,
        prefetch: 4,
        shuffle: train,
        drop_last: train,
        seed: cfg.seed,
        augment: augment.with_mean_std(mean.clone(), std.clone()),
    };
    let info = DataInfo {
        dataset: cfg.data.clone(),
        labels: train_source.classes().to_vec(),
        mean: mean.clone(),
        std: std.clone(),
        train_images: train.len(),
        val_images: val.len(),
        held_out_images: held_out.len(),
    };
    Ok(TrainData {
        train_loader: loader(train_aug, true),
        eval_loader: loader(Augment::eval(size, c), false),
        train_source,
        val_source,
        train,
        held_out,
        val,
        info,
    })
}

/// Logits `[n · classes]` (row-major) and labels of `indices` of `source` with the network in
/// evaluation mode.
pub fn predict(
    net: &Network,
    source: Arc<dyn Source>,
    indices: &[usize],
    loader: &LoaderConfig,
    mut progress: impl FnMut(usize, usize),
) -> Result<(Vec<f32>, Vec<u32>)> {
    let device = net.params.device().clone();
    let batches = data::batches(source, indices, loader, 0)?;
    let steps = batches.len();
    let (mut logits, mut labels) = (Vec::new(), Vec::new());
    for (step, batch) in batches.enumerate() {
        let b = batch?;
        let [n, c, h, w] = b.shape;
        let x = Tensor::from_vec(b.images, (n, c, h, w), &device)?;
        let y = net.forward(&x, None, false)?.detach();
        logits.extend(y.flatten_all()?.to_vec1::<f32>()?);
        labels.extend(b.labels);
        progress(step + 1, steps);
    }
    Ok((logits, labels))
}

/// Top-1 and top-5 accuracy and mean cross-entropy of row-major `logits` against `labels`.
pub fn accuracy(logits: &[f32], labels: &[u32]) -> (f64, f64, f64) {
    let classes = logits.len() / labels.len().max(1);
    let (mut top1, mut top5, mut ce) = (0f64, 0f64, 0f64);
    for (row, &y) in logits.chunks_exact(classes).zip(labels) {
        top1 += topk_credit(row, y as usize, 1);
        top5 += topk_credit(row, y as usize, 5);
        let target = row[y as usize];
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let lse = max as f64
            + row
                .iter()
                .map(|&v| ((v - max) as f64).exp())
                .sum::<f64>()
                .ln();
        ce += lse - target as f64;
    }
    let n = labels.len().max(1) as f64;
    (top1 / n, top5 / n, ce / n)
}

/// Credit for the label being among the `k` largest logits, ties counted honestly: the chance that it
/// is, when tied classes are ordered at random. A label tied with `t` others at the edge of the top `k`
/// gets the fraction of their places that fall inside it; a logit that is not a number gets none.
pub fn topk_credit(row: &[f32], label: usize, k: usize) -> f64 {
    let target = row[label];
    if target.is_nan() {
        return 0.0;
    }
    let above = row.iter().filter(|&&v| v > target).count();
    let tied = row.iter().filter(|&&v| v == target).count(); // the label itself included
    let inside = k.saturating_sub(above).min(tied);
    inside as f64 / tied as f64
}

/// Cross-entropy with label smoothing ε: `(1−ε)·CE + ε·mean over classes of −log p`.
fn smoothed_ce(logits: &Tensor, labels: &Tensor, eps: f64) -> Result<Tensor> {
    if eps == 0.0 {
        return Ok(candle_nn::loss::cross_entropy(logits, labels)?);
    }
    let lsm = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let nll = lsm
        .gather(&labels.unsqueeze(1)?, 1)?
        .squeeze(1)?
        .mean_all()?
        .neg()?;
    let uniform = lsm.mean(D::Minus1)?.mean_all()?.neg()?;
    Ok(((nll * (1.0 - eps))? + (uniform * eps)?)?)
}

/// Inverted dropout mask `[n, c]` (0 or 1/(1−p)) from the run's seeded generator.
fn dropout_mask(n: usize, c: usize, p: f64, rng: &mut SplitMix, device: &Device) -> Result<Tensor> {
    let keep = (1.0 / (1.0 - p)) as f32;
    let v: Vec<f32> = (0..n * c)
        .map(|_| if rng.uniform() < p { 0.0 } else { keep })
        .collect();
    Ok(Tensor::from_vec(v, (n, c), device)?)
}

struct State {
    net: Network,
    sgd: Sgd,
    epochs_done: usize,
    steps: u64,
    dropout: SplitMix,
    best: Option<Best>,
}

impl State {
    fn save(&self, dir: &Path, arch: &Arch) -> Result<()> {
        write_checkpoint(dir, |tmp| {
            self.net.params.save(&tmp.join("weights.safetensors"))?;
            let file = tmp.join("state.safetensors");
            candle_core::safetensors::save(&self.sgd.state(), &file)
                .with_context(|| format!("{}: cannot write", file.display()))?;
            let meta = CheckpointMeta {
                epochs_done: self.epochs_done,
                steps: self.steps,
                dropout_rng: self.dropout.state(),
                best: self.best.clone(),
                arch: arch.text(),
                space_hash: arch.space.hash(),
            };
            Ok(write_atomic(
                &tmp.join("meta.json"),
                serde_json::to_string_pretty(&meta)?.as_bytes(),
            )?)
        })
    }

    fn load(&mut self, dir: &Path, arch: &Arch) -> Result<()> {
        let dir = checkpoint_to_read(dir);
        let meta: CheckpointMeta = read_meta(&dir, "training")?;
        ensure!(
            meta.arch == arch.text() && meta.space_hash == arch.space.hash(),
            "{}: the checkpoint is of architecture `{}`, the run's is `{}`",
            dir.display(),
            meta.arch,
            arch.text()
        );
        self.net.params.load(&dir.join("weights.safetensors"))?;
        let file = dir.join("state.safetensors");
        let state = candle_core::safetensors::load(&file, self.net.params.device())
            .with_context(|| format!("{}: not a readable checkpoint", file.display()))?;
        self.sgd.load_state(&state);
        self.epochs_done = meta.epochs_done;
        self.steps = meta.steps;
        self.dropout = SplitMix::new(meta.dropout_rng);
        self.best = meta.best;
        Ok(())
    }
}

/// The architecture to train: a file, or a built-in, placed in the space of `lut` when one is given (so
/// that `fbnet-b` trains at the table's resolution, width and class count).
pub fn resolve_arch(name: &str, lut: Option<&Path>) -> Result<Arch> {
    if let Some(path) = lut
        && mobile_core::builtin(name).is_some()
    {
        let space = mobile_core::lut::Lut::load(path)?.space;
        if let Some(arch) = mobile_core::arch::builtin_in(name, &space) {
            return arch.with_context(|| {
                format!(
                    "built-in {name} does not fit the space {} of {}",
                    space.name,
                    path.display()
                )
            });
        }
    }
    Ok(Arch::load(name)?)
}

/// Trains `cfg.arch` from scratch into `run` (a new run, or `resume` an interrupted one). `progress` is
/// called after every step; `cancel` stops after the current step, keeping the last checkpoint.
pub fn train(
    cfg: &TrainConfig,
    run: &TrainRun,
    resume: bool,
    device: &Device,
    progress: &mut dyn FnMut(&TrainProgress),
    cancel: &AtomicBool,
) -> Result<TrainResult> {
    cfg.check()?;
    let dir = &run.0;
    // Paths absolute, so the run resumes from any folder; a resume takes the folder's configuration
    // when it is the same run's.
    let absolute = |c: &TrainConfig| TrainConfig {
        data: data::absolute_spec(&c.data),
        lut: c.lut.as_ref().map(mobile_core::files::absolute),
        arch: if Path::new(&c.arch).is_file() {
            mobile_core::files::absolute(&c.arch).display().to_string()
        } else {
            c.arch.clone()
        },
        ..c.clone()
    };
    let cfg = &if resume {
        dir.resumed(cfg, "training", |a, b| absolute(a) == absolute(b))?
    } else {
        absolute(cfg)
    };
    let arch = if resume {
        run.arch()?
    } else {
        resolve_arch(&cfg.arch, cfg.lut.as_deref())?
    };
    if !resume {
        dir.create(cfg, "training")?;
        write_atomic(&run.arch_file(), arch.to_json().as_bytes())?;
    }
    let recorded = if resume && run.data_file().exists() {
        Some(run.data_info()?)
    } else {
        None
    };
    let data = prepare_data(
        cfg,
        &arch,
        recorded.as_ref().map(|i| (i.mean.clone(), i.std.clone())),
    )?;
    if let Some(before) = &recorded {
        // Renamed or re-ordered class folders would silently give the weights other labels.
        ensure!(
            before.labels == data.info.labels,
            "{}: the data's classes changed since the run started: it trained on {:?}, the data now has {:?}; \
             restore the data or start a new run",
            run.data_file().display(),
            before.labels,
            data.info.labels
        );
    }
    write_atomic(
        &run.data_file(),
        serde_json::to_string_pretty(&data.info)?.as_bytes(),
    )?;
    let mut st = State {
        net: Network::standalone(&arch, device, cfg.seed)?,
        sgd: Sgd::new(cfg.momentum, cfg.weight_decay),
        epochs_done: 0,
        steps: 0,
        dropout: SplitMix::new(cfg.seed ^ 0x3c6e_f372_fe94_f82b),
        best: None,
    };
    if resume {
        if dir.has_checkpoint() {
            st.load(&dir.checkpoint(), &arch)?;
        }
        truncate_metrics(&dir.metrics(), st.epochs_done)?;
    }

    let steps_per_epoch = data::batch_count(data.train.len(), cfg.batch_size, true) as u64;
    let total = steps_per_epoch * cfg.epochs as u64;
    let named = st.net.params.handles();
    let head = arch.space.head_out();
    let mut last = (0.0, 0.0);
    while st.epochs_done < cfg.epochs {
        let epoch = st.epochs_done;
        let started = Instant::now();
        let mut tally = Tally::default();
        let mut lr = cfg.lr;
        let mut loader = data::batches(
            data.train_source.clone(),
            &data.train,
            &data.train_loader,
            epoch as u64,
        )?;
        let steps = loader.len();
        for step in 0..steps {
            let Some(batch) = loader.next() else { break };
            stop_if_cancelled(cancel, epoch, dir)?;
            let (x, y) = batch_tensors(batch?, device)?;
            let n = y.dim(0)?;
            lr = cfg.schedule.lr(cfg.lr, epoch, st.steps, total);
            let mut f = st.net.features(&x, None, true)?;
            if cfg.dropout > 0.0 {
                f = f.mul(&dropout_mask(
                    n,
                    head,
                    cfg.dropout,
                    &mut st.dropout,
                    device,
                )?)?;
            }
            let logits = st.net.logits(&f)?;
            let loss = smoothed_ce(&logits, &y, cfg.label_smoothing)?;
            let v = finite(loss.to_scalar::<f32>()? as f64, "loss", epoch, step, dir)?;
            let correct = correct(&logits, &y)?;
            let grads = loss.backward()?;
            st.sgd.step(&named, &grads, lr)?;
            st.steps += 1;
            tally.add(v, correct, n);
            progress(&TrainProgress {
                epoch,
                epochs: cfg.epochs,
                phase: "train",
                step: step + 1,
                steps,
                ce: tally.ce(),
                acc: tally.acc(),
                data: None,
            });
        }
        let fed = loader.stats();
        drop(loader);
        let train_seconds = started.elapsed().as_secs_f64();
        let (logits, labels) = predict(
            &st.net,
            data.val_source.clone(),
            &data.val,
            &data.eval_loader,
            |step, steps| {
                progress(&TrainProgress {
                    epoch,
                    epochs: cfg.epochs,
                    phase: "val",
                    step,
                    steps,
                    ce: f64::NAN,
                    acc: f64::NAN,
                    data: None,
                })
            },
        )?;
        let (top1, top5, val_ce) = accuracy(&logits, &labels);
        let held_out = if data.held_out.is_empty() {
            None
        } else {
            let (logits, labels) = predict(
                &st.net,
                data.train_source.clone(),
                &data.held_out,
                &data.eval_loader,
                |_, _| {},
            )?;
            let (h1, _, hce) = accuracy(&logits, &labels);
            Some((h1, hce))
        };
        last = (top1, top5);
        st.epochs_done += 1;
        // The epoch is chosen on the held-out images only; without them the last epoch is kept.
        let better = match (held_out, st.best.as_ref().and_then(|b| b.held_out_top1)) {
            (Some((h, _)), Some(b)) => h > b,
            _ => true,
        };
        if better {
            let best = Best {
                epoch: st.epochs_done,
                top1,
                top5,
                held_out_top1: held_out.map(|h| h.0),
                arch: arch.text(),
                space_hash: arch.space.hash(),
            };
            write_checkpoint(&run.best(), |tmp| {
                st.net.params.save(&tmp.join("weights.safetensors"))?;
                Ok(write_atomic(
                    &tmp.join("meta.json"),
                    serde_json::to_string_pretty(&best)?.as_bytes(),
                )?)
            })?;
            st.best = Some(best);
        }
        let metrics = TrainMetrics {
            epoch: st.epochs_done,
            lr,
            train_ce: tally.ce(),
            train_acc: tally.acc(),
            val_ce,
            val_top1: top1,
            val_top5: top5,
            held_out_top1: held_out.map(|h| h.0),
            held_out_ce: held_out.map(|h| h.1),
            seconds: started.elapsed().as_secs_f64(),
            images_per_second: tally.seen as f64 / train_seconds,
            data_wait_s: fed.waited_s,
            loader_images_per_second: fed.images_per_second,
        };
        dir.end_epoch(&metrics, || st.save(&dir.checkpoint(), &arch))?;
        progress(&TrainProgress {
            epoch,
            epochs: cfg.epochs,
            phase: "done",
            step: 1,
            steps: 1,
            ce: val_ce,
            acc: top1,
            data: Some(fed),
        });
    }
    if resume && last == (0.0, 0.0) {
        // resumed a finished run: report the last epoch recorded
        let m: Vec<TrainMetrics> = crate::runs::read_metrics(dir)?;
        if let Some(m) = m.last() {
            last = (m.val_top1, m.val_top5);
        }
    }
    let cost = arch.cost();
    let result = TrainResult {
        arch: arch.text(),
        best: st
            .best
            .clone()
            .context("no epoch finished: nothing to report")?,
        last_top1: last.0,
        last_top5: last.1,
        params: cost.params,
        macs: cost.macs,
    };
    write_atomic(
        &dir.result(),
        serde_json::to_string_pretty(&result)?.as_bytes(),
    )?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_get_their_share_of_the_credit() {
        // the label alone on top; tied with one other; tied with two others; below another
        assert_eq!(topk_credit(&[0.1, 0.9, 0.3], 1, 1), 1.0);
        assert_eq!(topk_credit(&[0.9, 0.9, 0.3], 1, 1), 0.5);
        assert!((topk_credit(&[0.5, 0.5, 0.5], 2, 1) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(topk_credit(&[0.1, 0.9, 0.3], 2, 1), 0.0);
        // top-2 with three tied below one above: one of the three places is inside
        assert!((topk_credit(&[0.9, 0.5, 0.5, 0.5], 3, 2) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(topk_credit(&[f32::NAN, 0.5], 0, 1), 0.0);
        let (top1, top5, _) = accuracy(&[0.9, 0.9, 0.1, 0.2, 0.3, 0.3], &[0, 1]);
        assert_eq!(top1, 0.5);
        assert_eq!(top5, 1.0);
    }
}
