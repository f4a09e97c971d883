//! The DNAS search loop (paper section 3.3 and appendix A): the super net's weights learn on one part of
//! the training set with SGD, the architecture parameters θ with Adam (in the paper on the other part),
//! through a Gumbel-softmax relaxation whose temperature anneals.
//!
//! By default θ learns from every weight batch, from the same backward as the weights (joint, the
//! single-level search of SNAS), θ's split held out to measure the super net; θ batches of its own after
//! every weight batch (interleaved, as GDAS, TF-NAS and ProxylessNAS do) are an option, and τ anneals per
//! step; the hard, straight-through relaxation of GDAS (each layer runs only its sampled candidate) is an
//! option; the paper's schedule (a whole epoch of weights, then a whole pass over θ's split, τ decayed
//! per epoch) is one flag away.
//! A run lives in a folder: its configuration, per-epoch metrics, a checkpoint after every epoch (so
//! `--resume` continues a killed run exactly), and at the end P_θ with how decided each layer is, the
//! most likely architecture (within the latency target, if one is set) and samples from P_θ.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use candle_core::{D, DType, Device, Tensor, Var};
use mobile_core::lut::Lut;
use mobile_core::onnx::Dtype;
use mobile_core::rng::SplitMix;
use mobile_core::{Arch, Block, Space};
use serde::{Deserialize, Serialize};

mod config;

pub use config::{LossForm, Noise, Relaxation, SearchConfig, TargetForm, TauAnneal, ThetaSchedule};

use crate::data::{self, Augment, Loader, LoaderConfig, Source};
use crate::decision::{self, Evidence, LayerDecision};
use crate::latency::LatencyTable;
use crate::layers::FrozenWeights;
use crate::network::{Choice, Mix, Network};
use crate::optim::{Adam, Schedule, Sgd};
use crate::relaxation::{entropy, gumbel_hard, gumbel_softmax, softmax_tau};
pub use crate::runs::RunDir;
use crate::runs::{
    Tally, batch_tensors, ce_and_correct, checkpoint_to_read, finite, read_meta, stop_if_cancelled,
    truncate_metrics, write_checkpoint,
};
use mobile_core::files::write_atomic;

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
    /// Seconds the weight steps waited for their batches (a training step idle for data).
    #[serde(default)]
    pub data_wait_s: f64,
    /// Images per second the loader's threads could build (see `data::LoaderStats`).
    #[serde(default)]
    pub loader_images_per_second: f64,
    /// τ at the end of the epoch (per-step annealing moves it within the epoch).
    #[serde(default)]
    pub tau_end: f64,
    /// θ steps taken so far in the run.
    #[serde(default)]
    pub theta_steps: u64,
    /// Per layer: the entropy of P_θ and the index of its most likely candidate.
    #[serde(default)]
    pub layer_entropy: Vec<f64>,
    #[serde(default)]
    pub winners: Vec<usize>,
    /// Latency of the per-layer most likely architecture, µs, from the table.
    #[serde(default)]
    pub argmax_latency_us: f64,
}

/// Where the search is, for a progress display.
#[derive(Clone, Debug)]
pub struct Progress {
    pub epoch: usize,
    pub epochs: usize,
    /// `weights` or `theta` (phases), `search` (interleaved).
    pub phase: &'static str,
    pub step: usize,
    pub steps: usize,
    /// Running CE and accuracy of the phase's batches (interleaved: of the weight batches)…
    pub ce: f64,
    pub acc: f64,
    /// …and of this epoch's θ batches.
    pub theta_ce: f64,
    pub theta_acc: f64,
    pub expected_latency_us: f64,
    pub tau: f64,
    /// The last report of the epoch.
    pub end_of_epoch: bool,
    /// With the last report: how the data side kept up with the weight steps.
    pub data: Option<data::LoaderStats>,
}

/// What the checkpoint's JSON half holds (the tensors are in safetensors files beside it).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CheckpointMeta {
    epochs_done: usize,
    /// Temperature of the next step (derived from the step; recorded for people reading the file).
    tau: f64,
    weight_steps: u64,
    adam_steps: u64,
    gumbel_rng: u64,
    space_hash: String,
    /// Where the θ batches stand: the pass over θ's split and the batches of it already taken (absent
    /// in checkpoints of the first release, whose phases made one pass per epoch).
    #[serde(default)]
    theta_cursor: Option<(u64, usize)>,
    /// The gradient tallies (absent in checkpoints of earlier releases: a resume starts them afresh).
    #[serde(default)]
    evidence: Option<Evidence>,
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
    /// The architecture to train: the most likely one (within [0.9 T, T] when a target T is set).
    pub best: Candidate,
    pub samples: Vec<Candidate>,
    /// θ steps the run took, and the noise level of a layer's lead they imply (see `decision`).
    #[serde(default)]
    pub theta_steps: u64,
    #[serde(default)]
    pub noise_margin: f64,
    /// The latency target, ms, and the per-layer most likely architecture when the target made `best`
    /// another one.
    #[serde(default)]
    pub target_ms: Option<f64>,
    #[serde(default)]
    pub argmax: Option<Candidate>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerResult {
    pub candidates: Vec<Block>,
    pub theta: Vec<f64>,
    pub probs: Vec<f64>,
    /// How far the most likely candidate leads, and whether by more than the noise.
    #[serde(default)]
    pub decision: Option<LayerDecision>,
}

/// How many layers a search decided, counted once for the CLI, the report and the demo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecisionCounts {
    pub decided: usize,
    pub undecided: usize,
    /// Of the decided: those the cross-entropy part alone decided.
    pub on_accuracy: usize,
}

impl SearchResult {
    /// The layers' decisions counted; layers of a result written before decisions existed count in none.
    pub fn decision_counts(&self) -> DecisionCounts {
        let decisions = self.layers.iter().filter_map(|l| l.decision.as_ref());
        let (mut decided, mut undecided, mut on_accuracy) = (0, 0, 0);
        for d in decisions {
            if d.decided {
                decided += 1;
            } else {
                undecided += 1;
            }
            on_accuracy += usize::from(d.by_accuracy());
        }
        DecisionCounts {
            decided,
            undecided,
            on_accuracy,
        }
    }
}

/// The data of a search: the two splits and how to load them.
struct SearchData {
    source: Arc<dyn Source>,
    weights: Vec<usize>,
    theta: Vec<usize>,
    train: LoaderConfig,
}

fn prepare_data(cfg: &SearchConfig, space: &Space) -> Result<SearchData> {
    let source = data::open_classes(
        &cfg.data,
        true,
        space.input_channels,
        cfg.classes,
        cfg.class_seed,
        space.num_classes,
        &|n| {
            format!(
                "the table's space {} classifies {}; profile a space with --classes {n}, or search with --classes {}",
                space.name, space.num_classes, space.num_classes
            )
        },
    )?;
    let pool = data::sample(source.as_ref(), cfg.max_images, cfg.seed ^ 0x5eed)?;
    let (weights, theta) = data::split_pool(source.as_ref(), &pool, cfg.split, cfg.seed)?;
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
    .with_mean_std(mean, std);
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
    })
}

/// Where the θ batches stand: they cycle through θ's split, pass after pass, independently of the
/// weights' epochs; the position is part of the checkpoint, so a resumed run takes the same batches.
struct ThetaCursor {
    pass: u64,
    /// Batches of this pass already taken.
    taken: usize,
    loader: Option<Loader>,
}

impl ThetaCursor {
    fn next(&mut self, data: &SearchData) -> Result<data::Batch> {
        loop {
            if self.loader.is_none() {
                self.loader = Some(data::batches_from(
                    data.source.clone(),
                    &data.theta,
                    &data.train,
                    self.pass,
                    self.taken,
                )?);
            }
            if let Some(batch) = self.loader.as_mut().and_then(Iterator::next) {
                self.taken += 1;
                return batch;
            }
            self.pass += 1;
            self.taken = 0;
            self.loader = None;
        }
    }
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
    cursor: ThetaCursor,
    /// The tallies of θ's gradients that decide whether a layer's choice exceeds the noise.
    evidence: Evidence,
}

/// A layer's way of combining its candidates for one batch.
enum Sampled {
    Soft(Vec<Tensor>),
    Hard(Vec<Choice>),
}

impl Sampled {
    fn mix(&self) -> Mix<'_> {
        match self {
            Sampled::Soft(m) => Mix::Soft(m),
            Sampled::Hard(p) => Mix::Hard(p),
        }
    }
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
        let sizes: Vec<usize> = theta.iter().map(|t| t.elem_count()).collect();
        Ok(State {
            evidence: Evidence::new(&sizes),
            net,
            theta,
            theta_names,
            sgd: Sgd::new(cfg.momentum, cfg.weight_decay),
            adam: Adam::new(cfg.theta_weight_decay),
            epochs_done: 0,
            weight_steps: 0,
            gumbel: SplitMix::new(cfg.seed ^ 0x6a09_e667_f3bc_c908),
            cursor: ThetaCursor {
                pass: 0,
                taken: 0,
                loader: None,
            },
        })
    }

    /// The layers' candidates for a batch of `n` images at temperature `tau`: Gumbel-softmax mixtures
    /// (soft) or sampled paths (hard), differentiable in θ when `train_theta`.
    fn sample(
        &mut self,
        cfg: &SearchConfig,
        tau: f64,
        n: usize,
        train_theta: bool,
    ) -> Result<Sampled> {
        let rows = (cfg.gumbel == Noise::Image).then_some(n);
        let thetas = self.theta.iter().map(|t| {
            if train_theta {
                t.as_tensor().clone()
            } else {
                t.as_tensor().detach()
            }
        });
        let rng = &mut self.gumbel;
        Ok(match cfg.relaxation {
            Relaxation::Soft if cfg.gumbel == Noise::None => Sampled::Soft(
                thetas
                    .map(|theta| softmax_tau(&theta, tau))
                    .collect::<Result<_>>()?,
            ),
            Relaxation::Soft => Sampled::Soft(
                thetas
                    .map(|theta| gumbel_softmax(&theta, tau, rows, rng))
                    .collect::<Result<_>>()?,
            ),
            Relaxation::Hard => Sampled::Hard(
                thetas
                    .map(|theta| {
                        let (index, weights) = gumbel_hard(&theta, tau, rows, rng)?;
                        Ok(Choice {
                            index,
                            weights: train_theta.then_some(weights),
                        })
                    })
                    .collect::<Result<_>>()?,
            ),
        })
    }

    /// The super net's cross-entropy on a batch through a fresh sample of its relaxation (differentiable
    /// in θ when `train_theta`): the loss tensor, its value (checked finite), the correct predictions
    /// and the sample.
    fn batch_ce(
        &mut self,
        cfg: &SearchConfig,
        (x, y): &(Tensor, Tensor),
        tau: f64,
        train_theta: bool,
        (epoch, step, run): (usize, usize, &RunDir),
    ) -> Result<(Tensor, f64, usize, Sampled)> {
        let sampled = self.sample(cfg, tau, y.dim(0)?, train_theta)?;
        let logits = self.net.forward(x, Some(sampled.mix()), true)?;
        let (ce, ok) = ce_and_correct(&logits, y)?;
        let v = finite(
            ce.to_scalar::<f32>()? as f64,
            "cross-entropy",
            epoch,
            step,
            run,
        )?;
        Ok((ce, v, ok, sampled))
    }

    /// P_θ = softmax(θ) per layer, as tensors (differentiable in θ).
    fn softmax(&self) -> Result<Vec<Tensor>> {
        self.theta
            .iter()
            .map(|t| Ok(candle_nn::ops::softmax(t.as_tensor(), D::Minus1)?))
            .collect()
    }

    fn probs(&self) -> Result<Vec<Vec<f64>>> {
        self.softmax()?
            .iter()
            .map(|p| {
                let p: Vec<f32> = p.to_vec1()?;
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
                theta_cursor: Some((self.cursor.pass, self.cursor.taken)),
                evidence: Some(self.evidence.clone()),
            };
            Ok(write_atomic(
                &tmp.join("meta.json"),
                serde_json::to_string_pretty(&meta)?.as_bytes(),
            )?)
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
        if let Some(evidence) = meta.evidence {
            ensure!(
                evidence.total.len() == self.theta.len() && evidence.ce.len() == self.theta.len(),
                "{}: the gradient tallies do not match the space's layers",
                meta_file.display()
            );
            self.evidence = evidence;
        }
        let (pass, taken) = meta.theta_cursor.unwrap_or((meta.epochs_done as u64, 0));
        self.cursor = ThetaCursor {
            pass,
            taken,
            loader: None,
        };
        Ok(())
    }
}

/// One θ batch: a step of Adam on the latency-aware loss (or, while θ is frozen, only its CE and
/// accuracy, for the record), counted in `tally`. Returns the expected latency of P_θ after it.
#[allow(clippy::too_many_arguments)]
fn theta_batch(
    st: &mut State,
    cfg: &SearchConfig,
    data: &SearchData,
    table: &LatencyTable,
    tau: f64,
    learn: bool,
    device: &Device,
    at: (usize, usize, &RunDir),
    tally: &mut Tally,
) -> Result<f64> {
    let batch = batch_tensors(st.cursor.next(data)?, device)?;
    let n = batch.1.dim(0)?;
    // θ's step leaves the weights alone: their gradients are not computed.
    let (ce, v, ok, sampled) = {
        let _frozen = FrozenWeights::enter();
        st.batch_ce(cfg, &batch, tau, learn, at)?
    };
    if learn {
        theta_step(st, cfg, table, &ce, &sampled, at)?;
    }
    tally.add(v, ok, n);
    Ok(table.expected_us(&st.probs()?))
}

/// A step of Adam on θ from the latency-aware loss of a batch's cross-entropy `ce` (computed through
/// `sampled`, differentiable in θ), with its gradient tallied as evidence. Returns the backward's
/// gradients (the weights' too, when they were tracked) and ∂loss/∂CE, the factor by which the loss
/// scaled the cross-entropy's gradient.
fn theta_step(
    st: &mut State,
    cfg: &SearchConfig,
    table: &LatencyTable,
    ce: &Tensor,
    sampled: &Sampled,
    (epoch, step, run): (usize, usize, &RunDir),
) -> Result<(candle_core::backprop::GradStore, f64)> {
    // the paper's expected latency of the sampled mixture (eq. 7); for the hard relaxation the
    // expectation under P_θ itself, since its sample is one-hot
    let lat = match sampled {
        Sampled::Soft(m) => table.expected(m)?,
        Sampled::Hard(_) => table.expected(&st.softmax()?)?,
    };
    let loss_form = cfg.latency_loss();
    let loss = loss_form.combine(ce, &lat)?;
    finite(loss.to_scalar::<f32>()? as f64, "loss", epoch, step, run)?;
    let grads = loss.backward()?;
    // The cross-entropy part of θ's gradient: the whole loss's, less that of the loss with the
    // cross-entropy held constant (the latency term's part; no block kernel in that graph).
    let lat_grads = loss_form.combine(&ce.detach(), &lat)?.backward()?;
    for (i, t) in st.theta.iter().enumerate() {
        let g = |store: &candle_core::backprop::GradStore| -> Result<Vec<f64>> {
            Ok(match store.get(t.as_tensor()) {
                Some(g) => g
                    .flatten_all()?
                    .to_vec1::<f32>()?
                    .into_iter()
                    .map(f64::from)
                    .collect(),
                None => vec![0.0; t.elem_count()],
            })
        };
        let (total, latency) = (g(&grads)?, g(&lat_grads)?);
        let ce_part: Vec<f64> = total.iter().zip(&latency).map(|(a, b)| a - b).collect();
        st.evidence.total[i].add(&total);
        st.evidence.ce[i].add(&ce_part);
    }
    let params: Vec<(&str, &Var)> = st
        .theta_names
        .iter()
        .map(String::as_str)
        .zip(st.theta.iter())
        .collect();
    st.adam.step(&params, &grads, cfg.theta_lr)?;
    let lat_us = lat.to_scalar::<f32>()?;
    let factor = loss_form.ce_factor(lat_us as f64);
    ensure!(
        factor.is_finite() && factor > 0.0,
        "epoch {}, step {step}: the loss's factor on the cross-entropy is {factor} (expected latency {lat_us} µs)",
        epoch + 1
    );
    Ok((grads, factor))
}

/// The configuration as the run folder keeps it, and its table: the table and data at absolute paths
/// (so the run resumes from any folder) and the table's hash, taken from the very bytes the table is
/// read from. A resume takes the folder's own configuration when `cfg` is the same run's (paths
/// compared after making them absolute), and refuses a table that changed since the run started.
fn pinned(cfg: &SearchConfig, run: &RunDir, resume: bool) -> Result<(SearchConfig, Lut)> {
    let absolute = |c: &SearchConfig| SearchConfig {
        lut: mobile_core::files::absolute(&c.lut),
        data: data::absolute_spec(&c.data),
        lut_sha256: None,
        ..c.clone()
    };
    let mut cfg = if resume {
        run.resumed(cfg, "search", |a, b| absolute(a) == absolute(b))?
    } else {
        absolute(cfg)
    };
    let text =
        std::fs::read_to_string(&cfg.lut).map_err(|e| mobile_core::Error::io(&cfg.lut, e))?;
    let now = mobile_core::files::sha256(text.as_bytes());
    match &cfg.lut_sha256 {
        Some(then) => ensure!(
            &now == then,
            "{}: the table changed since the run started (SHA-256 {then} then, {now} now): a re-profiled \
             table would give the search other latencies; put the original table back or start a new run",
            cfg.lut.display()
        ),
        // a new run records it; a run folder of an earlier release has none and is not checked
        None if !resume => cfg.lut_sha256 = Some(now),
        None => {}
    }
    let lut = Lut::from_json(&text, &cfg.lut)?;
    Ok((cfg, lut))
}

/// Runs a search into `run` (a new run, or `resume` an interrupted one from its folder). `progress` is
/// called after every step; setting `cancel` stops after the current step (the last checkpoint stays).
/// The run folder's report is written apart (`search_report::write`), from the folder alone.
pub fn search(
    cfg: &SearchConfig,
    run: &RunDir,
    resume: bool,
    device: &Device,
    progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> Result<SearchResult> {
    cfg.check()?;
    let (cfg, lut) = pinned(cfg, run, resume)?;
    let cfg = &cfg;
    let space = lut.space.clone();
    let table = LatencyTable::new(&lut, &space, cfg.dtype)?;
    if let Some(t) = cfg.target_ms {
        decision::check_target(&table, t * 1000.0)
            .with_context(|| format!("--target-ms {t} with {}", cfg.lut.display()))?;
    }
    if !resume {
        run.create(cfg, "search")?;
    }
    let data = prepare_data(cfg, &space)?;
    let mut st = State::new(&space, cfg, device)?;
    if resume {
        if run.has_checkpoint() {
            st.load(&run.checkpoint())?;
        }
        truncate_metrics(&run.metrics(), st.epochs_done)?;
    }

    let steps_per_epoch = data::batch_count(data.weights.len(), cfg.batch_size, true);
    let theta_per_pass = data::batch_count(data.theta.len(), cfg.batch_size, true);
    let total_steps = (steps_per_epoch * cfg.epochs) as u64;
    let named = st.net.params.handles();
    let interleaved = cfg.theta_schedule == ThetaSchedule::Interleaved;
    let joint = cfg.theta_schedule == ThetaSchedule::Joint;

    while st.epochs_done < cfg.epochs {
        let epoch = st.epochs_done;
        let started = Instant::now();
        let theta_on = epoch >= cfg.freeze_epochs;
        let mut lat_now = table.expected_us(&st.probs()?);
        let (mut train, mut theta, mut lr) = (Tally::default(), Tally::default(), cfg.lr);
        let mut tau = cfg.tau_at(epoch, st.weight_steps, total_steps);
        let mut loader = data::batches(
            data.source.clone(),
            &data.weights,
            &data.train,
            epoch as u64,
        )?;
        let steps = loader.len();
        let phase = match cfg.theta_schedule {
            ThetaSchedule::Phase => "weights",
            ThetaSchedule::Interleaved | ThetaSchedule::Joint => "search",
        };
        for step in 0..steps {
            let Some(batch) = loader.next() else { break };
            stop_if_cancelled(cancel, epoch, run)?;
            let batch = batch_tensors(batch?, device)?;
            lr = Schedule::Cosine.lr(cfg.lr, epoch, st.weight_steps, total_steps);
            tau = cfg.tau_at(epoch, st.weight_steps, total_steps);
            let at = (epoch, step, run);
            let learn = joint && theta_on && (step + 1) % cfg.theta_every == 0;
            let (ce, v, ok, sampled) = st.batch_ce(cfg, &batch, tau, learn, at)?;
            if learn {
                // one backward trains both: θ on the whole loss, the weights on its cross-entropy part
                let (grads, factor) = theta_step(&mut st, cfg, &table, &ce, &sampled, at)?;
                st.sgd.step_scaled(&named, &grads, lr, 1.0 / factor)?;
                lat_now = table.expected_us(&st.probs()?);
            } else {
                let grads = ce.backward()?;
                st.sgd.step(&named, &grads, lr)?;
            }
            st.weight_steps += 1;
            train.add(v, ok, batch.1.dim(0)?);
            if interleaved && (step + 1) % cfg.theta_every == 0 {
                let at = (epoch, step, run);
                lat_now = theta_batch(
                    &mut st, cfg, &data, &table, tau, theta_on, device, at, &mut theta,
                )?;
            }
            progress(&Progress {
                epoch,
                epochs: cfg.epochs,
                phase,
                step: step + 1,
                steps,
                ce: train.ce(),
                acc: train.acc(),
                theta_ce: theta.ce(),
                theta_acc: theta.acc(),
                expected_latency_us: lat_now,
                tau,
                end_of_epoch: interleaved && step + 1 == steps,
                data: (interleaved && step + 1 == steps).then(|| loader.stats()),
            });
        }
        let fed = loader.stats();
        drop(loader);
        if !interleaved {
            // the paper's phase: one pass over θ's split (while frozen, only evaluated); the joint
            // schedule's held-out evaluation of the super net
            let learn = theta_on && !joint;
            for step in 0..theta_per_pass {
                stop_if_cancelled(cancel, epoch, run)?;
                let at = (epoch, step, run);
                lat_now = theta_batch(
                    &mut st, cfg, &data, &table, tau, learn, device, at, &mut theta,
                )?;
                progress(&Progress {
                    epoch,
                    epochs: cfg.epochs,
                    phase: if joint { "held-out" } else { "theta" },
                    step: step + 1,
                    steps: theta_per_pass,
                    ce: theta.ce(),
                    acc: theta.acc(),
                    theta_ce: theta.ce(),
                    theta_acc: theta.acc(),
                    expected_latency_us: lat_now,
                    tau,
                    end_of_epoch: step + 1 == theta_per_pass,
                    data: (step + 1 == theta_per_pass).then_some(fed),
                });
            }
        }
        let probs = st.probs()?;
        let seconds = started.elapsed().as_secs_f64();
        let winners = decision::argmax_each(&probs);
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            tau: cfg.tau_at(epoch, st.weight_steps - steps as u64, total_steps),
            lr,
            theta_trained: theta_on,
            train_ce: train.ce(),
            train_acc: train.acc(),
            theta_ce: theta.ce(),
            theta_acc: theta.acc(),
            expected_latency_us: table.expected_us(&probs),
            entropy: mean_entropy(&probs),
            seconds,
            images_per_second: (train.seen + theta.seen) as f64 / seconds,
            data_wait_s: fed.waited_s,
            loader_images_per_second: fed.images_per_second,
            tau_end: tau,
            theta_steps: st.adam.steps,
            layer_entropy: probs.iter().map(|p| entropy(p)).collect(),
            argmax_latency_us: table.latency_of(&winners),
            winners,
        };
        run.end_epoch(&metrics, || {
            st.epochs_done += 1;
            st.save(
                &run.checkpoint(),
                cfg.tau_at(st.epochs_done, st.weight_steps, total_steps),
            )
        })?;
    }
    finish(cfg, run, &lut, &table, &st)
}

/// Mean over layers of the entropy of P_θ (nats).
pub fn mean_entropy(probs: &[Vec<f64>]) -> f64 {
    probs.iter().map(|p| entropy(p)).sum::<f64>() / probs.len().max(1) as f64
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

/// Writes the end results: θ and P_θ with each layer's decision, the architecture to train (the most
/// likely one, within the target if one is set) and samples from P_θ.
fn finish(
    cfg: &SearchConfig,
    run: &RunDir,
    lut: &Lut,
    table: &LatencyTable,
    st: &State,
) -> Result<SearchResult> {
    let probs = st.probs()?;
    let thetas: Vec<Vec<f64>> = st
        .theta
        .iter()
        .map(|t| {
            Ok(t.as_tensor()
                .to_vec1::<f32>()?
                .into_iter()
                .map(f64::from)
                .collect())
        })
        .collect::<Result<_>>()?;
    let noise_margin = decision::noise_margin(cfg.theta_lr, st.adam.steps);
    let layers: Vec<LayerResult> = st
        .net
        .layers
        .iter()
        .zip(&thetas)
        .zip(&probs)
        .enumerate()
        .map(|(i, ((l, t), p))| LayerResult {
            candidates: l.candidates.clone(),
            theta: t.clone(),
            probs: p.clone(),
            decision: Some(LayerDecision::of(t, p, st.evidence.layer(i))),
        })
        .collect();
    let pick = |indices: &[usize]| -> Vec<Block> {
        layers
            .iter()
            .zip(indices)
            .map(|(l, &i)| l.candidates[i])
            .collect()
    };
    let winners = decision::argmax_each(&probs);
    let chosen = match cfg.target_ms {
        Some(t) => decision::most_likely_within(table, &probs, 0.9 * t * 1000.0, t * 1000.0)
            .with_context(|| {
                format!("no architecture of the space lies within 0.9–1.0 × the target {t} ms")
            })?,
        None => winners.clone(),
    };
    let best = candidate("searched-best", pick(&chosen), &probs, st, lut, run)?;
    let argmax = if chosen != winners {
        Some(candidate(
            "searched-argmax",
            pick(&winners),
            &probs,
            st,
            lut,
            run,
        )?)
    } else {
        None
    };
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
        theta_steps: st.adam.steps,
        noise_margin,
        target_ms: cfg.target_ms,
        argmax,
    };
    write_atomic(
        &run.result(),
        serde_json::to_string_pretty(&result)?.as_bytes(),
    )?;
    Ok(result)
}

/// Reads a search run's metrics.
pub fn read_metrics(run: &RunDir) -> Result<Vec<EpochMetrics>> {
    crate::runs::read_metrics(run)
}

/// Reads a finished search's `result.json`.
pub fn read_result(run: &RunDir) -> Result<SearchResult> {
    let path = run.result();
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{}: no search result (is the search finished?)",
            path.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a search result", path.display()))
}
