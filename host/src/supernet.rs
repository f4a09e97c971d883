//! The stochastic super net of DNAS (paper section 3.3) and, as its one-candidate special case, the
//! stand-alone network of an architecture: one implementation of every block for search and training.
//!
//! Every searchable layer holds all of its candidates; in the super net its output is `Σ_i m_i · b_i(x)`
//! with `m` the layer's Gumbel-softmax weights (eq. 6). A layer with a single candidate just runs it.

use anyhow::{Result, ensure};
use candle_core::{Device, Tensor};
use mobile_core::{Arch, Block, Space};

use crate::kernels::{weighted, weighted_add};
use crate::layers::{BlockNet, Classifier, ConvBn};
use crate::params::Params;

/// One searchable layer: its candidates in the space's order and their networks (`None` for skip).
#[derive(Debug)]
pub struct Layer {
    pub candidates: Vec<Block>,
    nets: Vec<Option<BlockNet>>,
}

/// A network of a space: stem, searchable layers, head, classifier.
#[derive(Debug)]
pub struct Network {
    pub space: Space,
    pub params: Params,
    stem: ConvBn,
    pub layers: Vec<Layer>,
    head: ConvBn,
    classifier: Classifier,
}

impl Network {
    /// Builds a network whose layer `l` offers `choices[l]` (parameters named `l{l}.{block}` when a layer
    /// offers several candidates, `l{l}` when it has one, as the ONNX graph of an architecture names them).
    fn build(
        space: &Space,
        choices: Vec<Vec<Block>>,
        device: &Device,
        seed: u64,
    ) -> Result<Network> {
        let specs = space.layers();
        ensure!(
            choices.len() == specs.len(),
            "{} layer choices for {} layers",
            choices.len(),
            specs.len()
        );
        let mut p = Params::new(device, seed);
        let stem = ConvBn::full(
            &mut p,
            "stem",
            space.input_channels,
            space.stem_out(),
            3,
            space.stem_stride,
        )?;
        let mut layers = Vec::new();
        for (spec, candidates) in specs.iter().zip(choices) {
            let mut nets = Vec::new();
            for &block in &candidates {
                let prefix = if candidates.len() == 1 {
                    format!("l{}", spec.index)
                } else {
                    format!("l{}.{}", spec.index, block.name())
                };
                nets.push(BlockNet::new(&mut p, &prefix, block, spec)?);
            }
            layers.push(Layer { candidates, nets });
        }
        let head = ConvBn::pointwise(
            &mut p,
            "head",
            space.last_channels(),
            space.head_out(),
            1,
            true,
        )?;
        let classifier =
            Classifier::new(&mut p, "classifier.fc", space.head_out(), space.num_classes)?;
        Ok(Network {
            space: space.clone(),
            params: p,
            stem,
            layers,
            head,
            classifier,
        })
    }

    /// The super net of a space: every candidate at every layer.
    pub fn supernet(space: &Space, device: &Device, seed: u64) -> Result<Network> {
        let choices = space
            .layers()
            .iter()
            .map(|l| space.candidates_at(l))
            .collect();
        Network::build(space, choices, device, seed)
    }

    /// The stand-alone network of an architecture.
    pub fn standalone(arch: &Arch, device: &Device, seed: u64) -> Result<Network> {
        let choices = arch.choices.iter().map(|&b| vec![b]).collect();
        Network::build(&arch.space, choices, device, seed)
    }

    /// Logits `[n, classes]` of images `[n, c, h, w]`. `mix` holds one weight vector per layer (the super
    /// net's Gumbel-softmax samples); without it every layer must have a single candidate.
    pub fn forward(&self, x: &Tensor, mix: Option<&[Tensor]>, train: bool) -> Result<Tensor> {
        self.logits(&self.features(x, mix, train)?)
    }

    /// The classifier's input `[n, head channels]`: the globally pooled head output, where training from
    /// scratch applies dropout.
    pub fn features(&self, x: &Tensor, mix: Option<&[Tensor]>, train: bool) -> Result<Tensor> {
        if let Some(m) = mix {
            ensure!(
                m.len() == self.layers.len(),
                "{} mixing vectors for {} layers",
                m.len(),
                self.layers.len()
            );
        }
        let mut h = self.stem.forward(x, train)?;
        for (l, layer) in self.layers.iter().enumerate() {
            h = match mix {
                _ if layer.nets.len() == 1 => run(&layer.nets[0], &h, train)?,
                Some(m) => {
                    let mut acc: Option<Tensor> = None;
                    for (i, net) in layer.nets.iter().enumerate() {
                        let y = run(net, &h, train)?;
                        acc = Some(match acc {
                            Some(a) => weighted_add(&a, &y, &m[l], i)?,
                            None => weighted(&y, &m[l], i)?,
                        });
                    }
                    acc.ok_or_else(|| anyhow::anyhow!("layer {l} has no candidates"))?
                }
                None => anyhow::bail!(
                    "layer {l} has {} candidates and no mixing weights",
                    layer.nets.len()
                ),
            };
        }
        let h = self.head.forward(&h, train)?;
        Classifier::pool(&h)
    }

    /// Logits of pooled features.
    pub fn logits(&self, features: &Tensor) -> Result<Tensor> {
        self.classifier.forward(features)
    }
}

fn run(net: &Option<BlockNet>, x: &Tensor, train: bool) -> Result<Tensor> {
    match net {
        Some(b) => b.forward(x, train),
        None => Ok(x.clone()),
    }
}
