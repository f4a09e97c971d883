//! `fbnet train`: trains an architecture from scratch (a search result, an architecture file or a
//! built-in) and keeps its best epoch for export.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use candle_core::Device;
use fbnet::optim::Schedule;
use fbnet::runs::RunDir;
use fbnet::search::SearchConfig;
use fbnet::train::{TrainConfig, TrainProgress, TrainResult, TrainRun, train};

use super::RunArgs;
use crate::progress::PhaseBars;

fn defaults() -> TrainConfig {
    TrainConfig::default()
}

#[derive(clap::Args)]
pub struct TrainArgs {
    /// The architecture: a search run folder (its most likely architecture), an architecture JSON file
    /// or a built-in name (placed in the space of --lut when given: `fbnet-b --lut small.json`).
    #[arg(required_unless_present = "resume")]
    pub arch: Option<String>,
    /// The latency table whose prediction the exported model carries (default: a search run's table).
    #[arg(long)]
    pub lut: Option<PathBuf>,
    /// Dataset, as for `fbnet search`; its test split validates every epoch.
    #[arg(long, default_value_t = defaults().data)]
    pub data: String,
    /// Train on a random subset of this many classes (default: a search run's subset).
    #[arg(long)]
    pub classes: Option<usize>,
    #[arg(long)]
    pub class_seed: Option<u64>,
    /// Use at most this many training images (stratified).
    #[arg(long)]
    pub max_images: Option<usize>,
    /// Report accuracy on at most this many test images (stratified).
    #[arg(long)]
    pub max_val_images: Option<usize>,
    /// Fraction of the training images held out to choose the best epoch (never the test images);
    /// 0 keeps the last epoch.
    #[arg(long, default_value_t = defaults().val_split)]
    pub val_split: f64,
    #[arg(long, default_value_t = defaults().epochs)]
    pub epochs: usize,
    #[arg(long, default_value_t = defaults().batch_size)]
    pub batch_size: usize,
    /// Initial learning rate (SGD, momentum 0.9).
    #[arg(long, default_value_t = defaults().lr)]
    pub lr: f64,
    #[arg(long, default_value_t = defaults().weight_decay)]
    pub weight_decay: f64,
    /// `step` (×0.1 at the given epochs) or `cosine`.
    #[arg(long, default_value = "step")]
    pub schedule: String,
    /// Epochs at which a step schedule multiplies the rate by 0.1 (default: ¼, ½, ¾ of the epochs).
    #[arg(long, value_delimiter = ',')]
    pub milestones: Option<Vec<usize>>,
    /// Dropout before the classifier.
    #[arg(long, default_value_t = defaults().dropout)]
    pub dropout: f64,
    #[arg(long, default_value_t = defaults().label_smoothing)]
    pub label_smoothing: f64,
    #[command(flatten)]
    pub run: RunArgs,
}

/// What a search run folder stands for: its most likely architecture, table and class subset.
struct FromSearch {
    arch: String,
    lut: PathBuf,
    classes: Option<usize>,
    class_seed: u64,
    data: String,
}

fn from_search(dir: &Path) -> anyhow::Result<Option<FromSearch>> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let run = RunDir(dir.to_path_buf());
    let cfg: SearchConfig = run.load_config("search")?;
    let best = dir.join("searched-best.json");
    anyhow::ensure!(
        best.exists(),
        "{}: the search has not finished (no searched-best.json); resume it first",
        dir.display()
    );
    Ok(Some(FromSearch {
        arch: best.display().to_string(),
        lut: cfg.lut,
        classes: cfg.classes,
        class_seed: cfg.class_seed,
        data: cfg.data,
    }))
}

impl TrainArgs {
    pub fn config(&self) -> anyhow::Result<TrainConfig> {
        let given = self.arch.clone().context("an architecture is required")?;
        let search = from_search(Path::new(&given))?;
        let schedule = match self.schedule.as_str() {
            "cosine" => Schedule::Cosine,
            "step" => match &self.milestones {
                Some(m) => Schedule::Step {
                    milestones: m.clone(),
                    gamma: 0.1,
                },
                None => Schedule::paper(self.epochs),
            },
            other => anyhow::bail!("--schedule {other}: expected step or cosine"),
        };
        let data_given = self.data != defaults().data;
        Ok(TrainConfig {
            data: match &search {
                Some(s) if !data_given => s.data.clone(),
                _ => self.data.clone(),
            },
            arch: search.as_ref().map_or(given, |s| s.arch.clone()),
            lut: self.lut.clone().or(search.as_ref().map(|s| s.lut.clone())),
            classes: self.classes.or(search.as_ref().and_then(|s| s.classes)),
            class_seed: self
                .class_seed
                .or(search.as_ref().map(|s| s.class_seed))
                .unwrap_or(0),
            max_images: self.max_images,
            max_val_images: self.max_val_images,
            val_split: self.val_split,
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            momentum: defaults().momentum,
            weight_decay: self.weight_decay,
            schedule,
            dropout: self.dropout,
            label_smoothing: self.label_smoothing,
            augment: !self.run.no_augment,
            seed: self.run.seed,
            workers: self.run.workers(),
        })
    }
}

/// Trains with progress bars and one line per epoch; returns the run folder and its result.
pub fn train_with_progress(
    cfg: &TrainConfig,
    run: &TrainRun,
    resume: bool,
    device: &Device,
    cancel: &AtomicBool,
) -> anyhow::Result<TrainResult> {
    let mut bars = PhaseBars::new(false);
    let mut show = |p: &TrainProgress| {
        if p.phase == "done" {
            bars.end();
            println!(
                "epoch {}/{}: test CE {:.3} top-1 {:.2}%{}",
                p.epoch + 1,
                p.epochs,
                p.ce,
                100.0 * p.acc,
                p.data.map(super::fed_line).unwrap_or_default()
            );
            return;
        }
        let b = bars.at(p.epoch, p.phase, p.steps);
        b.set_position(p.step as u64);
        if p.phase == "train" {
            b.set_message(format!(
                "epoch {}/{} train CE {:.3} acc {:.1}%",
                p.epoch + 1,
                p.epochs,
                p.ce,
                100.0 * p.acc
            ));
        } else {
            b.set_message(format!("epoch {}/{} testing", p.epoch + 1, p.epochs));
        }
    };
    let result = train(cfg, run, resume, device, &mut show, cancel);
    bars.end();
    result
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let (cfg, run, resume) = match &args.run.resume {
        Some(dir) => {
            let run = RunDir(dir.clone());
            (run.load_config("training")?, run, true)
        }
        None => {
            let cfg = args.config()?;
            let out = args.run.out.clone().unwrap_or_else(|| {
                let name = fbnet::train::resolve_arch(&cfg.arch, cfg.lut.as_deref())
                    .map(|a| a.name)
                    .unwrap_or_else(|_| "arch".into());
                PathBuf::from(format!("runs/train-{name}-seed{}", cfg.seed))
            });
            (cfg, RunDir(out), false)
        }
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancel);
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))?;
    let run = TrainRun(run);
    let result = train_with_progress(&cfg, &run, resume, &args.run.device()?, &cancel)?;
    println!("run folder {}", run.path().display());
    let chosen = match result.best.held_out_top1 {
        Some(h) => format!(
            "epoch {} (chosen on held-out training images: {:.2}%)",
            result.best.epoch,
            100.0 * h
        ),
        None => format!("epoch {} (the last)", result.best.epoch),
    };
    println!(
        "{}: {chosen}: test top-1 {:.2}% (top-5 {:.2}%); last epoch {:.2}%",
        result.arch,
        100.0 * result.best.top1,
        100.0 * result.best.top5,
        100.0 * result.last_top1
    );
    println!(
        "export it: fbnet export {} --out model.onnx --int8",
        run.path().display()
    );
    Ok(())
}
