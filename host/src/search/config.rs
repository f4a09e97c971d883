//! What a search is started with: every setting of `fbnet search`, written to the run folder's
//! `config.json`, with the defaults, the paper's settings, and the checks that refuse settings which make
//! no sense before anything is read or written.

use std::path::PathBuf;

use anyhow::{Result, ensure};
use mobile_core::onnx::Dtype;
use serde::{Deserialize, Serialize};

use crate::latency::LatencyLoss;

/// Which form of the latency-aware loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LossForm {
    /// The paper's `CE · α · (log LAT)^β`.
    Multiplicative,
    /// NNI's `CE + α · LAT^β`.
    Additive,
}

/// When θ learns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ThetaSchedule {
    /// One θ batch after every `theta_every` weight batches, cycling through θ's split.
    Interleaved,
    /// The paper's: a whole epoch of weight batches, then a whole pass over θ's split.
    Phase,
    /// Single-level, as SNAS trains: θ learns from the weight batches themselves (every `theta_every`-th),
    /// from the same backward that trains the weights, so every training image informs θ at no extra
    /// pass; θ's split is held out and only evaluated, once per epoch.
    Joint,
}

/// How the temperature τ falls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TauAnneal {
    /// Per step, geometrically from `tau` to `tau_end` over the run.
    Exponential,
    /// Per step, linearly from `tau` to `tau_end` over the run.
    Linear,
    /// The paper's: `tau · exp(−tau_decay · epoch)`, constant within an epoch.
    Epoch,
}

/// How many Gumbel draws a batch gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Noise {
    /// One mixture (soft) or path (hard) per image: θ's gradient averages over as many draws as
    /// images, and in the hard relaxation every candidate trains on its share of every batch.
    Image,
    /// One mixture or path for the whole batch.
    Batch,
    /// No noise: the mixture is `softmax(θ / τ)` itself (DARTS's continuous relaxation), so θ's
    /// gradient varies only with the batch. Soft relaxation only (a hard path would be the argmax).
    None,
}

/// How the super net's layers combine their candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Relaxation {
    /// The paper's `Σ m_i · b_i(x)` over every candidate.
    Soft,
    /// GDAS's straight-through Gumbel: each layer runs only the candidate sampled for each image (the
    /// images grouped by candidate) or for the batch, so a step costs about one candidate's work; θ
    /// learns through the soft sample's gradient.
    Hard,
}

/// The form of the latency target's loss (see `LatencyLoss`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TargetForm {
    /// `CE + λ · |ln(LAT / T)|`.
    Elastic,
    /// `CE · (LAT / T)^λ` (MnasNet's soft reward).
    Mnas,
}

/// Everything a search depends on; written to `config.json` so a run can be reproduced from its folder.
/// Fields added after the first release read, when a run folder lacks them, as that release ran.
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
    #[serde(default = "legacy::theta_schedule")]
    pub theta_schedule: ThetaSchedule,
    /// Weight batches per θ step (interleaved and joint schedules).
    #[serde(default = "legacy::theta_every")]
    pub theta_every: usize,
    #[serde(default = "legacy::relaxation")]
    pub relaxation: Relaxation,
    #[serde(default = "legacy::gumbel")]
    pub gumbel: Noise,
    /// Gumbel-softmax temperature at the start…
    pub tau: f64,
    /// …at the end of the run (per-step annealing)…
    #[serde(default = "legacy::tau_end")]
    pub tau_end: f64,
    #[serde(default = "legacy::tau_anneal")]
    pub tau_anneal: TauAnneal,
    /// …or its decay per epoch (`epoch` annealing): τ_e = τ_0 · exp(−decay · e).
    pub tau_decay: f64,
    pub loss: LossForm,
    pub alpha: f64,
    pub beta: f64,
    /// The latency the phone must meet, ms at `dtype` (from the table): the loss pulls the expected
    /// latency to it and the searched-best is the most likely architecture within [0.9 T, T].
    #[serde(default)]
    pub target_ms: Option<f64>,
    #[serde(default = "legacy::target_form")]
    pub target_form: TargetForm,
    /// λ of the target's loss.
    #[serde(default = "legacy::target_weight")]
    pub target_weight: f64,
    /// Architectures sampled from P_θ at the end (paper: 6).
    pub samples: usize,
    /// Random crops and flips on the training images.
    pub augment: bool,
    pub seed: u64,
    /// Threads decoding and augmenting images ahead of the training step.
    pub workers: usize,
    /// SHA-256 of the table file when the run started: a resume refuses a table re-profiled at the same
    /// path since (absent in run folders of earlier releases, which are not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lut_sha256: Option<String>,
}

/// What a configuration written before a field existed meant by its absence: the schedule of the first
/// release (phases, soft mixture, per-batch noise, τ per epoch, no target).
mod legacy {
    use super::*;
    pub fn theta_schedule() -> ThetaSchedule {
        ThetaSchedule::Phase
    }
    pub fn theta_every() -> usize {
        1
    }
    pub fn relaxation() -> Relaxation {
        Relaxation::Soft
    }
    pub fn gumbel() -> Noise {
        Noise::Batch
    }
    pub fn tau_end() -> f64 {
        0.5
    }
    pub fn tau_anneal() -> TauAnneal {
        TauAnneal::Epoch
    }
    pub fn target_form() -> TargetForm {
        TargetForm::Elastic
    }
    pub fn target_weight() -> f64 {
        1.0
    }
}

impl Default for SearchConfig {
    /// The defaults, chosen by measurement on a laptop budget (README, "Search"): θ learning from every
    /// weight batch's own backward (joint: as many θ steps as interleaved θ batches give, without their
    /// passes, 0.65x the time) at ten times the paper's rate, the soft relaxation (single paths did not train the super
    /// net in short runs), τ from 5 to 2 per step (down to 0.5 the mixture turned nearly one-hot and the
    /// super net's accuracy fell), noise per image (it moved θ further than noise per batch).
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
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 1e-4,
            theta_lr: 0.1,
            theta_weight_decay: 5e-4,
            theta_schedule: ThetaSchedule::Joint,
            theta_every: 1,
            relaxation: Relaxation::Soft,
            gumbel: Noise::Image,
            tau: 5.0,
            tau_end: 2.0,
            tau_anneal: TauAnneal::Exponential,
            tau_decay: 0.045,
            loss: LossForm::Multiplicative,
            alpha: 0.2,
            beta: 0.6,
            target_ms: None,
            target_form: TargetForm::Elastic,
            target_weight: 1.0,
            lut_sha256: None,
            samples: 6,
            augment: true,
            seed: 0,
            workers: 1,
        }
    }
}

impl SearchConfig {
    /// The paper's settings (section 3.3, appendix A) on this configuration: phases of whole epochs,
    /// the soft mixture, τ from 5 decayed by exp(−0.045) per epoch, SGD lr 0.1 and Adam lr 1e-2 for θ.
    pub fn paper(self) -> SearchConfig {
        SearchConfig {
            lr: 0.1,
            theta_lr: 1e-2,
            theta_weight_decay: 5e-4,
            theta_schedule: ThetaSchedule::Phase,
            relaxation: Relaxation::Soft,
            tau: 5.0,
            tau_anneal: TauAnneal::Epoch,
            tau_decay: 0.045,
            loss: LossForm::Multiplicative,
            alpha: 0.2,
            beta: 0.6,
            ..self
        }
    }

    pub fn latency_loss(&self) -> LatencyLoss {
        let (alpha, beta) = (self.alpha, self.beta);
        if let Some(t) = self.target_ms {
            let (target_us, weight) = (t * 1000.0, self.target_weight);
            return match self.target_form {
                TargetForm::Elastic => LatencyLoss::Elastic { target_us, weight },
                TargetForm::Mnas => LatencyLoss::Mnas { target_us, weight },
            };
        }
        match self.loss {
            LossForm::Multiplicative => LatencyLoss::Multiplicative { alpha, beta },
            LossForm::Additive => LatencyLoss::Additive { alpha, beta },
        }
    }

    /// The temperature at weight step `step` (0-based, of `total`) in epoch `epoch` (0-based).
    pub fn tau_at(&self, epoch: usize, step: u64, total: u64) -> f64 {
        let f = step as f64 / total.max(1) as f64;
        match self.tau_anneal {
            TauAnneal::Epoch => self.tau * (-self.tau_decay * epoch as f64).exp(),
            TauAnneal::Exponential => self.tau * (self.tau_end / self.tau).powf(f),
            TauAnneal::Linear => self.tau + (self.tau_end - self.tau) * f,
        }
    }

    /// Checks the values that do not need the table (the target's reachability needs it).
    pub fn check(&self) -> Result<()> {
        ensure!(self.epochs > 0, "--epochs must be at least 1");
        ensure!(self.batch_size > 0, "--batch-size must be at least 1");
        ensure!(
            self.theta_every > 0,
            "--theta-every must be at least 1 (weight batches per θ batch)"
        );
        ensure!(
            self.split > 0.0 && self.split < 1.0,
            "--split {} must be between 0 and 1",
            self.split
        );
        ensure!(
            self.tau.is_finite() && self.tau > 0.0,
            "--tau {} must be positive",
            self.tau
        );
        if self.tau_anneal != TauAnneal::Epoch {
            ensure!(
                self.tau_end.is_finite() && self.tau_end > 0.0 && self.tau_end <= self.tau,
                "--tau-end {} must be positive and at most --tau {}: the temperature anneals down",
                self.tau_end,
                self.tau
            );
        }
        for (name, v) in [
            ("lr", self.lr),
            ("theta-lr", self.theta_lr),
            ("alpha", self.alpha),
            ("beta", self.beta),
            ("target-weight", self.target_weight),
        ] {
            ensure!(
                v.is_finite() && v >= 0.0,
                "--{name} {v} must be a non-negative number"
            );
        }
        ensure!(
            !(self.relaxation == Relaxation::Hard && self.gumbel == Noise::None),
            "--gumbel none needs --relaxation soft: a hard path without noise is always the argmax"
        );
        if let Some(t) = self.target_ms {
            ensure!(
                t.is_finite() && t > 0.0,
                "--target-ms {t} must be a positive number of milliseconds"
            );
        }
        Ok(())
    }
}
