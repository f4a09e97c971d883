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

/// How the searchable layers of a super net combine their candidates in one forward pass.
#[derive(Clone, Copy, Debug)]
pub enum Mix<'a> {
    /// The soft relaxation `Σ_i m_i · b_i(x)` over every candidate, with one weight vector `[k]` per
    /// layer, or one row per image `[n, k]`.
    Soft(&'a [Tensor]),
    /// One path: each layer runs only the candidate it names.
    Hard(&'a [Choice]),
}

/// A layer's candidate on a hard path: one for the batch, or one per image.
#[derive(Clone, Debug)]
pub struct Choice {
    /// The candidate of the batch (one entry), or of each image.
    pub index: Vec<usize>,
    /// Straight-through weights when θ learns from the path, `[k]` for the batch or `[n, k]` per image,
    /// one-hot in value: an image's output is scaled by its candidate's entry, which is 1 forward and
    /// carries θ's gradient backward.
    pub weights: Option<Tensor>,
}

impl Choice {
    /// The same candidate for every image.
    pub fn batch(index: usize, weights: Option<Tensor>) -> Choice {
        Choice {
            index: vec![index],
            weights,
        }
    }
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

    /// Logits `[n, classes]` of images `[n, c, h, w]`. `mix` says how the super net's layers combine
    /// their candidates (one entry per layer); without it every layer must have a single candidate.
    pub fn forward(&self, x: &Tensor, mix: Option<Mix<'_>>, train: bool) -> Result<Tensor> {
        self.logits(&self.features(x, mix, train)?)
    }

    /// The classifier's input `[n, head channels]`: the globally pooled head output, where training from
    /// scratch applies dropout.
    pub fn features(&self, x: &Tensor, mix: Option<Mix<'_>>, train: bool) -> Result<Tensor> {
        let entries = match mix {
            Some(Mix::Soft(m)) => Some(m.len()),
            Some(Mix::Hard(p)) => Some(p.len()),
            None => None,
        };
        if let Some(n) = entries {
            ensure!(
                n == self.layers.len(),
                "{n} mixing entries for {} layers",
                self.layers.len()
            );
        }
        let mut h = self.stem.forward(x, train)?;
        for (l, layer) in self.layers.iter().enumerate() {
            h = match mix {
                _ if layer.nets.len() == 1 => run(&layer.nets[0], &h, train)?,
                Some(Mix::Hard(paths)) => layer.path(l, &paths[l], &h, train)?,
                Some(Mix::Soft(m)) => {
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

impl Layer {
    /// The layer's output on a hard path: the batch through its one candidate, or each image through
    /// its own (the images grouped by candidate, each group run as a batch, the outputs put back in
    /// the images' order).
    fn path(&self, l: usize, choice: &Choice, h: &Tensor, train: bool) -> Result<Tensor> {
        let net = |i: usize| {
            self.nets.get(i).ok_or_else(|| {
                anyhow::anyhow!(
                    "layer {l} has {} candidates, the path takes candidate {i}",
                    self.nets.len()
                )
            })
        };
        let scaled = |y: Tensor, w: Option<&Tensor>, i: usize| match w {
            Some(w) => Ok::<_, anyhow::Error>(weighted(&y, w, i)?),
            None => Ok(y),
        };
        if let [i] = choice.index[..] {
            return scaled(run(net(i)?, h, train)?, choice.weights.as_ref(), i);
        }
        let n = h.dim(0)?;
        ensure!(
            choice.index.len() == n,
            "layer {l}: {} path entries for {n} images",
            choice.index.len()
        );
        let device = h.device();
        let (mut parts, mut order) = (Vec::new(), Vec::with_capacity(n));
        for i in 0..self.nets.len() {
            let images: Vec<u32> = (0..n)
                .filter(|&b| choice.index[b] == i)
                .map(|b| b as u32)
                .collect();
            if images.is_empty() {
                continue;
            }
            let rows = Tensor::new(images.as_slice(), device)?;
            let y = run(net(i)?, &h.index_select(&rows, 0)?, train)?;
            let w = match &choice.weights {
                Some(w) => Some(w.index_select(&rows, 0)?),
                None => None,
            };
            parts.push(scaled(y, w.as_ref(), i)?);
            order.extend(images);
        }
        // output row r holds image order[r]; put image b back at row b
        let mut back = vec![0u32; n];
        for (r, &b) in order.iter().enumerate() {
            back[b as usize] = r as u32;
        }
        let back = Tensor::new(back.as_slice(), device)?;
        Ok(Tensor::cat(&parts, 0)?.index_select(&back, 0)?)
    }
}

fn run(net: &Option<BlockNet>, x: &Tensor, train: bool) -> Result<Tensor> {
    match net {
        Some(b) => b.forward(x, train),
        None => Ok(x.clone()),
    }
}
