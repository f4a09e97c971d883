//! `fbnet profile`: the host run of what the phone app does when the user taps "Profile device".

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mobile_core::Error;
use mobile_core::device::DeviceInfo;
use mobile_core::lut::{Lut, Method};
use mobile_core::measure::TimingConfig;
use mobile_core::profile::{ProfileConfig, profile};
use mobile_core::runtime::{self, SessionConfig};

use super::{SpaceArgs, parse_dtypes};
use crate::progress::bar;

#[derive(clap::Args)]
pub struct ProfileArgs {
    #[command(flatten)]
    pub space: SpaceArgs,
    /// Dtypes to time, comma-separated.
    #[arg(long, default_value = "fp32,int8")]
    pub dtype: String,
    /// Intra-op threads of the ONNX Runtime sessions.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Where to write the table (default: tables/<space>-<cpu>-t<threads>.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Fewer and shorter timing runs: a rough table in a fraction of the time.
    #[arg(long)]
    pub quick: bool,
    /// Continue the partial table at --out instead of starting over.
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    /// Replace an existing table at --out (without it, an existing file is refused: hours of profiling
    /// are not overwritten by accident).
    #[arg(long)]
    pub force: bool,
    /// Seed of the random weights and inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// in-network: time ops inside whole covering networks (what a network really spends on them);
    /// isolated: time each op as a graph of its own.
    #[arg(long, default_value = "in-network")]
    pub method: Method,
    /// The ONNX Runtime library (default: ORT_DYLIB_PATH, else the cache scripts/setup-ort.sh fills).
    #[arg(long)]
    pub ort: Option<PathBuf>,
}

/// A file-name-safe form of a device description.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

pub fn run(a: ProfileArgs) -> anyhow::Result<()> {
    let info = runtime::init(a.ort.as_deref())?;
    let space = a.space.load()?;
    let device = DeviceInfo::this_host();
    let session = SessionConfig::clamped(a.threads);
    if session.threads != a.threads {
        eprintln!(
            "note: --threads {} clamped to {} (this machine's cores)",
            a.threads, session.threads
        );
    }
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from("tables").join(format!(
            "{}-{}-t{}.json",
            space.name,
            slug(&device.cpu),
            session.threads
        ))
    });
    let cfg = ProfileConfig {
        space,
        dtypes: parse_dtypes(&a.dtype)?,
        session,
        timing: if a.quick {
            TimingConfig::quick()
        } else {
            TimingConfig::standard()
        },
        device,
        method: a.method,
        seed: a.seed,
        trace_dir: std::env::temp_dir(),
    };
    if out.exists() && !a.resume && !a.force {
        anyhow::bail!(
            "{} already exists: pass --resume to continue it, --force to replace it, or another --out",
            out.display()
        );
    }
    let resume = if a.resume && out.exists() {
        Some(Lut::load(&out)?)
    } else {
        None
    };
    let ops = cfg.space.unique_ops().len() * cfg.dtypes.len();
    println!(
        "profiling {} ({} ops x {} dtypes, {}) with ONNX Runtime {} on {}, {} thread(s) -> {}",
        cfg.space.name,
        cfg.space.unique_ops().len(),
        cfg.dtypes.len(),
        cfg.method,
        info.version,
        cfg.device.cpu,
        session.threads,
        out.display()
    );
    let already = resume.as_ref().map_or(0, |l| l.entries.len());
    let pb = bar(ops.max(already), already);
    // Ctrl-C sets the cancel flag: the profile stops after the run in flight, and the table saved
    // after the last finished step stays on disk for `--resume`.
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancel);
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))?;
    let start = std::time::Instant::now();
    let result = profile(&cfg, resume, Some(&out), &cancel, &mut |p| {
        pb.set_length(p.total as u64);
        pb.set_position(p.done as u64);
        pb.set_message(p.step.clone());
    });
    pb.finish_and_clear();
    let lut = match result {
        Err(Error::Cancelled) => {
            anyhow::bail!(
                "interrupted; what was measured is saved in {} (continue with --resume --out {})",
                out.display(),
                out.display()
            )
        }
        other => other?,
    };
    let noisy = lut.entries.iter().filter(|e| e.noisy).count();
    println!(
        "{} entries in {:.1} s ({} noisy) -> {}",
        lut.entries.len(),
        start.elapsed().as_secs_f64(),
        noisy,
        out.display()
    );
    Ok(())
}
