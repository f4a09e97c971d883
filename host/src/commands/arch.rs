//! `fbnet arch list|show|onnx`.

use std::path::PathBuf;

use mobile_core::onnx::{Dtype, RandomWeights, arch_graph};
use mobile_core::profile::build_at;
use mobile_core::runtime::SessionConfig;
use mobile_core::{Arch, BUILTINS, Op};
use serde::Serialize;

#[derive(clap::Subcommand)]
pub enum ArchCommand {
    /// List the built-in architectures.
    List,
    /// Per-layer table (input shape, block, stride, MACs, params) and totals.
    Show {
        /// Built-in name (see `fbnet arch list`) or an architecture JSON file.
        arch: String,
        /// Print as JSON instead (the architecture file, with costs).
        #[arg(long)]
        json: bool,
    },
    /// Write the whole network as ONNX with seeded random weights (to open in Netron or time with any
    /// tool).
    Onnx {
        /// Built-in name or architecture JSON file.
        arch: String,
        /// fp32, or int8 (QDQ, calibrated on seeded random inputs).
        #[arg(long, default_value = "fp32")]
        dtype: Dtype,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Seed of the random weights.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

#[derive(Serialize)]
struct LayerRow {
    op: String,
    input: [usize; 3],
    stride: usize,
    macs: u64,
    params: u64,
}

fn op_name(op: &Op) -> String {
    match op {
        Op::Stem { .. } => "stem 3x3".into(),
        Op::Block { block, .. } => block.to_string(),
        Op::Head { .. } => "head 1x1".into(),
        Op::Classifier { .. } => "pool+fc".into(),
    }
}

fn stride(op: &Op) -> usize {
    match *op {
        Op::Stem { stride, .. } | Op::Block { stride, .. } => stride,
        _ => 1,
    }
}

pub fn run(cmd: ArchCommand) -> anyhow::Result<()> {
    match cmd {
        ArchCommand::List => {
            for b in BUILTINS {
                let arch = Arch::load(b.name)?;
                let c = arch.cost();
                println!(
                    "{:<16} {:>7.1}M MACs {:>5.2}M params  {}",
                    b.name,
                    c.macs as f64 / 1e6,
                    c.params as f64 / 1e6,
                    b.description
                );
            }
            Ok(())
        }
        ArchCommand::Show { arch, json } => show(&Arch::load(&arch)?, json),
        ArchCommand::Onnx {
            arch,
            dtype,
            out,
            seed,
        } => {
            let arch = Arch::load(&arch)?;
            let mut weights = RandomWeights { seed };
            let meta = vec![
                ("fbnet.arch".to_string(), arch.text()),
                ("fbnet.space_hash".to_string(), arch.space.hash()),
                ("fbnet.weights".to_string(), format!("random seed {seed}")),
            ];
            let graph = build_at(dtype, SessionConfig::default(), seed, &mut |d, r| {
                arch_graph(&arch, d, &mut weights, r, 1, &meta)
            })?;
            std::fs::write(&out, graph.model.to_bytes())
                .map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
            println!(
                "wrote {} ({dtype}, input {:?})",
                out.display(),
                graph.input_shape
            );
            Ok(())
        }
    }
}

fn show(arch: &Arch, json: bool) -> anyhow::Result<()> {
    let rows: Vec<LayerRow> = arch
        .ops()
        .iter()
        .map(|op| {
            let (c, hw) = op.input();
            let cost = op.cost();
            LayerRow {
                op: op_name(op),
                input: [c, hw, hw],
                stride: stride(op),
                macs: cost.macs,
                params: cost.params,
            }
        })
        .collect();
    let total = arch.cost();
    let builtin = BUILTINS.iter().find(|b| b.name == arch.name);
    if json {
        let mut v: serde_json::Value = serde_json::from_str(&arch.to_json())?;
        v["layers"] = serde_json::to_value(&rows)?;
        v["macs"] = total.macs.into();
        v["params"] = total.params.into();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{} in space {} (hash {})",
        arch.name,
        arch.space.name,
        arch.space.hash()
    );
    println!("{}", arch.text());
    println!(
        "{:>5} {:<10} {:>14} {:>6} {:>10} {:>9}",
        "#", "op", "input", "stride", "MACs", "params"
    );
    for (i, r) in rows.iter().enumerate() {
        println!(
            "{:>5} {:<10} {:>14} {:>6} {:>9.2}M {:>8.3}M",
            i,
            r.op,
            format!("{}x{}x{}", r.input[0], r.input[1], r.input[2]),
            r.stride,
            r.macs as f64 / 1e6,
            r.params as f64 / 1e6
        );
    }
    println!(
        "total {:.1}M MACs, {:.2}M params",
        total.macs as f64 / 1e6,
        total.params as f64 / 1e6
    );
    if let Some(b) = builtin {
        if let Some((m, p)) = b.published {
            println!("published definition (mobile-vision): {m}M MACs, {p}M params");
        }
        if let Some((m, p, top1, ms)) = b.paper {
            println!(
                "paper Table 3: {m}M FLOPs, {p}M params, top-1 {top1}%, {ms} ms on Samsung S8"
            );
        }
    }
    Ok(())
}
