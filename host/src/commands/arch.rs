//! `fbnet arch list|show|onnx|random`.

use std::path::PathBuf;

use anyhow::Context;
use mobile_core::measure::build_at;
use mobile_core::onnx::{Dtype, RandomWeights, arch_graph};
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
    /// Draw uniformly random architectures of a table's space (optionally near a latency) as files,
    /// and print the median latency of random architectures.
    Random(RandomArgs),
}

/// The random architectures `fbnet arch random` draws: uniformly per layer, like `fbnet lut validate`'s,
/// optionally only those within a latency band (the baselines of a search at equal latency).
#[derive(clap::Args)]
pub struct RandomArgs {
    /// The latency table: its space is sampled and its latencies filter and describe the draws.
    #[arg(long)]
    pub lut: PathBuf,
    /// Latencies of this dtype.
    #[arg(long, default_value = "int8")]
    pub dtype: Dtype,
    /// How many architectures to write.
    #[arg(long, default_value_t = 4)]
    pub count: usize,
    /// Keep only architectures whose predicted latency is within --tolerance of this (ms).
    #[arg(long)]
    pub near_ms: Option<f64>,
    /// Relative tolerance of --near-ms.
    #[arg(long, default_value_t = 0.05)]
    pub tolerance: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Instead of random draws, write `all-BLOCK.json`: BLOCK at every layer that offers it, the
    /// layer's first candidate elsewhere (hand-designed baselines such as all-k3_e6 or all-skip).
    #[arg(long, value_name = "BLOCK")]
    pub all: Option<String>,
    /// Folder for `random-K.json` (the architecture files `fbnet train` takes).
    #[arg(long)]
    pub out: PathBuf,
}

/// Uniform draws tried before `count` land in the band; where the band is too rare for that (a
/// searched network far below the median latency), a random walk inside the band takes over.
const MAX_DRAWS: usize = 200_000;
/// Single-layer changes of the random walk per architecture.
const WALK_STEPS: usize = 20_000;

fn random(a: RandomArgs) -> anyhow::Result<()> {
    use fbnet::latency::LatencyTable;
    use mobile_core::rng::SplitMix;
    let lut = mobile_core::lut::Lut::load(&a.lut)?;
    let space = lut.space.clone();
    let table = LatencyTable::new(&lut, &space, a.dtype)?;
    anyhow::ensure!(
        a.tolerance > 0.0 && a.tolerance.is_finite(),
        "--tolerance {} must be positive",
        a.tolerance
    );
    let mut rng = SplitMix::new(a.seed);
    let draw = |rng: &mut SplitMix| -> Vec<usize> {
        table
            .layers
            .iter()
            .map(|l| (rng.next_u64() % l.len() as u64) as usize)
            .collect()
    };
    let mut sample: Vec<f64> = (0..1001)
        .map(|_| table.latency_of(&draw(&mut rng)))
        .collect();
    sample.sort_by(f64::total_cmp);
    println!(
        "random architectures of {} at {}: median {:.4} ms (p10 {:.4}, p90 {:.4}; 1001 draws)",
        space.name,
        a.dtype,
        sample[500] / 1000.0,
        sample[100] / 1000.0,
        sample[900] / 1000.0
    );
    std::fs::create_dir_all(&a.out)
        .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", a.out.display()))?;
    let write = |name: &str, choice: &[usize]| -> anyhow::Result<()> {
        let blocks = choice
            .iter()
            .zip(&table.candidates)
            .map(|(&i, c)| c[i])
            .collect();
        let arch = Arch::new(name, space.clone(), blocks)?;
        let file = a.out.join(format!("{name}.json"));
        mobile_core::files::write_atomic(&file, arch.to_json().as_bytes())?;
        println!(
            "{} {:.4} ms  {}",
            file.display(),
            table.latency_of(choice) / 1000.0,
            arch.text()
        );
        Ok(())
    };
    if let Some(block) = &a.all {
        let block: mobile_core::Block = block.parse()?;
        let choice: Vec<usize> = table
            .candidates
            .iter()
            .map(|c| c.iter().position(|&b| b == block).unwrap_or(0))
            .collect();
        return write(&format!("all-{block}"), &choice);
    }
    let in_band = |lat: f64| {
        a.near_ms
            .is_none_or(|t| (lat / 1000.0 - t).abs() <= a.tolerance * t)
    };
    let (mut written, mut draws) = (0, 0);
    while written < a.count && draws < MAX_DRAWS {
        draws += 1;
        let choice = draw(&mut rng);
        if in_band(table.latency_of(&choice)) {
            written += 1;
            write(&format!("random-{written}"), &choice)?;
        }
    }
    if written < a.count {
        // uniform draws rarely land here: start each architecture from the most likely one of random
        // per-layer preferences within the band, then walk by random single-layer changes that stay in
        // it (the walk's stationary distribution is uniform over the band's architectures)
        let t = a.near_ms.unwrap_or_default() * 1000.0;
        let (lo, hi) = (t * (1.0 - a.tolerance), t * (1.0 + a.tolerance));
        println!(
            "{written} of {MAX_DRAWS} uniform draws lay within {:.0}% of {} ms; the rest by a random walk in the band",
            100.0 * a.tolerance,
            t / 1000.0
        );
        while written < a.count {
            let prefs: Vec<Vec<f64>> = table
                .layers
                .iter()
                .map(|l| (0..l.len()).map(|_| rng.uniform() + 1e-3).collect())
                .collect();
            let mut choice = fbnet::decision::most_likely_within(&table, &prefs, lo, hi)
                .with_context(|| {
                    format!(
                        "no architecture of the space lies within {:.0}% of {} ms",
                        100.0 * a.tolerance,
                        t / 1000.0
                    )
                })?;
            for _ in 0..WALK_STEPS {
                let l = (rng.next_u64() % choice.len() as u64) as usize;
                let old = choice[l];
                choice[l] = (rng.next_u64() % table.layers[l].len() as u64) as usize;
                if !in_band(table.latency_of(&choice)) {
                    choice[l] = old;
                }
            }
            written += 1;
            write(&format!("random-{written}"), &choice)?;
        }
    }
    Ok(())
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
        ArchCommand::Random(a) => random(a),
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
            mobile_core::files::write_atomic(&out, &graph.model.to_bytes())?;
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
