//! Architectures: one block choice per searchable layer of a space, in a compact text form
//! (`k3_e1 | k3_e6 k5_e1 k3_e1 k3_e1 | …`, one group per stage) and as JSON that carries its space.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rng::SplitMix;
use crate::space::{Block, LayerSpec, Space};

/// Version of the architecture file format.
pub const ARCH_SCHEMA: u32 = 1;

/// A point of a search space.
#[derive(Clone, Debug, PartialEq)]
pub struct Arch {
    /// Display name (`fbnet-b`, or a search run's sample name).
    pub name: String,
    pub space: Space,
    pub choices: Vec<Block>,
}

/// The JSON form of an architecture: self-contained (it embeds the space) and checked by the hash.
/// Other fields (the costs `fbnet arch show --json` adds, a search run's scores) are ignored on reading.
#[derive(Serialize, Deserialize)]
struct ArchFile {
    schema: u32,
    name: String,
    space_hash: String,
    /// The compact text form.
    arch: String,
    space: Space,
}

impl Arch {
    /// Parses the compact text form against `space`: one `|`-separated group per stage, each with as
    /// many blocks as the stage has layers, each block legal at its layer.
    pub fn parse(name: &str, space: &Space, text: &str) -> Result<Arch> {
        let groups: Vec<&str> = text.split('|').collect();
        if groups.len() != space.stages.len() {
            return Err(Error::invalid(format!(
                "architecture `{name}` has {} stage groups, space `{}` has {} stages",
                groups.len(),
                space.name,
                space.stages.len()
            )));
        }
        let mut choices = Vec::new();
        for (i, (group, stage)) in groups.iter().zip(&space.stages).enumerate() {
            let blocks = group
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<Vec<Block>>>()?;
            if blocks.len() != stage.layers {
                return Err(Error::invalid(format!(
                    "architecture `{name}`: stage {i} has {} blocks, the space's stage has {} layers",
                    blocks.len(),
                    stage.layers
                )));
            }
            choices.extend(blocks);
        }
        Arch::new(name, space.clone(), choices)
    }

    /// An architecture from a flat list of choices, checked against the space.
    pub fn new(name: &str, space: Space, choices: Vec<Block>) -> Result<Arch> {
        let layers = space.layers();
        if choices.len() != layers.len() {
            return Err(Error::invalid(format!(
                "architecture `{name}` has {} choices, space `{}` has {} layers",
                choices.len(),
                space.name,
                layers.len()
            )));
        }
        for (layer, block) in layers.iter().zip(&choices) {
            if !space.candidates.contains(block) {
                return Err(Error::invalid(format!(
                    "architecture `{name}`: layer {} uses `{block}`, which is not a candidate of space `{}`",
                    layer.index, space.name
                )));
            }
            if !layer.allows(*block) {
                return Err(Error::invalid(format!(
                    "architecture `{name}`: layer {} cannot be `skip` ({}→{} channels, stride {})",
                    layer.index, layer.cin, layer.cout, layer.stride
                )));
            }
        }
        Ok(Arch {
            name: name.to_string(),
            space,
            choices,
        })
    }

    /// A uniformly random architecture of `space` (each layer picks among its allowed candidates).
    pub fn random(space: &Space, name: &str, rng: &mut SplitMix) -> Result<Arch> {
        let choices: Vec<Block> = space
            .layers()
            .iter()
            .map(|l| {
                let c = space.candidates_at(l);
                c[(rng.next_u64() % c.len() as u64) as usize]
            })
            .collect();
        Arch::new(name, space.clone(), choices)
    }

    /// The compact text form, one group per stage.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let mut i = 0;
        for (s, stage) in self.space.stages.iter().enumerate() {
            if s > 0 {
                out.push_str(" | ");
            }
            let names: Vec<&str> = self.choices[i..i + stage.layers]
                .iter()
                .map(|b| b.name())
                .collect();
            out.push_str(&names.join(" "));
            i += stage.layers;
        }
        out
    }

    /// Layers paired with their chosen blocks.
    pub fn layers(&self) -> impl Iterator<Item = (LayerSpec, Block)> + '_ {
        self.space
            .layers()
            .into_iter()
            .zip(self.choices.iter().copied())
    }

    /// JSON (embedding the space and its hash).
    pub fn to_json(&self) -> String {
        let file = ArchFile {
            schema: ARCH_SCHEMA,
            name: self.name.clone(),
            space_hash: self.space.hash(),
            arch: self.text(),
            space: self.space.clone(),
        };
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }

    /// Reads an architecture JSON written by [`Arch::to_json`]; `origin` names the file in errors.
    pub fn from_json(text: &str, origin: &Path) -> Result<Arch> {
        let file: ArchFile = serde_json::from_str(text)
            .map_err(|e| Error::bad_file(origin, format!("not an architecture file: {e}")))?;
        if file.schema != ARCH_SCHEMA {
            return Err(Error::bad_file(
                origin,
                format!(
                    "architecture schema {} is not supported (expected {ARCH_SCHEMA})",
                    file.schema
                ),
            ));
        }
        file.space
            .validate()
            .map_err(|e| Error::bad_file(origin, e.to_string()))?;
        let hash = file.space.hash();
        if hash != file.space_hash {
            return Err(Error::bad_file(
                origin,
                format!(
                    "space hash {} does not match its embedded space (hash {hash}): the file was edited or belongs to another space",
                    file.space_hash
                ),
            ));
        }
        Arch::parse(&file.name, &file.space, &file.arch)
            .map_err(|e| Error::bad_file(origin, e.to_string()))
    }

    /// A built-in name or the path of an architecture JSON file.
    pub fn load(name_or_path: &str) -> Result<Arch> {
        if let Some(b) = builtin(name_or_path) {
            return b;
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            let names: Vec<&str> = BUILTINS.iter().map(|b| b.name).collect();
            return Err(Error::invalid(format!(
                "`{name_or_path}` is neither a built-in architecture ({}) nor an existing file",
                names.join(", ")
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Arch::from_json(&text, path)
    }

    /// Fails unless the architecture belongs to the space with hash `hash`.
    pub fn check_space(&self, hash: &str, what: &str) -> Result<()> {
        let own = self.space.hash();
        if own != hash {
            return Err(Error::invalid(format!(
                "architecture `{}` belongs to space `{}` (hash {own}) but {what} is for space hash {hash}",
                self.name, self.space.name
            )));
        }
        Ok(())
    }
}

/// A built-in architecture: its space and choices, with the published cost figures where known.
pub struct Builtin {
    pub name: &'static str,
    pub description: &'static str,
    /// Space constructor (FBNet-A has head 1504; the 96 px model has width 0.35).
    pub space: fn() -> Space,
    pub text: &'static str,
    /// Published (MACs in millions, params in millions) of this definition at 224 px / 1000 classes
    /// (mobile-vision's model zoo), where known.
    pub published: Option<(f64, f64)>,
    /// The paper's Table 3 figures (MACs in millions, params in millions, top-1 %, latency ms on the
    /// Samsung S8), where given.
    pub paper: Option<(f64, f64, f64, f64)>,
}

fn space_a() -> Space {
    let mut s = Space::fbnet_224();
    s.name = "fbnet-224-h1504".into();
    s.head_channels = 1504;
    s
}

fn space_96() -> Space {
    let mut s = Space::fbnet_224().with_variant(Some(96), Some(0.35), None);
    s.name = "fbnet-96-w0.35".into();
    s
}

/// The registered architectures (from Meta's mobile-vision FBNet model definitions).
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "fbnet-a",
        description: "FBNet-A (paper Table 3), head 1504",
        space: space_a,
        text: "skip | k3_e3 k3_e1 skip skip | k5_e6 k3_e3 k5_e1 k3_e3 | k5_e6 k5_e3 k5_e1_g2 k5_e6 | k3_e6 k5_e1_g2 k5_e3 k3_e1_g2 | k5_e6 k5_e6 k5_e3 k5_e6 | k5_e6",
        published: Some((244.5, 4.3)),
        paper: Some((249.0, 4.3, 73.0, 19.8)),
    },
    Builtin {
        name: "fbnet-b",
        description: "FBNet-B (paper Table 3)",
        space: Space::fbnet_224,
        text: "k3_e1 | k3_e6 k5_e1 k3_e1 k3_e1 | k5_e6 k5_e3 k3_e6 k5_e6 | k5_e6 k5_e6 skip k5_e3 | k5_e6 k3_e1 k5_e1 k5_e3 | k5_e6 k5_e1 k5_e6 k5_e6 | k3_e6",
        published: Some((291.1, 4.8)),
        paper: Some((295.0, 4.5, 74.1, 23.1)),
    },
    Builtin {
        name: "fbnet-c",
        description: "FBNet-C (paper Table 3)",
        space: Space::fbnet_224,
        text: "k3_e1 | k3_e6 skip k3_e1 k3_e1 | k5_e6 k5_e3 k5_e6 k3_e6 | k5_e6 k5_e3 k5_e6 k5_e6 | k5_e6 k5_e6 k5_e6 k5_e3 | k5_e6 k5_e6 k5_e6 k5_e6 | k3_e6",
        published: Some((378.2, 5.5)),
        paper: Some((375.0, 5.5, 74.9, 28.1)),
    },
    Builtin {
        name: "fbnet-96-0.35-1",
        description: "FBNet for 96 px input, width 0.35 (paper Table 4)",
        space: space_96,
        text: "k3_e1 | k3_e6 k3_e6 skip skip | k5_e6 k5_e6 skip skip | k5_e6 skip skip skip | k3_e6 skip skip skip | k5_e6 k5_e6 skip skip | k5_e6",
        published: None,
        paper: None,
    },
    Builtin {
        name: "fbnet-s8",
        description: "FBNet searched for the Samsung Galaxy S8 (paper section 4.3)",
        space: Space::fbnet_224,
        text: "k3_e1 | k3_e3 k3_e1 skip skip | k5_e6 k3_e3 k3_e3 k3_e6 | k5_e6 k5_e3 k5_e3 k5_e3 | k3_e6 k5_e3 k5_e3 k5_e3 | k5_e6 k5_e6 k5_e3 k5_e6 | k5_e6",
        published: None,
        paper: None,
    },
    Builtin {
        name: "fbnet-iphonex",
        description: "FBNet searched for the iPhone X (paper section 4.3)",
        space: Space::fbnet_224,
        text: "skip | k3_e6 k3_e1 k3_e1 k3_e1 | k3_e6 k3_e6 k3_e6 k3_e6 | k3_e6 k3_e6 k3_e3 k3_e6 | k3_e6 k3_e3 k3_e3 k3_e3 | k5_e6 k5_e6 k5_e6 k5_e3 | k5_e6",
        published: None,
        paper: None,
    },
    Builtin {
        name: "mbv2-like",
        description: "MobileNetV2-like baseline in the same space: every layer k3_e6",
        space: Space::fbnet_224,
        text: "k3_e6 | k3_e6 k3_e6 k3_e6 k3_e6 | k3_e6 k3_e6 k3_e6 k3_e6 | k3_e6 k3_e6 k3_e6 k3_e6 | k3_e6 k3_e6 k3_e6 k3_e6 | k3_e6 k3_e6 k3_e6 k3_e6 | k3_e6",
        published: None,
        paper: None,
    },
];

/// The built-in architecture called `name`, if any.
pub fn builtin(name: &str) -> Option<Result<Arch>> {
    BUILTINS
        .iter()
        .find(|b| b.name == name)
        .map(|b| Arch::parse(b.name, &(b.space)(), b.text))
}

/// The same choices placed in another space with the same layer structure (for validating a table of
/// one space with the FBNet models, whose own spaces differ in head or width).
pub fn builtin_in(name: &str, space: &Space) -> Option<Result<Arch>> {
    BUILTINS
        .iter()
        .find(|b| b.name == name)
        .map(|b| Arch::parse(b.name, space, b.text))
}
