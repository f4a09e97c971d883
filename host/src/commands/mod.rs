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

use mobile_core::Space;

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
