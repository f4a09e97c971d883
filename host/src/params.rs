//! Named parameters of a network, created with seeded values and saved as safetensors.
//!
//! candle's `VarMap` initialises from candle's CPU generator, which ignores seeds; a search must be
//! reproducible from its `--seed`, so every value is drawn here from the host generator. Names follow the
//! ONNX graphs of the shared core (`stem`, `l3.k5_e6.dw`, `head`, `classifier.fc`) with `.weight`,
//! `.bn.gamma`… appended, so an export can find every tensor by the name the graph builder asks for.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use candle_core::{Device, Tensor, Var};
use mobile_core::rng::SplitMix;

/// What the optimiser does with a parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Convolution and fully connected weights: trained with weight decay.
    Weight,
    /// Batch-norm scales and shifts, biases: trained without weight decay (as mobile-vision does).
    NoDecay,
    /// Running statistics of batch norm: not trained, saved with the weights.
    Buffer,
}

/// How a parameter starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Normal with standard deviation √(2 / fan_out) (Kaiming, fan-out mode: torchvision's MobileNet init).
    Kaiming {
        fan_out: usize,
    },
    /// Normal with the given standard deviation (the classifier).
    Normal(f32),
    Const(f32),
}

#[derive(Clone, Debug)]
pub struct Param {
    pub var: Var,
    pub kind: Kind,
}

/// The parameters of one network, by name, in creation order of names (sorted map: saving is canonical).
#[derive(Debug)]
pub struct Params {
    device: Device,
    rng: SplitMix,
    map: BTreeMap<String, Param>,
}

impl Params {
    pub fn new(device: &Device, seed: u64) -> Params {
        Params {
            device: device.clone(),
            rng: SplitMix::new(seed),
            map: BTreeMap::new(),
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Creates parameter `name` (names are unique).
    pub fn create(&mut self, name: &str, shape: &[usize], init: Init, kind: Kind) -> Result<Var> {
        ensure!(
            !self.map.contains_key(name),
            "parameter {name} created twice"
        );
        let n: usize = shape.iter().product();
        let values = match init {
            Init::Kaiming { fan_out } => {
                let std = (2.0 / fan_out.max(1) as f64).sqrt() as f32;
                self.rng.normals(n).into_iter().map(|v| v * std).collect()
            }
            Init::Normal(std) => self.rng.normals(n).into_iter().map(|v| v * std).collect(),
            Init::Const(c) => vec![c; n],
        };
        let var = Var::from_tensor(&Tensor::from_vec(values, shape, &self.device)?)?;
        self.map.insert(
            name.to_string(),
            Param {
                var: var.clone(),
                kind,
            },
        );
        Ok(var)
    }

    /// Every parameter by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Param)> {
        self.map.iter()
    }

    /// Trainable parameters (not buffers) by name.
    pub fn trainable(&self) -> impl Iterator<Item = (&String, &Param)> {
        self.map.iter().filter(|(_, p)| p.kind != Kind::Buffer)
    }

    /// The trainable parameters by name, as shared handles (cheap clones of the same variables), so an
    /// optimiser can update them while the network that owns them is borrowed elsewhere.
    pub fn handles(&self) -> Vec<(String, Param)> {
        self.trainable()
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<&Param> {
        self.map.get(name)
    }

    /// Number of trainable values.
    pub fn count(&self) -> usize {
        self.trainable().map(|(_, p)| p.var.elem_count()).sum()
    }

    /// All values by name (detached copies of the current values).
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.map
            .iter()
            .map(|(k, p)| (k.clone(), p.var.as_tensor().detach()))
            .collect()
    }

    /// Writes every parameter to a safetensors file.
    pub fn save(&self, path: &Path) -> Result<()> {
        candle_core::safetensors::save(&self.tensors(), path)
            .with_context(|| format!("{}: cannot write parameters", path.display()))
    }

    /// Sets every parameter from `tensors`, which must hold exactly these names and shapes (a checkpoint
    /// of another architecture or space is refused, naming `origin`).
    pub fn assign(&self, tensors: &HashMap<String, Tensor>, origin: &Path) -> Result<()> {
        let o = origin.display();
        for (name, p) in &self.map {
            let Some(t) = tensors.get(name) else {
                bail!("{o}: no tensor `{name}`: the checkpoint is of another network")
            };
            ensure!(
                t.dims() == p.var.dims(),
                "{o}: tensor `{name}` has shape {:?}, the network needs {:?}",
                t.dims(),
                p.var.dims()
            );
            p.var.set(&t.to_device(&self.device)?)?;
        }
        if let Some(extra) = tensors.keys().find(|k| !self.map.contains_key(*k)) {
            bail!(
                "{o}: tensor `{extra}` belongs to no parameter: the checkpoint is of another network"
            );
        }
        Ok(())
    }

    /// Reads a safetensors file written by [`Params::save`] into these parameters.
    pub fn load(&self, path: &Path) -> Result<()> {
        let tensors = candle_core::safetensors::load(path, &self.device)
            .with_context(|| format!("{}: not a readable safetensors file", path.display()))?;
        self.assign(&tensors, path)
    }
}
