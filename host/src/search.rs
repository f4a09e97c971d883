//! The DNAS search loop (paper section 3.3 and appendix A): each epoch trains the super net's weights on
//! one part of the training set with SGD, then the architecture parameters θ on the other part with Adam,
//! with Gumbel-softmax mixing at a temperature that decays every epoch. A run lives in a folder: its
//! configuration, per-epoch metrics, a checkpoint after every epoch (so `--resume` continues a killed
//! run), and at the end P_θ, the most likely architecture and samples from P_θ.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use candle_core::{D, DType, Device, Tensor, Var};
use mobile_core::lut::Lut;
use mobile_core::onnx::Dtype;
use mobile_core::onnx::weights::SplitMix;
use mobile_core::{Arch, Block, Space};
use serde::{Deserialize, Serialize};

use crate::data::{self, Augment, LoaderConfig, Source, Subset};
use crate::latency::{LatencyLoss, LatencyTable, gumbel_softmax};
use crate::optim::{Adam, Schedule, Sgd};
use crate::report::write_atomic;
pub use crate::runs::RunDir;
use crate::runs::{
    Tally, append_line, batch_tensors, ce_and_correct, checkpoint_to_read, finite, read_meta,
    stop_if_cancelled, truncate_metrics, write_checkpoint,
};
use crate::supernet::Network;

/// Which form of the latency-aware loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LossForm {
    /// The paper's `CE · α · (log LAT)^β`.
    Multiplicative,
    /// NNI's `CE + α · LAT^β`.
    Additive,
}

/// Everything a search depends on; written to `config.json` so a run can be reproduced from its folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchConfig {
    /// Dataset spec (`fashion-mnist`, `cifar10:DIR`, an image folder).
    pub data: String,
    /// The latency table; its space is the space searched.
    pub lut: PathBuf,
    /// Latencies of this dtype drive the search (the paper deployed int8).
    pub dtype: Dtype,
    /// Search on a random subset of this many classes (the paper's proxy task).
    pub classes: Option<usize>,
    pub class_seed: u64,
    /// Use at most this many training images (a stratified sample), for quick runs.
    pub max_images: Option<usize>,
    /// Fraction of the training images that train the weights; the rest train θ (paper: 0.8).
    pub split: f64,
    pub epochs: usize,
    /// Epochs of weight training before θ starts learning (paper: 10 of 90).
    pub freeze_epochs: usize,
    pub batch_size: usize,
    /// SGD of the weights: initial learning rate (cosine decay), momentum, weight decay.
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Adam of θ: learning rate and weight decay.
    pub theta_lr: f64,
    pub theta_weight_decay: f64,
    /// Gumbel-softmax temperature at the first epoch, and its decay: τ_e = τ_0 · exp(−decay · e).
    pub tau: f64,
    pub tau_decay: f64,
    pub loss: LossForm,
    pub alpha: f64,
    pub beta: f64,
    /// Architectures sampled from P_θ at the end (paper: 6).
    pub samples: usize,
    /// Random crops and flips on the training images.
    pub augment: bool,
    pub seed: u64,
    /// Threads decoding and augmenting images ahead of the training step.
    pub workers: usize,
}

impl Default for SearchConfig {
    /// The paper's hyper-parameters (appendix A) with a short schedule.
    fn default() -> Self {
        SearchConfig {
            data: "fashion-mnist".into(),
            lut: PathBuf::new(),
            dtype: Dtype::Int8,
            classes: None,
            class_seed: 0,
            max_images: None,
            split: 0.8,
            epochs: 10,
            freeze_epochs: 1,
            batch_size: 64,
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 1e-4,
            theta_lr: 1e-2,
            theta_weight_decay: 5e-4,
            tau: 5.0,
            tau_decay: 0.045,
            loss: LossForm::Multiplicative,
            alpha: 0.2,
            beta: 0.6,
            samples: 6,
            augment: true,
            seed: 0,
            workers: 1,
        }
    }
}

impl SearchConfig {
    pub fn latency_loss(&self) -> LatencyLoss {
        let (alpha, beta) = (self.alpha, self.beta);
        match self.loss {
            LossForm::Multiplicative => LatencyLoss::Multiplicative { alpha, beta },
            LossForm::Additive => LatencyLoss::Additive { alpha, beta },
        }
    }

    /// The temperature of epoch `e` (0-based).
    pub fn tau_at(&self, epoch: usize) -> f64 {
        self.tau * (-self.tau_decay * epoch as f64).exp()
    }

    fn check(&self) -> Result<()> {
        ensure!(self.epochs > 0, "--epochs must be at least 1");
        ensure!(self.batch_size > 0, "--batch-size must be at least 1");
        ensure!(
            self.split > 0.0 && self.split < 1.0,
            "--split {} must be between 0 and 1",
            self.split
        );
        ensure!(self.tau > 0.0, "--tau must be positive");
        for (name, v) in [
            ("lr", self.lr),
            ("theta-lr", self.theta_lr),
            ("alpha", self.alpha),
            ("beta", self.beta),
        ] {
            ensure!(
                v.is_finite() && v >= 0.0,
                "--{name} {v} must be a non-negative number"
            );
        }
        Ok(())
    }
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub tau: f64,
    pub lr: f64,
    /// Whether θ was trained this epoch (false while frozen).
    pub theta_trained: bool,
    /// Mean cross-entropy and accuracy of the weight steps (training mode, augmented).
    pub train_ce: f64,
    pub train_acc: f64,
    /// Mean cross-entropy and accuracy on the θ split (the proxy's validation data).
    pub theta_ce: f64,
    pub theta_acc: f64,
    /// Expected latency of P_θ = softmax(θ) in µs, from the table.
    pub expected_latency_us: f64,
    /// Mean entropy of P_θ over layers (nats); ln 9 ≈ 2.2 at the start.
    pub entropy: f64,
    pub seconds: f64,
    pub images_per_second: f64,
}

/// Where the search is, for a progress display.
#[derive(Clone, Debug)]
pub struct Progress {
    pub epoch: usize,
    pub epochs: usize,
    /// `weights` or `theta`.
    pub phase: &'static str,
    pub step: usize,
    pub steps: usize,
    pub ce: f64,
    pub acc: f64,
    pub expected_latency_us: f64,
}

/// What the checkpoint's JSON half holds (the tensors are in safetensors files beside it).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CheckpointMeta {
    epochs_done: usize,
    /// Temperature of the next epoch (derived from the epoch; recorded for people reading the file).
    tau: f64,
    weight_steps: u64,
    adam_steps: u64,
    gumbel_rng: u64,
    space_hash: String,
}

/// An architecture the search produced, with its predicted cost.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Candidate {
    pub name: String,
    pub arch: String,
    pub file: String,
    /// log P_θ of the architecture.
    pub log_prob: f64,
    /// Latency predicted by the table, µs, per dtype the table has.
    pub latency_us: Vec<(Dtype, f64)>,
    pub macs: u64,
    pub params: u64,
}

/// The end result of a search (`result.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SearchResult {
    pub space: String,
    pub space_hash: String,
    pub dtype: Dtype,
    /// Per layer: candidate names, θ and P_θ.
    pub layers: Vec<LayerResult>,
    pub best: Candidate,
    pub samples: Vec<Candidate>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerResult {
    pub candidates: Vec<Block>,
    pub theta: Vec<f64>,
    pub probs: Vec<f64>,
}

/// The data of a search: the two splits and how to load them.
struct SearchData {
    source: Arc<dyn Source>,
    weights: Vec<usize>,
    theta: Vec<usize>,
    train: LoaderConfig,
    eval: LoaderConfig,
}

fn prepare_data(cfg: &SearchConfig, space: &Space) -> Result<SearchData> {
    let mut source = data::open(&cfg.data, true, Some(space.input_channels))?;
    if let Some(n) = cfg.classes {
        source = Arc::new(Subset::random_classes(source, n, cfg.class_seed)?);
    }
    let nclasses = source.classes().len();
    ensure!(
        nclasses == space.num_classes,
        "the data has {nclasses} classes but the table's space {} classifies {}: profile a space with --classes {nclasses}, or search with --classes {}",
        space.name,
        space.num_classes,
        space.num_classes
    );
    let mut pool: Vec<usize> = (0..source.len()).collect();
    if let Some(max) = cfg.max_images.filter(|&m| m < source.len()) {
        let (keep, _) = data::stratified_split(
            source.labels(),
            nclasses,
            max as f64 / source.len() as f64,
            cfg.seed ^ 0x5eed,
        )?;
        pool = keep;
    }
    let labels: Vec<u32> = pool.iter().map(|&i| source.label(i)).collect();
    let (w, t) = data::stratified_split(&labels, nclasses, cfg.split, cfg.seed)?;
    let (weights, theta) = (
        w.into_iter().map(|i| pool[i]).collect::<Vec<_>>(),
        t.into_iter().map(|i| pool[i]).collect::<Vec<_>>(),
    );
    ensure!(
        weights.len() >= cfg.batch_size && theta.len() >= cfg.batch_size,
        "{} images for the weights and {} for θ: each split needs at least a batch of {}",
        weights.len(),
        theta.len(),
        cfg.batch_size
    );
    let (mean, std) = data::estimate_mean_std(source.as_ref(), 2000)?;
    let c = space.input_channels;
    let size = space.resolution;
    let train_aug = if cfg.augment {
        Augment::train_small(size, c)
    } else {
        Augment::eval(size, c)
    }
    .with_mean_std(mean.clone(), std.clone());
    let loader = |augment: Augment, shuffle: bool| LoaderConfig {
        batch_size: cfg.batch_size,
        workers: cfg.workers,
        prefetch: 4,
        shuffle,
        drop_last: true,
        seed: cfg.seed,
        augment,
    };
    Ok(SearchData {
        source,
        weights,
        theta,
        train: loader(train_aug, true),
        eval: loader(Augment::eval(size, c).with_mean_std(mean, std), true),
    })
}

/// The search state that a checkpoint holds.
struct State {
    net: Network,
    theta: Vec<Var>,
    /// `theta.l{i}`: the names of θ in checkpoints and in Adam's state.
    theta_names: Vec<String>,
    sgd: Sgd,
    adam: Adam,
    epochs_done: usize,
    weight_steps: u64,
    gumbel: SplitMix,
}

impl State {
    fn new(space: &Space, cfg: &SearchConfig, device: &Device) -> Result<State> {
        let net = Network::supernet(space, device, cfg.seed)?;
        let theta = net
            .layers
            .iter()
            .map(|l| Var::zeros(l.candidates.len(), DType::F32, device))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let theta_names = (0..theta.len()).map(|i| format!("theta.l{i}")).collect();
        Ok(State {
            net,
            theta,
            theta_names,
            sgd: Sgd::new(cfg.momentum, cfg.weight_decay),
            adam: Adam::new(cfg.theta_weight_decay),
            epochs_done: 0,
            weight_steps: 0,
            gumbel: SplitMix::new(cfg.seed ^ 0x6a09_e667_f3bc_c908),
        })
    }

    /// The layers' mixing weights: Gumbel-softmax samples at temperature `tau` (differentiable in θ
    /// when `train_theta`), or P_θ itself without a temperature.
    fn mix(&mut self, tau: Option<f64>, train_theta: bool) -> Result<Vec<Tensor>> {
        self.theta
            .iter()
            .map(|t| {
                let theta = if train_theta {
                    t.as_tensor().clone()
                } else {
                    t.as_tensor().detach()
                };
                match tau {
                    Some(tau) => gumbel_softmax(&theta, tau, &mut self.gumbel),
                    None => Ok(candle_nn::ops::softmax(&theta, D::Minus1)?),
                }
            })
            .collect()
    }

    fn probs(&self) -> Result<Vec<Vec<f64>>> {
        self.theta
            .iter()
            .map(|t| {
                let p: Vec<f32> = candle_nn::ops::softmax(t.as_tensor(), D::Minus1)?.to_vec1()?;
                Ok(p.into_iter().map(f64::from).collect())
            })
            .collect()
    }

    /// Writes the checkpoint: a fresh folder renamed over the old one, so a kill at any moment leaves
    /// either the previous or the new checkpoint complete.
    fn save(&self, dir: &Path, tau: f64) -> Result<()> {
        write_checkpoint(dir, |tmp| {
            self.net.params.save(&tmp.join("weights.safetensors"))?;
            let mut state = self.sgd.state();
            state.extend(self.adam.state());
            for (name, t) in self.theta_names.iter().zip(&self.theta) {
                state.insert(name.clone(), t.as_tensor().detach());
            }
            let state_file = tmp.join("state.safetensors");
            candle_core::safetensors::save(&state, &state_file)
                .with_context(|| format!("{}: cannot write", state_file.display()))?;
            let meta = CheckpointMeta {
                epochs_done: self.epochs_done,
                tau,
                weight_steps: self.weight_steps,
                adam_steps: self.adam.steps,
                gumbel_rng: self.gumbel.state(),
                space_hash: self.net.space.hash(),
            };
            write_atomic(
                &tmp.join("meta.json"),
                serde_json::to_string_pretty(&meta)?.as_bytes(),
            )
        })
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        let dir = checkpoint_to_read(dir);
        let meta: CheckpointMeta = read_meta(&dir, "search")?;
        let meta_file = dir.join("meta.json");
        ensure!(
            meta.space_hash == self.net.space.hash(),
            "{}: the checkpoint is of space {}, the run's table is of space {}",
            meta_file.display(),
            meta.space_hash,
            self.net.space.hash()
        );
        self.net.params.load(&dir.join("weights.safetensors"))?;
        let state_file = dir.join("state.safetensors");
        let state = candle_core::safetensors::load(&state_file, self.net.params.device())
            .with_context(|| format!("{}: not a readable checkpoint", state_file.display()))?;
        for (i, (name, t)) in self.theta_names.iter().zip(&self.theta).enumerate() {
            let v = state
                .get(name)
                .with_context(|| format!("{}: θ of layer {i} is missing", state_file.display()))?;
            ensure!(
                v.dims() == t.dims(),
                "{}: θ of layer {i} has the wrong size",
                state_file.display()
            );
            t.set(v)?;
        }
        self.sgd.load_state(&state);
        self.adam.load_state(&state, meta.adam_steps)?;
        self.epochs_done = meta.epochs_done;
        self.weight_steps = meta.weight_steps;
        self.gumbel = SplitMix::new(meta.gumbel_rng);
        Ok(())
    }
}

/// Runs a search into `run` (a new run, or `resume` an interrupted one from its folder). `progress` is
/// called after every step; setting `cancel` stops after the current step (the last checkpoint stays).
pub fn search(
    cfg: &SearchConfig,
    run: &RunDir,
    resume: bool,
    device: &Device,
    progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> Result<SearchResult> {
    cfg.check()?;
    let lut = Lut::load(&cfg.lut)?;
    let space = lut.space.clone();
    let table = LatencyTable::new(&lut, &space, cfg.dtype)?;
    run.start(cfg, resume, "search")?;
    let data = prepare_data(cfg, &space)?;
    let mut st = State::new(&space, cfg, device)?;
    if resume && run.has_checkpoint() {
        st.load(&run.checkpoint())?;
        truncate_metrics(&run.metrics(), st.epochs_done)?;
    }
    let steps_per_epoch = data::batch_count(data.weights.len(), cfg.batch_size, true);
    let total_steps = (steps_per_epoch * cfg.epochs) as u64;
    let loss_fn = cfg.latency_loss();
    // shared handles to the weights (cheap clones), so that `st` can be borrowed mutably in the loop
    let named: Vec<(String, crate::params::Param)> = st
        .net
        .params
        .trainable()
        .map(|(k, p)| (k.clone(), p.clone()))
        .collect();
    let named: Vec<(&str, &crate::params::Param)> =
        named.iter().map(|(k, p)| (k.as_str(), p)).collect();

    while st.epochs_done < cfg.epochs {
        let epoch = st.epochs_done;
        let started = Instant::now();
        let tau = cfg.tau_at(epoch);
        let theta_on = epoch >= cfg.freeze_epochs;
        let mut lat_now = table.expected_us(&st.probs()?);
        // weights on their split, mixing with θ held fixed
        let (mut tally, mut lr) = (Tally::default(), cfg.lr);
        let loader = data::batches(
            data.source.clone(),
            &data.weights,
            &data.train,
            epoch as u64,
        )?;
        let steps = loader.len();
        for (step, batch) in loader.enumerate() {
            stop_if_cancelled(cancel, epoch, run)?;
            let (x, y) = batch_tensors(batch?, device)?;
            lr = Schedule::Cosine.lr(cfg.lr, epoch, st.weight_steps, total_steps);
            let m = st.mix(Some(tau), false)?;
            let logits = st.net.forward(&x, Some(&m), true)?;
            let (ce, ok) = ce_and_correct(&logits, &y)?;
            let v = finite(
                ce.to_scalar::<f32>()? as f64,
                "cross-entropy",
                epoch,
                step,
                run,
            )?;
            let grads = ce.backward()?;
            st.sgd.step(&named, &grads, lr)?;
            st.weight_steps += 1;
            tally.add(v, ok, y.dim(0)?);
            progress(&Progress {
                epoch,
                epochs: cfg.epochs,
                phase: "weights",
                step: step + 1,
                steps,
                ce: tally.ce(),
                acc: tally.acc(),
                expected_latency_us: lat_now,
            });
        }
        let train = tally;
        // θ on its split (while frozen, the split is only evaluated)
        let mut tally = Tally::default();
        let aug = if theta_on { &data.train } else { &data.eval };
        let loader = data::batches(data.source.clone(), &data.theta, aug, epoch as u64)?;
        let steps = loader.len();
        for (step, batch) in loader.enumerate() {
            stop_if_cancelled(cancel, epoch, run)?;
            let (x, y) = batch_tensors(batch?, device)?;
            let (ce, ok) = if theta_on {
                let m = st.mix(Some(tau), true)?;
                let logits = st.net.forward(&x, Some(&m), true)?;
                let (ce, ok) = ce_and_correct(&logits, &y)?;
                let lat = table.expected(&m)?;
                let loss = loss_fn.combine(&ce, &lat)?;
                finite(loss.to_scalar::<f32>()? as f64, "loss", epoch, step, run)?;
                let grads = loss.backward()?;
                let params: Vec<(&str, &Var)> = st
                    .theta_names
                    .iter()
                    .map(String::as_str)
                    .zip(st.theta.iter())
                    .collect();
                st.adam.step(&params, &grads, cfg.theta_lr)?;
                lat_now = table.expected_us(&st.probs()?);
                (ce, ok)
            } else {
                let m = st.mix(None, false)?;
                // training-mode BN, as in the θ steps that follow the frozen epochs
                let logits = st.net.forward(&x, Some(&m), true)?.detach();
                ce_and_correct(&logits, &y)?
            };
            let v = finite(
                ce.to_scalar::<f32>()? as f64,
                "cross-entropy",
                epoch,
                step,
                run,
            )?;
            tally.add(v, ok, y.dim(0)?);
            progress(&Progress {
                epoch,
                epochs: cfg.epochs,
                phase: "theta",
                step: step + 1,
                steps,
                ce: tally.ce(),
                acc: tally.acc(),
                expected_latency_us: lat_now,
            });
        }
        let probs = st.probs()?;
        let seconds = started.elapsed().as_secs_f64();
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            tau,
            lr,
            theta_trained: theta_on,
            train_ce: train.ce(),
            train_acc: train.acc(),
            theta_ce: tally.ce(),
            theta_acc: tally.acc(),
            expected_latency_us: table.expected_us(&probs),
            entropy: mean_entropy(&probs),
            seconds,
            images_per_second: (train.seen + tally.seen) as f64 / seconds,
        };
        st.epochs_done += 1;
        st.save(&run.checkpoint(), cfg.tau_at(st.epochs_done))?;
        append_line(&run.metrics(), &serde_json::to_string(&metrics)?)?;
    }
    finish(cfg, run, &lut, &st)
}

/// Mean over layers of the entropy of P_θ (nats).
pub fn mean_entropy(probs: &[Vec<f64>]) -> f64 {
    let sum: f64 = probs
        .iter()
        .map(|p| {
            -p.iter()
                .filter(|&&v| v > 0.0)
                .map(|v| v * v.ln())
                .sum::<f64>()
        })
        .sum();
    sum / probs.len().max(1) as f64
}

/// A named architecture of the space with its predicted cost.
fn candidate(
    name: &str,
    choices: Vec<Block>,
    probs: &[Vec<f64>],
    st: &State,
    lut: &Lut,
    run: &RunDir,
) -> Result<Candidate> {
    let arch = Arch::new(name, st.net.space.clone(), choices.clone())?;
    let log_prob = st
        .net
        .layers
        .iter()
        .zip(&choices)
        .zip(probs)
        .map(|((layer, b), p)| {
            let i = layer.candidates.iter().position(|c| c == b).unwrap_or(0);
            p[i].max(1e-300).ln()
        })
        .sum();
    let latency_us = lut
        .dtypes
        .iter()
        .map(|&d| Ok((d, lut.predict(&arch, d)?)))
        .collect::<Result<Vec<_>>>()?;
    let cost = arch.cost();
    let file = format!("{name}.json");
    write_atomic(&run.0.join(&file), arch.to_json().as_bytes())?;
    Ok(Candidate {
        name: name.to_string(),
        arch: arch.text(),
        file,
        log_prob,
        latency_us,
        macs: cost.macs,
        params: cost.params,
    })
}

/// Writes the end results: θ and P_θ, the most likely architecture and samples from P_θ.
fn finish(cfg: &SearchConfig, run: &RunDir, lut: &Lut, st: &State) -> Result<SearchResult> {
    let probs = st.probs()?;
    let layers: Vec<LayerResult> = st
        .net
        .layers
        .iter()
        .zip(&st.theta)
        .zip(&probs)
        .map(|((l, t), p)| {
            Ok(LayerResult {
                candidates: l.candidates.clone(),
                theta: t
                    .as_tensor()
                    .to_vec1::<f32>()?
                    .into_iter()
                    .map(f64::from)
                    .collect(),
                probs: p.clone(),
            })
        })
        .collect::<Result<_>>()?;
    let best_choices = layers
        .iter()
        .map(|l| {
            let i = (0..l.probs.len())
                .max_by(|&a, &b| l.probs[a].total_cmp(&l.probs[b]))
                .unwrap_or(0);
            l.candidates[i]
        })
        .collect();
    let best = candidate("searched-best", best_choices, &probs, st, lut, run)?;
    let mut rng = SplitMix::new(cfg.seed ^ 0xbb67_ae85_84ca_a73b);
    let mut samples = Vec::new();
    for k in 0..cfg.samples {
        let choices = layers
            .iter()
            .map(|l| {
                let u = rng.uniform();
                let mut acc = 0.0;
                for (i, p) in l.probs.iter().enumerate() {
                    acc += p;
                    if u < acc {
                        return l.candidates[i];
                    }
                }
                l.candidates[l.candidates.len() - 1]
            })
            .collect();
        samples.push(candidate(
            &format!("searched-sample-{}", k + 1),
            choices,
            &probs,
            st,
            lut,
            run,
        )?);
    }
    let result = SearchResult {
        space: st.net.space.name.clone(),
        space_hash: st.net.space.hash(),
        dtype: cfg.dtype,
        layers,
        best,
        samples,
    };
    write_atomic(
        &run.result(),
        serde_json::to_string_pretty(&result)?.as_bytes(),
    )?;
    crate::search_report::write(run, cfg, lut, &result)?;
    Ok(result)
}

/// Reads a search run's metrics.
pub fn read_metrics(run: &RunDir) -> Result<Vec<EpochMetrics>> {
    crate::runs::read_metrics(run)
}
