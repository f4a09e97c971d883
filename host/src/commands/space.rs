//! `fbnet space show`.

use super::SpaceArgs;

#[derive(clap::Subcommand)]
pub enum SpaceCommand {
    /// Print a space: fixed layers, searchable layers with their shapes and candidates, its hash.
    Show {
        #[command(flatten)]
        space: SpaceArgs,
        /// Print the space as JSON (the form a file passed to --space has).
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: SpaceCommand) -> anyhow::Result<()> {
    match cmd {
        SpaceCommand::Show { space, json } => {
            let s = space.load()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
                return Ok(());
            }
            println!("space {} (hash {})", s.name, s.hash());
            println!(
                "input {}x{}x{}, width {}, {} classes, {} searchable layers, {} ops to profile",
                s.input_channels,
                s.resolution,
                s.resolution,
                s.width,
                s.num_classes,
                s.num_layers(),
                s.unique_ops().len()
            );
            println!("stem    3x3 conv {} stride {}", s.stem_out(), s.stem_stride);
            println!(
                "{:>5} {:>5} {:>14} {:>6} {:>6}  candidates",
                "layer", "stage", "input", "cout", "stride"
            );
            for l in s.layers() {
                let names: Vec<&str> = s.candidates_at(&l).iter().map(|b| b.name()).collect();
                println!(
                    "{:>5} {:>5} {:>14} {:>6} {:>6}  {}",
                    l.index,
                    l.stage,
                    format!("{}x{}x{}", l.cin, l.hw_in, l.hw_in),
                    l.cout,
                    l.stride,
                    names.join(" ")
                );
            }
            println!(
                "head    1x1 conv {} at {}x{}, global average pool, fc {}",
                s.head_out(),
                s.last_hw(),
                s.last_hw(),
                s.num_classes
            );
            let per_layer: f64 = s
                .layers()
                .iter()
                .map(|l| (s.candidates_at(l).len() as f64).log10())
                .sum();
            println!("architectures: about 10^{per_layer:.1}");
            Ok(())
        }
    }
}
