//! `fbnet demo`: the whole pipeline on this machine in one command, on built-in defaults: profile this
//! machine (or take a given table), search the small space on Fashion-MNIST, train the chosen
//! architecture from scratch, export it fp32 and int8, run and time both exported models, and write a
//! short report. Every stage keeps its outputs in the demo folder, so a second run resumes where an
//! interrupted one stopped.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context;
use candle_core::Device;
use fbnet::data;
use fbnet::export::{ExportConfig, ExportReport, int8_path};
use fbnet::optim::Schedule;
use fbnet::runs::RunDir;
use fbnet::search::{EpochMetrics, SearchConfig, SearchResult, read_metrics};
use fbnet::train::{TrainConfig, TrainResult, TrainRun};
use mobile_core::Space;
use mobile_core::device::DeviceInfo;
use mobile_core::files::write_atomic;
use mobile_core::lut::{Lut, Method};
use mobile_core::measure::TimingConfig;
use mobile_core::model::{BenchConfig, BenchReport, Class, Model};
use mobile_core::profile::{ProfileConfig, profile};
use mobile_core::runtime::{self, RangeEstimate, SessionConfig};
use serde::Serialize;

use super::export::export_with_progress;
use super::search::search_with_progress;
use super::train::train_with_progress;
use crate::progress::bar;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// The demo folder: table, search and training runs, models, report.
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// Use this latency table (of the demo's space) instead of profiling this machine.
    #[arg(long)]
    pub lut: Option<PathBuf>,
    /// A smaller demo (fewer images and epochs, a rough table): a few minutes, for a first look.
    #[arg(long)]
    pub quick: bool,
    /// Threads decoding images ahead of the training step.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// The ONNX Runtime library (default: ORT_DYLIB_PATH, else the cache scripts/setup-ort.sh fills).
    #[arg(long)]
    pub ort: Option<PathBuf>,
}

/// The demo's space: the small preset for 28 px grey Fashion-MNIST at a quarter width.
pub fn demo_space() -> Space {
    Space::fbnet_small()
        .with_variant(Some(28), Some(0.25), Some(10))
        .with_input_channels(1)
}

/// How big each stage is.
struct Plan {
    search_epochs: usize,
    search_images: usize,
    train_epochs: usize,
    train_images: usize,
    val_images: usize,
    check_images: usize,
    timing: TimingConfig,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                search_epochs: 2,
                search_images: 640,
                train_epochs: 2,
                train_images: 1280,
                val_images: 500,
                check_images: 1000,
                timing: TimingConfig::quick(),
            }
        } else {
            Plan {
                search_epochs: 3,
                search_images: 2000,
                train_epochs: 8,
                train_images: 12_000,
                val_images: 2000,
                check_images: 10_000,
                timing: TimingConfig::standard(),
            }
        }
    }
}

/// What the demo measured (`demo-report.json`).
#[derive(Serialize)]
struct DemoReport {
    seconds: f64,
    stage_seconds: Vec<(String, f64)>,
    device: DeviceInfo,
    lut: PathBuf,
    search: SearchSummary,
    training: TrainResult,
    export: ExportReport,
    bench: Vec<BenchReport>,
    /// fp32 p50 / int8 p50.
    int8_speedup: f64,
    sample: (PathBuf, String, Vec<(String, Vec<Class>)>),
}

#[derive(Serialize)]
struct SearchSummary {
    best: String,
    expected_latency_us: (f64, f64),
    entropy: (f64, f64),
    theta_acc: f64,
    /// Layers whose winner the θ gradients raised over the runner-up beyond the noise, of `layers`,
    /// and how many of those on accuracy (the cross-entropy's part alone).
    decided: usize,
    decided_on_accuracy: usize,
    layers: usize,
    /// What the search's report warns about (`search_report::warnings`).
    warnings: Vec<String>,
}

fn heading(i: usize, what: &str) {
    println!("\n== {i}/6 {what}");
}

/// The table: given, already in the folder (resumed if partial), or profiled now.
fn table(a: &DemoArgs, plan: &Plan, cancel: &AtomicBool) -> anyhow::Result<PathBuf> {
    // A quick table is rougher: it gets its own name, so a full demo never continues or reuses it.
    let path = a.out.join(if a.quick {
        "lut-quick.json"
    } else {
        "lut.json"
    });
    let space = demo_space();
    if let Some(given) = &a.lut {
        let lut = Lut::load(given)?;
        anyhow::ensure!(
            lut.space_hash == space.hash(),
            "{}: the table is of space {} ({}), the demo searches {} ({}): profile it with `fbnet profile --space fbnet-small --resolution 28 --width 0.25 --input-channels 1 --classes 10`",
            given.display(),
            lut.space.name,
            lut.space_hash,
            space.name,
            space.hash()
        );
        println!("using {}", given.display());
        return Ok(given.clone());
    }
    let previous = if path.exists() {
        Some(Lut::load(&path)?)
    } else {
        None
    };
    let cfg = ProfileConfig {
        space,
        dtypes: mobile_core::onnx::Dtype::ALL.to_vec(),
        session: SessionConfig { threads: 1 },
        timing: plan.timing,
        device: DeviceInfo::this_host(),
        method: Method::InNetwork,
        seed: 0,
        trace_dir: std::env::temp_dir(),
    };
    println!(
        "profiling {} ({} ops, fp32 and int8, 1 thread) on {} -> {}",
        cfg.space.name,
        cfg.space.unique_ops().len(),
        cfg.device.cpu,
        path.display()
    );
    let pb = bar(1, 0);
    let lut = profile(&cfg, previous, Some(&path), cancel, &mut |p| {
        pb.set_length(p.total as u64);
        pb.set_position(p.done as u64);
        pb.set_message(p.step.clone());
    });
    pb.finish_and_clear();
    let lut = lut.map_err(|e| match e {
        mobile_core::Error::Cancelled => anyhow::anyhow!(
            "interrupted; what was measured is kept in {}: run the demo again to go on",
            path.display()
        ),
        e => e.into(),
    })?;
    println!("{} entries -> {}", lut.entries.len(), path.display());
    Ok(path)
}

fn search_stage(
    a: &DemoArgs,
    plan: &Plan,
    lut: &Path,
    cancel: &AtomicBool,
) -> anyhow::Result<(RunDir, SearchResult)> {
    let run = RunDir(a.out.join("search"));
    let cfg = SearchConfig {
        lut: lut.to_path_buf(),
        max_images: Some(plan.search_images),
        epochs: plan.search_epochs,
        freeze_epochs: 1,
        batch_size: if a.quick { 32 } else { 64 },
        samples: 3,
        workers: a.workers,
        ..SearchConfig::default()
    };
    if run.result().exists() {
        println!("already searched: {}", run.0.display());
        return Ok((run.clone(), fbnet::search::read_result(&run)?));
    }
    let result = search_with_progress(&cfg, &run, run.has_checkpoint(), &Device::Cpu, cancel)?;
    Ok((run, result))
}

fn train_stage(
    a: &DemoArgs,
    plan: &Plan,
    search: &RunDir,
    lut: &Path,
    cancel: &AtomicBool,
) -> anyhow::Result<(TrainRun, TrainResult)> {
    let run = TrainRun(RunDir(a.out.join("train")));
    let cfg = TrainConfig {
        arch: search.0.join("searched-best.json").display().to_string(),
        lut: Some(lut.to_path_buf()),
        max_images: Some(plan.train_images),
        max_val_images: Some(plan.val_images),
        epochs: plan.train_epochs,
        batch_size: if a.quick { 64 } else { 128 },
        lr: 0.05,
        schedule: Schedule::Cosine,
        workers: a.workers,
        ..TrainConfig::default()
    };
    if run.0.result().exists() {
        println!("already trained: {}", run.path().display());
        let text = std::fs::read_to_string(run.0.result())?;
        return Ok((run, serde_json::from_str(&text)?));
    }
    let resume = run.0.has_checkpoint();
    let result = train_with_progress(&cfg, &run, resume, &Device::Cpu, cancel)?;
    Ok((run, result))
}

/// A Fashion-MNIST test image written as PNG: what a user would pick on the phone.
fn sample_image(out: &Path) -> anyhow::Result<(PathBuf, String)> {
    let source = data::open("fashion-mnist", false, Some(1))?;
    let img = source.read(0)?;
    let label = source.classes()[source.label(0) as usize].clone();
    let path = out.join("sample.png");
    let gray = image::GrayImage::from_raw(img.width as u32, img.height as u32, img.pixels)
        .context("sample image of the wrong size")?;
    gray.save(&path)
        .with_context(|| format!("{}: cannot write", path.display()))?;
    Ok((path, label))
}

pub fn run(a: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut stages = Vec::new();
    let mut lap = |name: &str, t: &mut Instant| {
        stages.push((name.to_string(), t.elapsed().as_secs_f64()));
        *t = Instant::now();
    };
    let info = runtime::init(a.ort.as_deref())?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("{}: cannot create", a.out.display()))?;
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancel);
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))?;
    let plan = Plan::new(a.quick);
    println!(
        "fbnet demo -> {} (ONNX Runtime {}; Ctrl-C stops, running it again resumes)",
        a.out.display(),
        info.version
    );
    let mut t = Instant::now();

    heading(1, "latency table of this machine");
    let lut = table(&a, &plan, &cancel)?;
    lap("profile", &mut t);

    heading(2, "search (DNAS) on Fashion-MNIST");
    let (search_run, searched) = search_stage(&a, &plan, &lut, &cancel)?;
    let metrics: Vec<EpochMetrics> = read_metrics(&search_run)?;
    let (first, last) = (
        metrics.first().context("the search has no metrics")?,
        metrics.last().context("the search has no metrics")?,
    );
    println!("most likely architecture: {}", searched.best.arch);
    lap("search", &mut t);

    heading(3, "training the chosen architecture from scratch");
    let (train_run, trained) = train_stage(&a, &plan, &search_run, &lut, &cancel)?;
    println!(
        "test top-1 {:.2}% at epoch {} (chosen on held-out training images)",
        100.0 * trained.best.top1,
        trained.best.epoch
    );
    lap("train", &mut t);

    heading(4, "export: ONNX fp32 and int8");
    let model_path = a.out.join("model.onnx");
    let exported = export_with_progress(
        train_run.path(),
        &model_path,
        &ExportConfig {
            int8: true,
            calib: 256,
            estimate: RangeEstimate::Quantile { q: 1e-4 },
            last: false,
            check_images: Some(plan.check_images),
        },
    )?;
    super::export::print_report(&exported);
    lap("export", &mut t);

    heading(5, "run the exported models");
    let (sample, truth) = sample_image(&a.out)?;
    let mut classified = Vec::new();
    let mut models = Vec::new();
    for path in [model_path.clone(), int8_path(&model_path)] {
        let model = Model::load(&path, SessionConfig { threads: 1 })?;
        let top = model.classify_file(&sample, 3)?;
        println!(
            "{} on {} (a {truth}): {}",
            path.display(),
            sample.display(),
            top.iter()
                .map(|c| format!("{} {:.1}%", c.label, 100.0 * c.probability))
                .collect::<Vec<_>>()
                .join(", ")
        );
        classified.push((path.display().to_string(), top));
        models.push(model);
    }
    lap("run", &mut t);

    heading(
        6,
        "latency: measured against the table's prediction (1 thread)",
    );
    // The table was profiled minutes ago and this VM's pace drifts by tens of percent: where the table
    // has its speed reference at the model's dtype, the reference is timed around the runs so that the
    // report can also compare with the table at the device's pace now.
    let table = Lut::load(&lut)?;
    let table_name = lut.display().to_string();
    let mut benches = Vec::new();
    for model in &models {
        let config = BenchConfig {
            time_reference: table.reference_time(model.meta().dtype).is_some(),
            ..BenchConfig::default()
        };
        let r = model.bench(&config, Some((&table, table_name.as_str())))?;
        super::model::print_bench(&r);
        benches.push(r);
    }
    lap("bench", &mut t);
    let int8_speedup = benches[0].p50_us / benches[1].p50_us;

    let counts = searched.decision_counts();
    let report = DemoReport {
        seconds: started.elapsed().as_secs_f64(),
        stage_seconds: stages,
        device: DeviceInfo::this_host(),
        lut,
        search: SearchSummary {
            best: searched.best.arch.clone(),
            expected_latency_us: (first.expected_latency_us, last.expected_latency_us),
            entropy: (first.entropy, last.entropy),
            theta_acc: last.theta_acc,
            decided: counts.decided,
            decided_on_accuracy: counts.on_accuracy,
            layers: searched.layers.len(),
            warnings: fbnet::search_report::run_warnings(&search_run)?,
        },
        training: trained,
        export: exported,
        bench: benches,
        int8_speedup,
        sample: (sample, truth, classified),
    };
    write_atomic(
        &a.out.join("demo-report.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    let md = markdown(&report);
    write_atomic(&a.out.join("demo-report.md"), md.as_bytes())?;
    println!("\n{md}");
    Ok(())
}

fn markdown(r: &DemoReport) -> String {
    let mut s = String::new();
    let e = &r.export;
    let _ = writeln!(s, "# fbnet demo\n");
    let _ = writeln!(
        s,
        "{} ({} cores), {:.0} s in all ({}).\n",
        r.device.cpu,
        r.device.cores,
        r.seconds,
        r.stage_seconds
            .iter()
            .map(|(n, t)| format!("{n} {t:.0} s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(s, "- table: {}", r.lut.display());
    let _ = writeln!(
        s,
        "- search: E[LAT] {:.1} → {:.1} µs, entropy of P_θ {:.4} → {:.4} nats, θ-split accuracy {:.1}%",
        r.search.expected_latency_us.0,
        r.search.expected_latency_us.1,
        r.search.entropy.0,
        r.search.entropy.1,
        100.0 * r.search.theta_acc
    );
    let _ = writeln!(
        s,
        "- decided: {} of {} layers beyond the noise of θ's gradients, {} of them on accuracy (the others' \
         choice is not a preference of the search: see the search's report.md)",
        r.search.decided, r.search.layers, r.search.decided_on_accuracy
    );
    for w in &r.search.warnings {
        let _ = writeln!(s, "- **warning**: {w}");
    }
    let _ = writeln!(s, "- chosen: `{}`", r.search.best);
    let _ = writeln!(
        s,
        "- trained from scratch: test top-1 {:.2}% at epoch {} (chosen on held-out training images, not on the test images)",
        100.0 * r.training.best.top1,
        r.training.best.epoch
    );
    let _ = writeln!(
        s,
        "- exported, on {} test images: fp32 top-1 {:.2}% (same top-1 as candle on {:.2}%), int8 top-1 {} ({:+.2} points)\n",
        e.images,
        100.0 * e.fp32.top1,
        100.0 * e.fp32.same_top1,
        e.int8
            .as_ref()
            .map_or("-".into(), |q| format!("{:.2}%", 100.0 * q.top1)),
        e.int8_minus_fp32_points.unwrap_or(f64::NAN)
    );
    let _ = writeln!(
        s,
        "| model | measured p50 | p10–p90 | predicted | measured / predicted | device's pace now (speed reference) | measured / predicted at that pace |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for b in &r.bench {
        let _ = writeln!(
            s,
            "| {} | {:.3} ms | {:.3}–{:.3} ms | {} | {} | {} | {} |",
            b.dtype,
            b.p50_us / 1e3,
            b.p10_us / 1e3,
            b.p90_us / 1e3,
            or_dash(b.predicted_us.map(|p| format!("{:.3} ms", p / 1e3))),
            or_dash(b.measured_over_predicted.map(|x| format!("{x:.2}"))),
            or_dash(b.speed_now.map(|x| format!("{x:.2}x the table's"))),
            or_dash(
                b.predicted_now_us
                    .map(|p| format!("{:.2}", b.trimmed_mean_us / p))
            ),
        );
    }
    let _ = writeln!(
        s,
        "\nmeasured / predicted divides the trimmed mean by the table's prediction. The speed reference (a \
         fixed network the profile timed alongside the table) is timed again around the runs: its time now \
         over its time in the table is the device's pace, and the last column compares with the table \
         scaled to it (`fbnet bench MODEL --lut TABLE --rescale` repeats it)."
    );
    let _ = writeln!(s, "\nint8 speed-up over fp32 (p50): {:.2}×", r.int8_speedup);
    s
}
