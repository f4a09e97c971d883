//! `fbnet run` and `fbnet bench`: what the phone app does with an exported model, on the host: classify
//! images, and time the model next to the latency its table predicted.

use std::path::PathBuf;

use mobile_core::lut::Lut;
use mobile_core::model::{BenchConfig, BenchReport, Model};
use mobile_core::runtime::{self, SessionConfig};

#[derive(clap::Args)]
pub struct RunArgs {
    /// An exported model (`fbnet export`).
    pub model: PathBuf,
    /// Images to classify (PNG or JPEG).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Classes to print per image.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// The ONNX Runtime library (default: ORT_DYLIB_PATH, else the cache scripts/setup-ort.sh fills).
    #[arg(long)]
    pub ort: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// An exported model (`fbnet export`).
    pub model: PathBuf,
    /// Predict with this latency table instead of the one recorded in the model (e.g. a phone's).
    #[arg(long)]
    pub lut: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    #[arg(long, default_value_t = BenchConfig::default().warmup)]
    pub warmup: usize,
    #[arg(long, default_value_t = BenchConfig::default().runs)]
    pub runs: usize,
    /// Time the table's speed reference around the runs and also predict at the device's pace now
    /// (needs --lut with a table of schema 2; at other --threads than the table's, the pace includes
    /// what the threads gain).
    #[arg(long, requires = "lut")]
    pub rescale: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[arg(long)]
    pub ort: Option<PathBuf>,
}

pub fn run(a: RunArgs) -> anyhow::Result<()> {
    runtime::init(a.ort.as_deref())?;
    let model = Model::load(&a.model, SessionConfig::clamped(a.threads))?;
    let mut all = Vec::new();
    for image in &a.images {
        let classes = model.classify_file(image, a.top)?;
        if !a.json {
            println!("{}", image.display());
            for c in &classes {
                println!("  {:6.2}%  {}", 100.0 * c.probability, c.label);
            }
        }
        all.push(serde_json::json!({ "image": image, "classes": classes }));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    }
    Ok(())
}

/// Measures `model` and returns the report (predicted by `lut`, or by the model's own table).
pub fn bench(
    model: &Model,
    lut: Option<&PathBuf>,
    cfg: &BenchConfig,
) -> anyhow::Result<BenchReport> {
    let table = lut.map(|p| Lut::load(p)).transpose()?;
    let name = lut.map(|p| p.display().to_string()).unwrap_or_default();
    Ok(model.bench(cfg, table.as_ref().map(|t| (t, name.as_str())))?)
}

pub fn print_bench(r: &BenchReport) {
    println!(
        "{} ({}, {} thread(s), ONNX Runtime {}): {} runs after {} warm-up",
        r.model, r.dtype, r.threads, r.runtime, r.runs, r.warmup
    );
    println!(
        "  measured  p10 {:.3} ms  p50 {:.3} ms  p90 {:.3} ms  (trimmed mean {:.3} ms, min {:.3} ms)",
        r.p10_us / 1e3,
        r.p50_us / 1e3,
        r.p90_us / 1e3,
        r.trimmed_mean_us / 1e3,
        r.min_us / 1e3
    );
    match (r.predicted_us, &r.predicted_by, r.measured_over_predicted) {
        (Some(p), Some(by), Some(ratio)) => println!(
            "  predicted {:.3} ms by {by}: measured/predicted {ratio:.2}",
            p / 1e3
        ),
        _ => println!("  no prediction: the model names no table (pass --lut FILE)"),
    }
    if let (Some(speed), Some(now)) = (r.speed_now, r.predicted_now_us) {
        println!(
            "  the device takes {speed:.2}x the table's time now (its speed reference): predicted at that pace {:.3} ms, measured/predicted {:.2}",
            now / 1e3,
            r.trimmed_mean_us / now
        );
    }
}

pub fn run_bench(a: BenchArgs) -> anyhow::Result<()> {
    runtime::init(a.ort.as_deref())?;
    let model = Model::load(&a.model, SessionConfig::clamped(a.threads))?;
    let report = bench(
        &model,
        a.lut.as_ref(),
        &BenchConfig {
            warmup: a.warmup,
            runs: a.runs,
            time_reference: a.rescale,
        },
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_bench(&report);
    }
    Ok(())
}
