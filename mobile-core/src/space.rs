//! The layer-wise search space of the FBNet paper (section 3.1, Tables 1 and 2, Figure 3).
//!
//! A space is data: a stem, stages of (channels, layers, first stride), a head and a classifier. It is
//! normalised by the pure function [`Space::layers`] into the flat list of searchable layers with their
//! shapes, so everything downstream (MAC counts, ONNX graphs, latency tables, the super net) works from one
//! list and can be tested without any tensor.
//!
//! Conventions where the paper is silent (they follow Meta's published FBNet model definitions):
//! - An `e1` block has no expansion 1x1 convolution (it would map C to C); its depthwise convolution acts on
//!   the block's input directly.
//! - A `g2` block keeps its first 1x1 (C to C, groups 2), follows it with a channel shuffle, and uses groups 2
//!   in its last 1x1 as well, as the paper's text describes.
//! - `skip` is a candidate only where the layer's input and output shapes match (stride 1, same channels).
//! - The width multiplier scales the stem and stage channels, rounded to a multiple of 8 as MobileNetV2
//!   does; the head is never made narrower than its base width (as MobileNetV2 treats its last conv).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// One of the nine candidate blocks of Table 2. The names encode kernel, expansion and groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Block {
    K3E1,
    K3E1G2,
    K3E3,
    K3E6,
    K5E1,
    K5E1G2,
    K5E3,
    K5E6,
    Skip,
}

impl Block {
    /// All nine candidates in the order of Table 2.
    pub const ALL: [Block; 9] = [
        Block::K3E1,
        Block::K3E1G2,
        Block::K3E3,
        Block::K3E6,
        Block::K5E1,
        Block::K5E1G2,
        Block::K5E3,
        Block::K5E6,
        Block::Skip,
    ];

    /// The name used in architecture texts, tables and file names (`k5_e1_g2`).
    pub fn name(self) -> &'static str {
        match self {
            Block::K3E1 => "k3_e1",
            Block::K3E1G2 => "k3_e1_g2",
            Block::K3E3 => "k3_e3",
            Block::K3E6 => "k3_e6",
            Block::K5E1 => "k5_e1",
            Block::K5E1G2 => "k5_e1_g2",
            Block::K5E3 => "k5_e3",
            Block::K5E6 => "k5_e6",
            Block::Skip => "skip",
        }
    }

    /// Depthwise kernel size (0 for skip).
    pub fn kernel(self) -> usize {
        match self {
            Block::K3E1 | Block::K3E1G2 | Block::K3E3 | Block::K3E6 => 3,
            Block::K5E1 | Block::K5E1G2 | Block::K5E3 | Block::K5E6 => 5,
            Block::Skip => 0,
        }
    }

    /// Expansion ratio of the first 1x1 (0 for skip).
    pub fn expansion(self) -> usize {
        match self {
            Block::K3E1 | Block::K3E1G2 | Block::K5E1 | Block::K5E1G2 => 1,
            Block::K3E3 | Block::K5E3 => 3,
            Block::K3E6 | Block::K5E6 => 6,
            Block::Skip => 0,
        }
    }

    /// Groups of the 1x1 convolutions.
    pub fn groups(self) -> usize {
        match self {
            Block::K3E1G2 | Block::K5E1G2 => 2,
            _ => 1,
        }
    }

    /// Whether the block has a first 1x1 convolution: expanding blocks and grouped blocks do, plain `e1`
    /// blocks do not (see the module documentation).
    pub fn has_expansion_conv(self) -> bool {
        self != Block::Skip && (self.expansion() != 1 || self.groups() != 1)
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Block {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Block::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Block::ALL.iter().map(|b| b.name()).collect();
                Error::invalid(format!(
                    "unknown block `{s}` (expected one of {})",
                    names.join(" ")
                ))
            })
    }
}

impl From<Block> for String {
    fn from(b: Block) -> String {
        b.name().to_string()
    }
}

impl TryFrom<String> for Block {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

/// A stage of searchable layers: `layers` layers with `channels` outputs; only the first has `stride`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    pub channels: usize,
    pub layers: usize,
    pub stride: usize,
}

/// A whole search space: the fixed layers around the searchable stages and the candidate set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Space {
    /// A human name (`fbnet-224`); not part of what makes two spaces different, but hashed all the same so
    /// that a renamed space is recognisably another file.
    pub name: String,
    /// Input height and width in pixels.
    pub resolution: usize,
    /// Input channels (3 for photos, 1 for Fashion-MNIST).
    pub input_channels: usize,
    /// Output channels of the 3x3 stem convolution (before the width multiplier).
    pub stem_channels: usize,
    /// Stride of the stem.
    pub stem_stride: usize,
    /// Searchable stages (channels before the width multiplier).
    pub stages: Vec<Stage>,
    /// Output channels of the last 1x1 convolution.
    pub head_channels: usize,
    /// Classes of the final fully connected layer.
    pub num_classes: usize,
    /// Channel width multiplier applied to stem and stages.
    pub width: f64,
    /// The candidates each layer chooses from (`skip` is offered only where shapes allow).
    pub candidates: Vec<Block>,
}

/// One searchable layer of a space, with the shapes every downstream consumer needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerSpec {
    /// Position among the searchable layers (0-based).
    pub index: usize,
    /// Stage the layer belongs to (0-based).
    pub stage: usize,
    pub cin: usize,
    pub cout: usize,
    pub stride: usize,
    /// Input height and width.
    pub hw_in: usize,
    /// Output height and width.
    pub hw_out: usize,
}

impl LayerSpec {
    /// Whether the output has the input's shape, so a residual add and `skip` are possible.
    pub fn shape_preserving(&self) -> bool {
        self.stride == 1 && self.cin == self.cout
    }

    /// Whether `block` may be chosen at this layer.
    pub fn allows(&self, block: Block) -> bool {
        block != Block::Skip || self.shape_preserving()
    }
}

/// Output size of a "same"-padded convolution (padding k/2) with `stride`.
pub fn conv_out(hw: usize, stride: usize) -> usize {
    hw.div_ceil(stride)
}

/// The largest spaces fbnet accepts. They are far above any network that runs on a phone (the paper's
/// space at 224 px needs 1.2 M values for its largest activation) and low enough that what passes
/// cannot exhaust a phone's memory while it is built or profiled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    pub resolution: usize,
    pub input_channels: usize,
    pub classes: usize,
    pub stages: usize,
    pub layers_per_stage: usize,
    /// Channels of a stage, the stem or the head, before the width multiplier.
    pub channels: usize,
    pub width: f64,
    pub candidates: usize,
    /// Values of the largest activation tensor (2^26: 256 MiB of fp32).
    pub activation_elements: u64,
}

/// The limits [`Space::validate`] applies.
pub const LIMITS: Limits = Limits {
    resolution: 1024,
    input_channels: 16,
    classes: 100_000,
    stages: 16,
    layers_per_stage: 32,
    channels: 4096,
    width: 8.0,
    candidates: 64,
    activation_elements: 1 << 26,
};

/// Round `channels × width` to a multiple of 8, never dropping more than 10% (MobileNetV2's rule).
pub fn scale_channels(channels: usize, width: f64) -> usize {
    let v = channels as f64 * width;
    let mut rounded = (((v + 4.0) / 8.0).floor() as usize * 8).max(8);
    if (rounded as f64) < 0.9 * v {
        rounded += 8;
    }
    rounded
}

/// The names of the built-in spaces, for help texts.
pub const PRESETS: [&str; 2] = ["fbnet-224", "fbnet-small"];

impl Space {
    /// The paper's space (Table 1) at 224 px for ImageNet: 22 searchable layers, head 1984.
    pub fn fbnet_224() -> Space {
        let stages = [
            (16, 1, 1),
            (24, 4, 2),
            (32, 4, 2),
            (64, 4, 2),
            (112, 4, 1),
            (184, 4, 2),
            (352, 1, 1),
        ]
        .map(|(channels, layers, stride)| Stage {
            channels,
            layers,
            stride,
        })
        .to_vec();
        Space {
            name: "fbnet-224".into(),
            resolution: 224,
            input_channels: 3,
            stem_channels: 16,
            stem_stride: 2,
            stages,
            head_channels: 1984,
            num_classes: 1000,
            width: 1.0,
            candidates: Block::ALL.to_vec(),
        }
    }

    /// The small-image preset for 28–32 px inputs (CIFAR-10, Fashion-MNIST): Table 1's layers and
    /// channels, but the stem and the second stage keep stride 1, so the network downsamples 8× instead
    /// of 32× and a 32 px input ends at 4x4 instead of 1x1.
    pub fn fbnet_small() -> Space {
        let mut s = Space::fbnet_224();
        s.name = "fbnet-small".into();
        s.resolution = 32;
        s.stem_stride = 1;
        s.stages[1].stride = 1;
        s.num_classes = 10;
        s
    }

    /// A built-in space by name (see [`PRESETS`]).
    pub fn preset(name: &str) -> Result<Space> {
        match name {
            "fbnet-224" => Ok(Space::fbnet_224()),
            "fbnet-small" => Ok(Space::fbnet_small()),
            _ => Err(Error::invalid(format!(
                "unknown space `{name}` (built-in spaces: {})",
                PRESETS.join(", ")
            ))),
        }
    }

    /// A built-in name or the path of a space JSON file.
    pub fn load(name_or_path: &str) -> Result<Space> {
        if PRESETS.contains(&name_or_path) {
            return Space::preset(name_or_path);
        }
        let path = std::path::Path::new(name_or_path);
        if !path.exists() {
            return Space::preset(name_or_path);
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let space: Space = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(path, format!("not a space description: {e}")))?;
        space
            .validate()
            .map_err(|e| Error::bad_file(path, e.to_string()))?;
        Ok(space)
    }

    /// Checks the space describes a buildable network.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(format!("space `{}`: {m}", self.name)));
        if self.resolution == 0 || self.input_channels == 0 || self.num_classes == 0 {
            return bad("resolution, input channels and classes must be positive".into());
        }
        if self.stages.is_empty() {
            return bad("no stages".into());
        }
        if !(self.width.is_finite() && self.width > 0.0) {
            return bad(format!(
                "width multiplier {} is not a positive number",
                self.width
            ));
        }
        let l = &LIMITS;
        for (what, v, max) in [
            ("resolution", self.resolution, l.resolution),
            ("input channels", self.input_channels, l.input_channels),
            ("classes", self.num_classes, l.classes),
            ("stages", self.stages.len(), l.stages),
            ("stem channels", self.stem_channels, l.channels),
            ("head channels", self.head_channels, l.channels),
            ("candidates", self.candidates.len(), l.candidates),
        ] {
            if v > max {
                return bad(format!("{what} {v} is above the limit of {max}"));
            }
        }
        if self.width > l.width {
            return bad(format!(
                "width multiplier {} is above the limit of {}",
                self.width, l.width
            ));
        }
        for (i, st) in self.stages.iter().enumerate() {
            if st.layers == 0 || st.channels == 0 || !(1..=2).contains(&st.stride) {
                return bad(format!(
                    "stage {i} needs layers > 0, channels > 0 and stride 1 or 2, got {st:?}"
                ));
            }
            if st.layers > l.layers_per_stage || st.channels > l.channels {
                return bad(format!(
                    "stage {i} has {} layers of {} channels: the limits are {} layers and {} channels",
                    st.layers, st.channels, l.layers_per_stage, l.channels
                ));
            }
        }
        if !(1..=2).contains(&self.stem_stride)
            || self.stem_channels == 0
            || self.head_channels == 0
        {
            return bad("stem stride must be 1 or 2, stem and head channels positive".into());
        }
        if self.candidates.iter().all(|b| *b == Block::Skip) {
            return bad("needs at least one candidate other than skip".into());
        }
        // Last, once strides and sizes are known to be sane: the largest activation any candidate
        // makes (the expanded tensor of a block at its input size), in checked arithmetic. A space that
        // would need gigabytes fails here, with a message, and not as an allocation failure on the
        // phone (which no panic handler can catch).
        let widest = self
            .candidates
            .iter()
            .map(|b| b.expansion().max(1))
            .max()
            .unwrap_or(1);
        let mut largest = (self.stem_out() as u64).checked_mul((self.stem_hw() as u64).pow(2));
        for layer in self.layers() {
            let mid = (layer.cin as u64).checked_mul(widest as u64);
            let elems = mid.and_then(|m| m.checked_mul((layer.hw_in as u64).checked_pow(2)?));
            largest = largest.zip(elems).map(|(a, b)| a.max(b));
        }
        match largest {
            Some(n) if n <= l.activation_elements => {}
            _ => {
                return bad(format!(
                    "its largest activation has {} values, above the limit of {} ({} MiB of fp32): lower the resolution or the width",
                    largest.map_or("too many".to_string(), |n| n.to_string()),
                    l.activation_elements,
                    (l.activation_elements * 4) >> 20
                ));
            }
        }
        Ok(())
    }

    /// Stem output channels after the width multiplier.
    pub fn stem_out(&self) -> usize {
        scale_channels(self.stem_channels, self.width)
    }

    /// Head channels after the width multiplier (never below the base width).
    pub fn head_out(&self) -> usize {
        if self.width > 1.0 {
            scale_channels(self.head_channels, self.width)
        } else {
            self.head_channels
        }
    }

    /// Spatial size after the stem.
    pub fn stem_hw(&self) -> usize {
        conv_out(self.resolution, self.stem_stride)
    }

    /// The flat list of searchable layers with their shapes.
    pub fn layers(&self) -> Vec<LayerSpec> {
        let mut out = Vec::new();
        let mut cin = self.stem_out();
        let mut hw = self.stem_hw();
        for (stage, st) in self.stages.iter().enumerate() {
            let cout = scale_channels(st.channels, self.width);
            for i in 0..st.layers {
                let stride = if i == 0 { st.stride } else { 1 };
                let hw_out = conv_out(hw, stride);
                out.push(LayerSpec {
                    index: out.len(),
                    stage,
                    cin,
                    cout,
                    stride,
                    hw_in: hw,
                    hw_out,
                });
                cin = cout;
                hw = hw_out;
            }
        }
        out
    }

    /// Number of searchable layers.
    pub fn num_layers(&self) -> usize {
        self.stages.iter().map(|s| s.layers).sum()
    }

    /// Channels entering the head (the last stage's width).
    pub fn last_channels(&self) -> usize {
        scale_channels(self.stages.last().map_or(0, |s| s.channels), self.width)
    }

    /// Spatial size entering the head.
    pub fn last_hw(&self) -> usize {
        self.stages
            .iter()
            .fold(self.stem_hw(), |hw, st| conv_out(hw, st.stride))
    }

    /// Candidates offered at `layer`, in the space's order.
    pub fn candidates_at(&self, layer: &LayerSpec) -> Vec<Block> {
        self.candidates
            .iter()
            .copied()
            .filter(|b| layer.allows(*b))
            .collect()
    }

    /// Content hash (SHA-256 of the canonical JSON, first 16 hex digits). Every table and architecture
    /// records it, so that one made for another space is refused.
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let digest = Sha256::digest(&json);
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A copy for images of `channels` channels (1 for Fashion-MNIST), named with an `-i{channels}` suffix.
    pub fn with_input_channels(mut self, channels: usize) -> Space {
        self.input_channels = channels;
        self.name += &format!("-i{channels}");
        self
    }

    /// A copy with other input resolution, width and classes (the variants of section 4).
    pub fn with_variant(
        mut self,
        resolution: Option<usize>,
        width: Option<f64>,
        classes: Option<usize>,
    ) -> Space {
        if let Some(r) = resolution {
            self.resolution = r;
        }
        if let Some(w) = width {
            self.width = w;
        }
        if let Some(c) = classes {
            self.num_classes = c;
        }
        let mut suffix = String::new();
        if let Some(r) = resolution {
            suffix += &format!("-r{r}");
        }
        if let Some(w) = width {
            suffix += &format!("-w{w}");
        }
        if let Some(c) = classes {
            suffix += &format!("-c{c}");
        }
        self.name += &suffix;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `space` and `arch` fuzz targets: a stem stride of 0 divided by zero in the
    /// activation check before the stride itself was checked.
    #[test]
    fn a_zero_stem_stride_is_an_error_not_a_panic() {
        let mut space = Space::fbnet_small();
        space.stem_stride = 0;
        let err = space.validate().unwrap_err().to_string();
        assert!(err.contains("stem stride"), "{err}");
    }

    #[test]
    fn spaces_beyond_the_limits_are_refused_before_anything_is_allocated() {
        assert!(Space::fbnet_224().validate().is_ok());
        // what a corrupt request could ask of the profiler: each refused with the limit named
        let huge = Space::fbnet_224().with_variant(Some(60_000), None, None);
        let err = huge.validate().unwrap_err().to_string();
        assert!(
            err.contains("resolution 60000") && err.contains("1024"),
            "{err}"
        );
        let wide = Space::fbnet_224().with_variant(Some(1024), Some(4.0), None);
        let err = wide.validate().unwrap_err().to_string();
        assert!(err.contains("largest activation"), "{err}");
        let err = Space::fbnet_224()
            .with_variant(None, None, Some(1_000_000))
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("classes"), "{err}");
        let err = Space::fbnet_224()
            .with_variant(None, Some(100.0), None)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("width"), "{err}");
    }

    #[test]
    fn table1_normalises_to_22_layers_with_first_layer_strides() {
        let s = Space::fbnet_224();
        let layers = s.layers();
        assert_eq!(layers.len(), 22);
        assert_eq!(s.stem_hw(), 112);
        // Only the first layer of a stage has the stage's stride.
        let strided: Vec<usize> = layers
            .iter()
            .filter(|l| l.stride == 2)
            .map(|l| l.index)
            .collect();
        assert_eq!(strided, vec![1, 5, 9, 17]);
        assert_eq!(layers[21].cout, 352);
        assert_eq!(layers[21].hw_out, 7);
        assert_eq!(s.last_hw(), 7);
        assert_eq!(s.last_channels(), 352);
        // skip only where shapes match
        assert!(layers[0].allows(Block::Skip));
        assert!(!layers[1].allows(Block::Skip));
        assert!(!layers[21].allows(Block::Skip));
        assert_eq!(s.candidates_at(&layers[2]).len(), 9);
        assert_eq!(s.candidates_at(&layers[1]).len(), 8);
    }

    #[test]
    fn small_preset_ends_at_4x4_for_32px() {
        let s = Space::fbnet_small();
        assert_eq!(s.last_hw(), 4);
        assert_eq!(s.clone().with_variant(Some(28), None, None).last_hw(), 4);
    }

    #[test]
    fn block_names_round_trip() {
        for b in Block::ALL {
            assert_eq!(b.name().parse::<Block>().unwrap(), b);
        }
        assert!("k7_e6".parse::<Block>().is_err());
        assert!(Block::K5E1G2.has_expansion_conv());
        assert!(!Block::K5E1.has_expansion_conv());
    }

    #[test]
    fn width_rounding_follows_mobilenet_v2() {
        assert_eq!(scale_channels(16, 0.35), 8);
        assert_eq!(scale_channels(24, 0.35), 8);
        assert_eq!(scale_channels(32, 0.35), 16);
        assert_eq!(scale_channels(112, 0.35), 40);
        assert_eq!(scale_channels(352, 0.35), 120);
        assert_eq!(scale_channels(184, 1.0), 184);
    }

    #[test]
    fn hash_changes_with_content_and_survives_json() {
        let a = Space::fbnet_224();
        let b = a.clone().with_variant(None, None, Some(10));
        assert_ne!(a.hash(), b.hash());
        let back: Space = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back.hash(), a.hash());
    }
}
