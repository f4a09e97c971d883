//! One module per subcommand.

pub mod arch;
pub mod demo;
pub mod export;
pub mod lut;
pub mod model;
pub mod profile;
pub mod search;
pub mod space;
pub mod train;

use std::path::PathBuf;

use mobile_core::Space;

/// What every training run (a search, a training from scratch) is started or resumed with.
#[derive(clap::Args, Clone, Debug)]
pub struct RunArgs {
    /// Train without random crops and flips.
    #[arg(long)]
    pub no_augment: bool,
    /// Fixes weight init, data order and augmentation (and a search's Gumbel noise).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Threads decoding and augmenting images ahead of the training step (default: 1 on the CPU, where
    /// the step itself uses every core; every core on a GPU, so that the GPU does not wait for images).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Where to train: `cpu`, or `cuda` (GPU 0; needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// The run folder (default: runs/<kind>-<name>-seed<seed>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the interrupted run in this folder, with the configuration it was started with.
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "out")]
    pub resume: Option<PathBuf>,
}

impl RunArgs {
    /// `--workers`, or its default for `--device`.
    pub fn workers(&self) -> usize {
        self.workers.unwrap_or_else(|| match self.device.as_str() {
            "cpu" => 1,
            _ => std::thread::available_parallelism().map_or(1, |n| n.get()),
        })
    }

    /// The device `--device` names.
    pub fn device(&self) -> anyhow::Result<candle_core::Device> {
        fbnet::device::by_name(&self.device)
    }
}

/// How the data side kept up, for the end of an epoch's line (search and train).
pub fn fed_line(d: fbnet::data::LoaderStats) -> String {
    format!(
        "; data: waited {:.1} s, loader {:.0} img/s on {} thread{}",
        d.waited_s,
        d.images_per_second,
        d.workers.max(1),
        if d.workers > 1 { "s" } else { "" }
    )
}

/// Choosing a space: a built-in name or a JSON file, with optional variants.
#[derive(clap::Args, Clone, Debug)]
pub struct SpaceArgs {
    /// Built-in space (fbnet-224, fbnet-small) or a space JSON file.
    #[arg(long, default_value = "fbnet-224")]
    pub space: String,
    /// Input resolution in pixels (overrides the space's).
    #[arg(long)]
    pub resolution: Option<usize>,
    /// Channel width multiplier (overrides the space's).
    #[arg(long)]
    pub width: Option<f64>,
    /// Number of classes (overrides the space's).
    #[arg(long)]
    pub classes: Option<usize>,
    /// Input channels (overrides the space's; 1 for grey images such as Fashion-MNIST).
    #[arg(long)]
    pub input_channels: Option<usize>,
}

impl SpaceArgs {
    pub fn load(&self) -> anyhow::Result<Space> {
        let mut space =
            Space::load(&self.space)?.with_variant(self.resolution, self.width, self.classes);
        if let Some(c) = self.input_channels {
            space = space.with_input_channels(c);
        }
        space.validate()?;
        Ok(space)
    }
}

/// Parses a comma-separated dtype list (`fp32,int8`).
pub fn parse_dtypes(s: &str) -> anyhow::Result<Vec<mobile_core::onnx::Dtype>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let d = part.parse()?;
        if !out.contains(&d) {
            out.push(d);
        }
    }
    anyhow::ensure!(!out.is_empty(), "no dtype given");
    Ok(out)
}
