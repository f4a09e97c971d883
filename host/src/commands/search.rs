//! `fbnet search`: DNAS on the host: trains the stochastic super net of the table's space and samples
//! architectures from the learned distribution.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use candle_core::Device;
use fbnet::search::{
    LossForm, Noise, Progress, Relaxation, RunDir, SearchConfig, SearchResult, TargetForm,
    TauAnneal, ThetaSchedule, search,
};

use super::RunArgs;
use crate::progress::PhaseBars;

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
    /// The paper's settings instead of the defaults: phases of whole epochs, the soft relaxation, τ
    /// decayed per epoch, lr 0.1, θ lr 1e-2 (flags given beside it still apply).
    #[arg(long)]
    pub paper: bool,
    /// When θ learns: θ batches interleaved with the weight batches, the paper's phases, or joint
    /// (from the weight batches' own backward; θ's split only evaluated).
    #[arg(long, value_enum)]
    pub theta_schedule: Option<ThetaSchedule>,
    /// Weight batches per θ step (interleaved, joint).
    #[arg(long, default_value_t = defaults().theta_every)]
    pub theta_every: usize,
    /// soft: the paper's mixture of all candidates; hard: one sampled candidate per layer and batch
    /// (straight-through Gumbel, GDAS), about a ninth of the work per step.
    #[arg(long, value_enum)]
    pub relaxation: Option<Relaxation>,
    /// Gumbel noise per image or per batch (soft relaxation; the hard one samples a path per batch).
    #[arg(long, value_enum, default_value_t = defaults().gumbel)]
    pub gumbel: Noise,
    /// Initial learning rate of the weights (SGD, momentum 0.9, cosine decay).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Weight decay of the weights.
    #[arg(long, default_value_t = defaults().weight_decay)]
    pub weight_decay: f64,
    /// Learning rate of θ (Adam).
    #[arg(long)]
    pub theta_lr: Option<f64>,
    /// Weight decay of θ.
    #[arg(long, default_value_t = defaults().theta_weight_decay)]
    pub theta_weight_decay: f64,
    /// Initial Gumbel-softmax temperature.
    #[arg(long, default_value_t = defaults().tau)]
    pub tau: f64,
    /// Final temperature (per-step annealing).
    #[arg(long, default_value_t = defaults().tau_end)]
    pub tau_end: f64,
    /// exponential or linear per step from --tau to --tau-end, or the paper's per epoch (--tau-decay).
    #[arg(long, value_enum)]
    pub tau_anneal: Option<TauAnneal>,
    /// Temperature decay per epoch (`--tau-anneal epoch`): τ_e = τ_0 · exp(−decay · e).
    #[arg(long, default_value_t = defaults().tau_decay)]
    pub tau_decay: f64,
    /// multiplicative: the paper's CE·α·(log LAT)^β; additive: NNI's CE + α·LAT^β.
    #[arg(long, value_enum, default_value_t = defaults().loss)]
    pub loss: LossForm,
    #[arg(long, default_value_t = defaults().alpha)]
    pub alpha: f64,
    #[arg(long, default_value_t = defaults().beta)]
    pub beta: f64,
    /// Latency the phone must meet, ms at --dtype (from the table): the search pulls its expected
    /// latency there and picks the most likely architecture within 0.9–1.0 × the target.
    #[arg(long)]
    pub target_ms: Option<f64>,
    /// Form of the target's loss: elastic CE + λ·|ln(LAT/T)|, or MnasNet's CE·(LAT/T)^λ.
    #[arg(long, value_enum, default_value_t = defaults().target_form)]
    pub target_form: TargetForm,
    /// λ of the target's loss.
    #[arg(long, default_value_t = defaults().target_weight)]
    pub target_weight: f64,
    /// Architectures to sample from P_θ at the end.
    #[arg(long, default_value_t = defaults().samples)]
    pub samples: usize,
    #[command(flatten)]
    pub run: RunArgs,
}

impl SearchArgs {
    fn config(&self) -> anyhow::Result<SearchConfig> {
        let lut = self.lut.clone().context("--lut is required")?;
        let base = if self.paper {
            defaults().paper()
        } else {
            defaults()
        };
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
            lr: self.lr.unwrap_or(base.lr),
            momentum: base.momentum,
            weight_decay: self.weight_decay,
            theta_lr: self.theta_lr.unwrap_or(base.theta_lr),
            theta_weight_decay: self.theta_weight_decay,
            theta_schedule: self.theta_schedule.unwrap_or(base.theta_schedule),
            theta_every: self.theta_every,
            relaxation: self.relaxation.unwrap_or(base.relaxation),
            gumbel: self.gumbel,
            tau: self.tau,
            tau_end: self.tau_end,
            tau_anneal: self.tau_anneal.unwrap_or(base.tau_anneal),
            tau_decay: self.tau_decay,
            loss: self.loss,
            alpha: self.alpha,
            beta: self.beta,
            target_ms: self.target_ms,
            target_form: self.target_form,
            target_weight: self.target_weight,
            samples: self.samples,
            augment: !self.run.no_augment,
            seed: self.run.seed,
            workers: self.run.workers(),
            lut_sha256: None,
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
    let mut bars = PhaseBars::new(true);
    let mut show = |p: &Progress| {
        let b = bars.at(p.epoch, p.phase, p.steps);
        b.set_prefix(format!("epoch {}/{} {}", p.epoch + 1, p.epochs, p.phase));
        if p.end_of_epoch {
            // one line per epoch that stays (also in logs, where bars are hidden)
            b.suspend(|| {
                println!(
                    "epoch {}/{}: θ-split CE {:.3} acc {:.1}%, E[LAT] {:.3} ms, τ {:.2}{}",
                    p.epoch + 1,
                    p.epochs,
                    p.theta_ce,
                    100.0 * p.theta_acc,
                    p.expected_latency_us / 1000.0,
                    p.tau,
                    p.data.map(super::fed_line).unwrap_or_default()
                )
            });
        }
        b.set_position(p.step as u64);
        b.set_message(format!(
            "epoch {}/{} {:7} CE {:.3} acc {:.1}% E[LAT] {:.3} ms τ {:.2}",
            p.epoch + 1,
            p.epochs,
            p.phase,
            p.ce,
            100.0 * p.acc,
            p.expected_latency_us / 1000.0,
            p.tau
        ));
    };
    let result = search(cfg, run, resume, device, &mut show, cancel);
    bars.end();
    let result = result?;
    fbnet::search_report::write(run)?;
    for w in fbnet::search_report::run_warnings(run)? {
        eprintln!("warning: {w}");
    }
    let counts = result.decision_counts();
    let undecided = counts.undecided;
    if undecided > 0 {
        eprintln!(
            "warning: {undecided} of {} layers are undecided (after {} θ steps their gradients favour the \
             winner by less than two standard errors): their choice is not a preference of the search; \
             see report.md",
            result.layers.len(),
            result.theta_steps
        );
    }
    println!(
        "decided: {} of {} layers, {} of them on accuracy",
        counts.decided,
        result.layers.len(),
        counts.on_accuracy
    );
    Ok(result)
}

pub fn run(args: SearchArgs) -> anyhow::Result<()> {
    let (cfg, run, resume) = match &args.run.resume {
        Some(dir) => {
            let run = RunDir(dir.clone());
            (run.load_config("search")?, run, true)
        }
        None => {
            anyhow::ensure!(args.epochs > 0, "--epochs must be at least 1");
            let cfg = args.config()?;
            let out = args.run.out.clone().unwrap_or_else(|| {
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
    let device = args.run.device()?;
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

#[derive(clap::Args)]
pub struct ReportArgs {
    /// A finished search's run folder.
    pub run: PathBuf,
}

/// `fbnet report RUN`: the pictures and report.md of a search, from its folder.
pub fn report(args: ReportArgs) -> anyhow::Result<()> {
    let run = RunDir(args.run);
    fbnet::search_report::write(&run)?;
    println!("report {}", run.0.join("report.md").display());
    Ok(())
}
