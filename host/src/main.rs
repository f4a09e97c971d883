//! `fbnet`: hardware-aware neural architecture search (FBNet's DNAS) from phone profile to deployment.
//! The command line is thin: each subcommand parses its flags and calls the shared core.

use clap::{Parser, Subcommand};

mod commands;
mod progress;

use commands::{arch, demo, export, lut, model, profile, search, space, train};

/// mimalloc instead of glibc malloc: glibc maps and unmaps every large tensor, which cost hundreds of
/// thousands of page faults per training step in our measurements.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "fbnet",
    version,
    about = "Hardware-aware neural architecture search (FBNet DNAS)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect search spaces.
    #[command(subcommand)]
    Space(space::SpaceCommand),
    /// Inspect architectures, write them as ONNX.
    #[command(subcommand)]
    Arch(arch::ArchCommand),
    /// Time every op of a space with ONNX Runtime on this machine and write a latency table.
    Profile(profile::ProfileArgs),
    /// Search an architecture with DNAS: train the super net and sample from the learned distribution.
    Search(Box<search::SearchArgs>),
    /// Rewrite a finished search's pictures and report.md from its run folder.
    Report(search::ReportArgs),
    /// Train an architecture from scratch (a search result, a file, a built-in).
    Train(Box<train::TrainArgs>),
    /// Export a trained run to ONNX (fp32, int8 QDQ) with its description, checked in ONNX Runtime.
    Export(export::ExportArgs),
    /// Classify images with an exported model (what the app's "load model" does).
    Run(model::RunArgs),
    /// Time an exported model and compare with the latency its table predicted.
    Bench(model::BenchArgs),
    /// The whole pipeline on this machine: profile, search, train, export, run, report.
    Demo(demo::DemoArgs),
    /// Inspect, compare and validate latency tables.
    #[command(subcommand)]
    Lut(lut::LutCommand),
}

/// Restores the default SIGPIPE action, which Rust programs ignore, so that `fbnet lut show T | head`
/// ends quietly like any Unix tool instead of panicking on the closed pipe.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: called once at start-up, before any other thread exists; SIG_DFL is a valid action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Keeps freed memory in mimalloc instead of returning it to the system: a training step frees and
/// reallocates gigabytes, and memory handed back is zeroed again by the kernel on the next step (15% of
/// a search's time in a profile before this).
fn keep_freed_memory() {
    /// `mi_option_purge_delay` in mimalloc's option enum (v2 and v3); −1 = never purge.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets a plain integer option; mimalloc allows it at any time.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) };
}

/// Makes candle's worker pool sleep sooner: after each of its operations a worker spins 25,000 times
/// (`CANDLE_BARRIER_POOL_SPIN_LIMIT`) before it parks, and a training step runs thousands of small
/// operations, so on a two-core machine the spinning took the CPU from the kernels' own threads (9% of
/// a search's perf samples sat in that loop). A limit set by the user is kept.
fn short_spins() {
    const VAR: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(VAR).is_none() {
        // SAFETY: called at start-up, before any other thread exists (candle reads it when it starts
        // its pool, at the first tensor operation).
        unsafe { std::env::set_var(VAR, "200") };
    }
}

fn main() -> anyhow::Result<()> {
    quiet_on_closed_pipe();
    keep_freed_memory();
    short_spins();
    let cli = Cli::parse();
    match cli.command {
        Command::Space(c) => space::run(c),
        Command::Arch(c) => arch::run(c),
        Command::Profile(a) => profile::run(a),
        Command::Lut(c) => lut::run(c),
        Command::Search(a) => search::run(*a),
        Command::Report(a) => search::report(a),
        Command::Train(a) => train::run(*a),
        Command::Export(a) => export::run(a),
        Command::Run(a) => model::run(a),
        Command::Bench(a) => model::run_bench(a),
        Command::Demo(a) => demo::run(a),
    }
}
