//! `fbnet lut show|diff|validate`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use mobile_core::lut::Lut;
use mobile_core::measure::TimingConfig;
use mobile_core::onnx::Dtype;
use mobile_core::runtime::{self, SessionConfig};
use mobile_core::validate::{ROUNDS, ValidateReport, validate, validation_archs};

use crate::progress::bar;

#[derive(clap::Subcommand)]
pub enum LutCommand {
    /// Print a table: device, runtime, and every op's latency per dtype.
    Show {
        /// The table.
        file: PathBuf,
    },
    /// Compare two tables of the same space op by op: which ops are faster on which device (the
    /// paper's Figure 5).
    Diff { a: PathBuf, b: PathBuf },
    /// Time whole networks (FBNet-A/B/C and random architectures of the table's space) and compare
    /// with the table's predictions.
    Validate {
        /// The table.
        #[arg(long)]
        lut: PathBuf,
        /// Random architectures to time besides FBNet-A/B/C.
        #[arg(long, default_value_t = 20)]
        archs: usize,
        /// Seed of the random architectures, weights and inputs.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Also write the JSON report to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Shorter timing runs.
        #[arg(long)]
        quick: bool,
        /// Intra-op threads to time the networks with (default: the table's own). Another count than
        /// the table's shows how far its predictions carry; with a speed reference, the corrected
        /// figures then include the speed-up the reference itself gets from the threads.
        #[arg(long)]
        threads: Option<usize>,
        /// The ONNX Runtime library (default: ORT_DYLIB_PATH, else the cache).
        #[arg(long)]
        ort: Option<PathBuf>,
    },
}

pub fn run(cmd: LutCommand) -> anyhow::Result<()> {
    match cmd {
        LutCommand::Show { file } => show(&Lut::load(&file)?),
        LutCommand::Diff { a, b } => diff(&Lut::load(&a)?, &Lut::load(&b)?),
        LutCommand::Validate {
            lut,
            archs,
            seed,
            json,
            out,
            quick,
            threads,
            ort,
        } => {
            runtime::init(ort.as_deref())?;
            let table = Lut::load(&lut)?;
            let archs = validation_archs(&table.space, archs, seed)?;
            let timing = if quick {
                TimingConfig::quick()
            } else {
                table.timing
            };
            let pb = bar(archs.len() * table.dtypes.len() * ROUNDS, 0);
            pb.set_message(format!(
                "{} networks x {} dtypes x {ROUNDS} rounds",
                archs.len(),
                table.dtypes.len()
            ));
            let session = match threads {
                Some(t) => SessionConfig::clamped(t),
                None => table.runtime.session,
            };
            if session.threads != table.runtime.session.threads {
                eprintln!(
                    "note: the table was measured at {} thread(s), these networks run at {}",
                    table.runtime.session.threads, session.threads
                );
            }
            let cancel = AtomicBool::new(false);
            let report = validate(
                &table,
                &archs,
                &timing,
                session,
                seed,
                &cancel,
                &mut |done, _| {
                    pb.set_position(done as u64);
                },
            )?;
            pb.finish_and_clear();
            let text = serde_json::to_string_pretty(&report)?;
            if let Some(path) = &out {
                mobile_core::files::write_atomic(path, text.as_bytes())?;
            }
            if json {
                println!("{text}");
            } else {
                print_report(&report);
            }
            Ok(())
        }
    }
}

fn print_report(r: &ValidateReport) {
    println!(
        "space {} on {}: table at {} thread(s), networks timed at {}",
        r.space, r.device.cpu, r.runtime.session.threads, r.threads
    );
    let corrected = r.checks.iter().any(|c| c.corrected_error.is_some());
    println!(
        "{:<12} {:>5} {:>12} {:>12} {:>8}{}",
        "network",
        "dtype",
        "predicted",
        "measured",
        "error",
        if corrected { "   pace  corrected" } else { "" }
    );
    for c in &r.checks {
        let pace = match (c.speed, c.corrected_error) {
            (Some(s), Some(e)) => format!(" {s:>6.2}x {:>+9.1}%", e * 100.0),
            _ => String::new(),
        };
        println!(
            "{:<12} {:>5} {:>10.0}us {:>10.0}us {:>+7.1}%{pace}{}",
            c.arch,
            c.dtype,
            c.predicted_us,
            c.measured_us,
            c.error * 100.0,
            if c.noisy { " noisy" } else { "" }
        );
    }
    for s in &r.summary {
        println!(
            "{} at {} thread(s), {} networks: raw {:.0}% within ±10%, mean |error| {:.1}% (max {:.1}%)",
            s.dtype,
            r.threads,
            s.networks,
            s.within_10pct * 100.0,
            s.mean_abs_error * 100.0,
            s.max_abs_error * 100.0,
        );
        match (
            s.speed_now,
            s.within_10pct_corrected,
            s.mean_abs_error_corrected,
        ) {
            (Some(speed), Some(within), Some(mae)) => println!(
                "  drift-corrected by the speed reference (the device takes {speed:.2}x the table's time now): {:.0}% within ±10%, mean |error| {:.1}%",
                within * 100.0,
                mae * 100.0
            ),
            _ => println!(
                "  no drift correction: the table has no speed reference timed at {} (tables of schema 1 have none; profile again to get one)",
                s.dtype
            ),
        }
        println!(
            "  against the best constant factor ({:.2}x, the median of measured/predicted): {:.0}% within ±10%, mean |error| {:.1}%",
            s.drift,
            s.within_10pct_relative * 100.0,
            s.mean_abs_error_relative * 100.0
        );
    }
}

/// Entries of a table as `op -> dtype -> trimmed mean`.
fn by_op(lut: &Lut) -> BTreeMap<String, BTreeMap<Dtype, f64>> {
    let mut m: BTreeMap<String, BTreeMap<Dtype, f64>> = BTreeMap::new();
    for e in &lut.entries {
        m.entry(e.op.clone())
            .or_default()
            .insert(e.dtype, e.stats.trimmed_mean);
    }
    m
}

fn show(lut: &Lut) -> anyhow::Result<()> {
    println!(
        "space {} (hash {}), {} on {} ({} cores, {}), {} {} {} thread(s), created {}",
        lut.space.name,
        lut.space_hash,
        lut.device.model,
        lut.device.cpu,
        lut.device.cores,
        lut.device.os,
        lut.runtime.name,
        lut.runtime.version,
        lut.runtime.session.threads,
        lut.created
    );
    println!("measured {} ({})", lut.method, lut.runtime.optimization);
    for c in &lut.calibration {
        println!(
            "{}: per-kernel correction {:+.2} us over {} covering networks (largest residual {:.1}%)",
            c.dtype,
            c.per_kernel_us,
            c.networks,
            c.max_residual * 100.0
        );
    }
    for e in &lut.overhead {
        println!(
            "{}: per-network overhead {:.1} us",
            e.dtype, e.stats.trimmed_mean
        );
    }
    match &lut.reference {
        Some(r) => {
            for d in &lut.dtypes {
                let times: Vec<f64> = r
                    .timings
                    .iter()
                    .filter(|t| t.dtype == *d)
                    .map(|t| t.us)
                    .collect();
                if let Some(base) = r.baseline(*d) {
                    let (lo, hi) = times
                        .iter()
                        .fold((f64::INFINITY, 0.0f64), |(a, b), &v| (a.min(v), b.max(v)));
                    println!(
                        "{d}: speed reference {base:.1} us (median of {} timings through the profile, {:.2}x to {:.2}x of it)",
                        times.len(),
                        lo / base,
                        hi / base
                    );
                }
            }
        }
        None => println!(
            "no speed reference (schema {}): its drift cannot be measured",
            lut.schema
        ),
    }
    for d in &lut.dtypes {
        let missing = lut.missing(*d).len();
        if missing > 0 {
            let networks = lut.pending.iter().filter(|r| r.dtype == *d).count();
            println!(
                "{d}: {missing} ops not yet measured, {networks} covering networks waiting for the fit (resume with `fbnet profile --resume`)"
            );
        }
    }
    let noisy: std::collections::BTreeSet<(String, Dtype)> = lut
        .entries
        .iter()
        .filter(|e| e.noisy)
        .map(|e| (e.op.clone(), e.dtype))
        .collect();
    println!(
        "{:<28} {:>10} {:>10} {:>8}",
        "op", "fp32 us", "int8 us", "speedup"
    );
    for (op, m) in by_op(lut) {
        let cell = |d: Dtype| {
            m.get(&d).map_or("-".to_string(), |v| {
                format!(
                    "{v:.1}{}",
                    if noisy.contains(&(op.clone(), d)) {
                        "~"
                    } else {
                        ""
                    }
                )
            })
        };
        let speedup = match (m.get(&Dtype::Fp32), m.get(&Dtype::Int8)) {
            (Some(f), Some(i)) => format!("{:.2}x", f / i),
            _ => "-".into(),
        };
        println!(
            "{:<28} {:>10} {:>10} {:>8}",
            op,
            cell(Dtype::Fp32),
            cell(Dtype::Int8),
            speedup
        );
    }
    if !noisy.is_empty() {
        println!(
            "~ noisy: spread stayed above {:.0}% after a second measurement",
            lut.timing.max_spread * 100.0
        );
    }
    Ok(())
}

fn diff(a: &Lut, b: &Lut) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.space_hash == b.space_hash,
        "the tables are for different spaces ({} hash {}, {} hash {})",
        a.space.name,
        a.space_hash,
        b.space.name,
        b.space_hash
    );
    let (ma, mb) = (by_op(a), by_op(b));
    println!(
        "A = {} ({}), B = {} ({})",
        a.device.model, a.device.cpu, b.device.model, b.device.cpu
    );
    for d in Dtype::ALL {
        let mut rows: Vec<(String, f64, f64)> = ma
            .iter()
            .filter_map(|(op, m)| Some((op.clone(), *m.get(&d)?, *mb.get(op)?.get(&d)?)))
            .collect();
        if rows.is_empty() {
            continue;
        }
        rows.sort_by(|x, y| (x.2 / x.1).total_cmp(&(y.2 / y.1)));
        println!("{d}: {} common ops, sorted by B/A", rows.len());
        println!("{:<28} {:>10} {:>10} {:>8}", "op", "A us", "B us", "B/A");
        for (op, ta, tb) in &rows {
            println!("{op:<28} {ta:>10.1} {tb:>10.1} {:>7.2}x", tb / ta);
        }
        let sum_a: f64 = rows.iter().map(|r| r.1).sum();
        let sum_b: f64 = rows.iter().map(|r| r.2).sum();
        let overall = sum_b / sum_a;
        // How many ops agree within 5%, as measured and after dividing out the overall factor (a
        // device that is uniformly faster, or a machine whose speed drifted between two runs).
        let agreement = |factor: f64| {
            let mut dev: Vec<f64> = rows
                .iter()
                .map(|r| (r.2 / r.1 / factor - 1.0).abs())
                .collect();
            dev.sort_by(f64::total_cmp);
            let within = dev.iter().filter(|v| **v <= 0.05).count() as f64 / dev.len() as f64;
            (within * 100.0, dev[dev.len() / 2] * 100.0)
        };
        let (raw, raw_median) = agreement(1.0);
        let (rel, rel_median) = agreement(overall);
        println!(
            "{d}: B/A over all common ops {overall:.2}x; ops within ±5%: {raw:.0}% (median |B/A - 1| {raw_median:.1}%), relative to the overall factor: {rel:.0}% (median {rel_median:.1}%)"
        );
    }
    Ok(())
}
