//! `fbnet export`: a trained run as ONNX for deployment, fp32 and int8, checked in ONNX Runtime.

use std::path::PathBuf;

use fbnet::export::{ExportConfig, ExportReport, export};
use indicatif::ProgressBar;
use mobile_core::runtime::RangeEstimate;

use crate::progress::bar;

#[derive(clap::Args)]
pub struct ExportArgs {
    /// The training run folder (`fbnet train --out`).
    pub run: PathBuf,
    /// The fp32 model file; the int8 model goes beside it as `<name>.int8.onnx`.
    #[arg(long, default_value = "model.onnx")]
    pub out: PathBuf,
    /// Also write the int8 QDQ model (post-training quantisation).
    #[arg(long)]
    pub int8: bool,
    /// Training images that calibrate the int8 activation ranges.
    #[arg(long, default_value_t = ExportConfig::default().calib)]
    pub calib: usize,
    /// Range estimate: `quantile` (per-image 0.01%/99.99% quantiles, averaged) or `minmax`.
    #[arg(long, default_value = "quantile")]
    pub calib_method: String,
    /// Export the last epoch instead of the best one.
    #[arg(long)]
    pub last: bool,
    /// Check the models on at most this many test images (default: the run's validation images).
    #[arg(long)]
    pub check_images: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn estimate(name: &str) -> anyhow::Result<RangeEstimate> {
    match name {
        "quantile" => Ok(RangeEstimate::Quantile { q: 1e-4 }),
        "minmax" => Ok(RangeEstimate::MinMax),
        other => anyhow::bail!("--calib-method {other}: expected quantile or minmax"),
    }
}

/// Exports with a progress bar per phase.
pub fn export_with_progress(
    run: &std::path::Path,
    out: &std::path::Path,
    cfg: &ExportConfig,
) -> anyhow::Result<ExportReport> {
    let mut current: Option<(String, ProgressBar)> = None;
    let mut show = |what: &str, done: usize, total: usize| {
        if current.as_ref().is_none_or(|(w, _)| w != what) {
            if let Some((_, b)) = current.take() {
                b.finish_and_clear();
            }
            let b = bar(total, 0);
            b.set_message(what.to_string());
            current = Some((what.to_string(), b));
        }
        if let Some((_, b)) = &current {
            b.set_position(done as u64);
        }
    };
    let report = export(run, out, cfg, &mut show);
    if let Some((_, b)) = current.take() {
        b.finish_and_clear();
    }
    report
}

pub fn print_report(r: &ExportReport) {
    println!(
        "{} (epoch {}), checked on {} test images; candle model top-1 {:.2}%",
        r.arch,
        r.best_epoch.map_or("?".into(), |e| e.to_string()),
        r.images,
        100.0 * r.candle_top1
    );
    for m in std::iter::once(&r.fp32).chain(&r.int8) {
        println!(
            "  {:4} {}  {:.0} kB  top-1 {:.2}% top-5 {:.2}%  same top-1 as candle {:.2}%  max |Δlogit| {:.2e} (logits up to {:.1})",
            m.dtype.to_string(),
            m.file.display(),
            m.bytes as f64 / 1024.0,
            100.0 * m.top1,
            100.0 * m.top5,
            100.0 * m.same_top1,
            m.max_abs_diff,
            m.logit_scale
        );
    }
    if let Some(d) = r.int8_minus_fp32_points {
        println!("  int8 − fp32 top-1: {d:+.2} points");
    }
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let cfg = ExportConfig {
        int8: args.int8,
        calib: args.calib,
        estimate: estimate(&args.calib_method)?,
        last: args.last,
        check_images: args.check_images,
    };
    let report = export_with_progress(&args.run, &args.out, &cfg)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}
