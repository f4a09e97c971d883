//! `fbnet search`: DNAS on the host: trains the stochastic super net of the table's space and samples
//! architectures from the learned distribution.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use candle_core::Device;
use fbnet::search::{LossForm, Progress, RunDir, SearchConfig, SearchResult, search};
use indicatif::ProgressBar;

use crate::progress::bar;

/// The flags' defaults are the library's, so the two cannot drift apart.
fn defaults() -> SearchConfig {
    SearchConfig::default()
}

#[derive(clap::Args)]
pub struct SearchArgs {
    /// The latency table (from `fbnet profile`); the search runs on its space.
    #[arg(long, required_unless_present = "resume")]
    pub lut: Option<PathBuf>,
    /// Dataset: `fashion-mnist` (Debian's dataset-fashion-mnist), `fashion-mnist:DIR`, `cifar10:DIR`
    /// (binary batches) or an image folder `ROOT/{train,val|test}/<class>/*.jpg`.
    #[arg(long, default_value_t = defaults().data)]
    pub data: String,
    /// Latencies of this dtype drive the search.
    #[arg(long, default_value_t = defaults().dtype.to_string())]
    pub dtype: String,
    /// Search on a random subset of this many classes (the paper's proxy task).
    #[arg(long)]
    pub classes: Option<usize>,
    /// Seed of the class subset.
    #[arg(long, default_value_t = defaults().class_seed)]
    pub class_seed: u64,
    /// Use at most this many training images (stratified), for quick searches.
    #[arg(long)]
    pub max_images: Option<usize>,
    /// Fraction of the training images for the weights; the rest train θ.
    #[arg(long, default_value_t = defaults().split)]
    pub split: f64,
    #[arg(long, default_value_t = defaults().epochs)]
    pub epochs: usize,
    /// Epochs before θ starts learning (default: a ninth of the epochs, as the paper's 10 of 90).
    #[arg(long)]
    pub freeze_epochs: Option<usize>,
    #[arg(long, default_value_t = defaults().batch_size)]
    pub batch_size: usize,
    /// Initial learning rate of the weights (SGD, momentum 0.9, cosine decay).
    #[arg(long, default_value_t = defaults().lr)]
    pub lr: f64,
    /// Weight decay of the weights.
    #[arg(long, default_value_t = defaults().weight_decay)]
    pub weight_decay: f64,
    /// Learning rate of θ (Adam).
    #[arg(long, default_value_t = defaults().theta_lr)]
    pub theta_lr: f64,
    /// Weight decay of θ.
    #[arg(long, default_value_t = defaults().theta_weight_decay)]
    pub theta_weight_decay: f64,
    /// Initial Gumbel-softmax temperature.
    #[arg(long, default_value_t = defaults().tau)]
    pub tau: f64,
    /// Temperature decay per epoch: τ_e = τ_0 · exp(−decay · e).
    #[arg(long, default_value_t = defaults().tau_decay)]
    pub tau_decay: f64,
    /// multiplicative: the paper's CE·α·(log LAT)^β; additive: NNI's CE + α·LAT^β.
    #[arg(long, value_enum, default_value_t = defaults().loss)]
    pub loss: LossForm,
    #[arg(long, default_value_t = defaults().alpha)]
    pub alpha: f64,
    #[arg(long, default_value_t = defaults().beta)]
    pub beta: f64,
    /// Architectures to sample from P_θ at the end.
    #[arg(long, default_value_t = defaults().samples)]
    pub samples: usize,
    /// Train without random crops and flips.
    #[arg(long)]
    pub no_augment: bool,
    /// Fixes weight init, Gumbel noise, data order and augmentation.
    #[arg(long, default_value_t = defaults().seed)]
    pub seed: u64,
    /// Threads decoding images ahead of the training step.
    #[arg(long, default_value_t = defaults().workers)]
    pub workers: usize,
    /// Where to train: `cpu`, or `cuda` (GPU 0; needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// The run folder (default: runs/search-<space>-seed<seed>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the interrupted run in this folder, with the configuration it was started with.
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "out")]
    pub resume: Option<PathBuf>,
}

impl SearchArgs {
    fn config(&self) -> anyhow::Result<SearchConfig> {
        let lut = self.lut.clone().context("--lut is required")?;
        Ok(SearchConfig {
            data: self.data.clone(),
            lut,
            dtype: self.dtype.parse()?,
            classes: self.classes,
            class_seed: self.class_seed,
            max_images: self.max_images,
            split: self.split,
            epochs: self.epochs,
            freeze_epochs: self
                .freeze_epochs
                .unwrap_or(self.epochs.div_ceil(9).min(self.epochs - 1)),
            batch_size: self.batch_size,
            lr: self.lr,
            momentum: defaults().momentum,
            weight_decay: self.weight_decay,
            theta_lr: self.theta_lr,
            theta_weight_decay: self.theta_weight_decay,
            tau: self.tau,
            tau_decay: self.tau_decay,
            loss: self.loss,
            alpha: self.alpha,
            beta: self.beta,
            samples: self.samples,
            augment: !self.no_augment,
            seed: self.seed,
            workers: self.workers,
        })
    }
}

/// Runs a search with progress bars and one line per epoch.
pub fn search_with_progress(
    cfg: &SearchConfig,
    run: &RunDir,
    resume: bool,
    device: &Device,
    cancel: &AtomicBool,
) -> anyhow::Result<SearchResult> {
    let mut current: Option<(usize, &'static str, ProgressBar)> = None;
    let mut show = |p: &Progress| {
        if current
            .as_ref()
            .is_none_or(|(e, ph, _)| *e != p.epoch || *ph != p.phase)
        {
            if let Some((_, _, b)) = current.take() {
                b.finish();
            }
            let b = bar(p.steps, 0);
            b.set_prefix(format!("epoch {}/{} {}", p.epoch + 1, p.epochs, p.phase));
            current = Some((p.epoch, p.phase, b));
        }
        if let Some((_, _, b)) = &current {
            if p.phase == "theta" && p.step == p.steps {
                // one line per epoch that stays (also in logs, where bars are hidden)
                b.suspend(|| {
                    println!(
                        "epoch {}/{}: θ-split CE {:.3} acc {:.1}%, E[LAT] {:.2} ms",
                        p.epoch + 1,
                        p.epochs,
                        p.ce,
                        100.0 * p.acc,
                        p.expected_latency_us / 1000.0
                    )
                });
            }
            b.set_position(p.step as u64);
            b.set_message(format!(
                "epoch {}/{} {:7} CE {:.3} acc {:.1}% E[LAT] {:.2} ms",
                p.epoch + 1,
                p.epochs,
                p.phase,
                p.ce,
                100.0 * p.acc,
                p.expected_latency_us / 1000.0
            ));
        }
    };
    let result = search(cfg, run, resume, device, &mut show, cancel);
    if let Some((_, _, b)) = current.take() {
        b.finish();
    }
    result
}

pub fn run(args: SearchArgs) -> anyhow::Result<()> {
    let (cfg, run, resume) = match &args.resume {
        Some(dir) => {
            let run = RunDir(dir.clone());
            (run.load_config("search")?, run, true)
        }
        None => {
            anyhow::ensure!(args.epochs > 0, "--epochs must be at least 1");
            let cfg = args.config()?;
            let out = args.out.clone().unwrap_or_else(|| {
                let space = mobile_core::lut::Lut::load(&cfg.lut)
                    .map(|l| l.space.name)
                    .unwrap_or_else(|_| "space".into());
                PathBuf::from(format!("runs/search-{space}-seed{}", cfg.seed))
            });
            (cfg, RunDir(out), false)
        }
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancel);
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))?;
    let device = super::train::device(&args.device)?;
    let result = search_with_progress(&cfg, &run, resume, &device, &cancel);
    let result = result?;
    println!("run folder {}", run.0.display());
    let show_candidate = |c: &fbnet::search::Candidate| {
        let lat: Vec<String> = c
            .latency_us
            .iter()
            .map(|(d, us)| format!("{d} {:.2} ms", us / 1000.0))
            .collect();
        println!(
            "  {:20} {}  [{}; {:.1}M MACs, {:.2}M params]",
            c.name,
            c.arch,
            lat.join(", "),
            c.macs as f64 / 1e6,
            c.params as f64 / 1e6
        );
    };
    println!("most likely architecture:");
    show_candidate(&result.best);
    println!("samples from P_θ:");
    result.samples.iter().for_each(show_candidate);
    println!("report {}", run.0.join("report.md").display());
    Ok(())
}
