//! The two optimisers of the paper's search (appendix A), written out because candle-nn's SGD has neither
//! momentum nor weight decay and its optimisers' state cannot be checkpointed: SGD with momentum and
//! coupled (L2) weight decay for the weights, Adam with L2 weight decay for the architecture parameters,
//! both as PyTorch defines them. The state is a map of named tensors so a checkpoint can hold it.
//!
//! Gradients returned by `backward()` still reference the forward graph: every stored buffer is detached,
//! or each step would keep the previous step's graph alive (about a gigabyte per step on the super net).

use std::collections::HashMap;

use anyhow::{Result, ensure};
use candle_core::Tensor;
use candle_core::backprop::GradStore;

use crate::params::{Kind, Param};

/// SGD with momentum `μ` and L2 weight decay on [`Kind::Weight`] parameters:
/// `b ← μ·b + g + wd·w`, `w ← w − lr·b` (PyTorch's SGD, dampening 0).
#[derive(Debug)]
pub struct Sgd {
    pub momentum: f64,
    pub weight_decay: f64,
    buffers: HashMap<String, Tensor>,
}

impl Sgd {
    pub fn new(momentum: f64, weight_decay: f64) -> Sgd {
        Sgd {
            momentum,
            weight_decay,
            buffers: HashMap::new(),
        }
    }

    pub fn step(&mut self, params: &[(String, Param)], grads: &GradStore, lr: f64) -> Result<()> {
        self.step_scaled(params, grads, lr, 1.0)
    }

    /// A step on the gradients `grads` multiplied by `scale` (before weight decay and momentum): the
    /// joint search's backward gives the weights the latency-aware loss's gradient, which is the
    /// cross-entropy's times a factor of the latency; scaling it back keeps their steps those of the
    /// cross-entropy alone, as in every other schedule.
    pub fn step_scaled(
        &mut self,
        params: &[(String, Param)],
        grads: &GradStore,
        lr: f64,
        scale: f64,
    ) -> Result<()> {
        for (name, p) in params {
            let Some(g) = grads.get(p.var.as_tensor()) else {
                continue;
            };
            let w = p.var.as_tensor().detach();
            let mut d = g.detach();
            if scale != 1.0 {
                d = d.affine(scale, 0.0)?;
            }
            if p.kind == Kind::Weight && self.weight_decay > 0.0 {
                d = (d + w.affine(self.weight_decay, 0.0)?)?;
            }
            let b = match self.buffers.get(name) {
                Some(b) => (b.affine(self.momentum, 0.0)? + d)?,
                None => d,
            };
            p.var.set(&(w - b.affine(lr, 0.0)?)?)?;
            self.buffers.insert(name.to_string(), b.detach());
        }
        Ok(())
    }

    /// The momentum buffers, named `momentum.<parameter>`.
    pub fn state(&self) -> HashMap<String, Tensor> {
        prefixed(&self.buffers, "momentum")
    }

    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>) {
        self.buffers = unprefixed(tensors, "momentum");
    }
}

/// Adam (β = 0.9, 0.999, ε = 1e-8) with L2 weight decay added to the gradient, as PyTorch's `Adam`.
#[derive(Debug)]
pub struct Adam {
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub steps: u64,
    m: HashMap<String, Tensor>,
    v: HashMap<String, Tensor>,
}

impl Adam {
    pub fn new(weight_decay: f64) -> Adam {
        Adam {
            weight_decay,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            steps: 0,
            m: HashMap::new(),
            v: HashMap::new(),
        }
    }

    /// One step on the tensors `params` (the architecture parameters θ).
    pub fn step(
        &mut self,
        params: &[(&str, &candle_core::Var)],
        grads: &GradStore,
        lr: f64,
    ) -> Result<()> {
        self.steps += 1;
        let t = self.steps as i32;
        let (c1, c2) = (1.0 - self.beta1.powi(t), 1.0 - self.beta2.powi(t));
        for &(name, var) in params {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let w = var.as_tensor().detach();
            let mut g = g.detach();
            if self.weight_decay > 0.0 {
                g = (g + w.affine(self.weight_decay, 0.0)?)?;
            }
            let m = match self.m.get(name) {
                Some(m) => (m.affine(self.beta1, 0.0)? + g.affine(1.0 - self.beta1, 0.0)?)?,
                None => g.affine(1.0 - self.beta1, 0.0)?,
            };
            let v = match self.v.get(name) {
                Some(v) => {
                    (v.affine(self.beta2, 0.0)? + g.sqr()?.affine(1.0 - self.beta2, 0.0)?)?
                }
                None => g.sqr()?.affine(1.0 - self.beta2, 0.0)?,
            };
            let denom = v.affine(1.0 / c2, 0.0)?.sqrt()?.affine(1.0, self.eps)?;
            let update = m.affine(lr / c1, 0.0)?.div(&denom)?;
            var.set(&(w - update)?)?;
            self.m.insert(name.to_string(), m.detach());
            self.v.insert(name.to_string(), v.detach());
        }
        Ok(())
    }

    /// The moments, named `adam_m.<parameter>` and `adam_v.<parameter>`.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut out = prefixed(&self.m, "adam_m");
        out.extend(prefixed(&self.v, "adam_v"));
        out
    }

    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, steps: u64) -> Result<()> {
        self.m = unprefixed(tensors, "adam_m");
        self.v = unprefixed(tensors, "adam_v");
        ensure!(
            self.m.len() == self.v.len(),
            "Adam state has unequal moments"
        );
        self.steps = steps;
        Ok(())
    }
}

fn prefixed(map: &HashMap<String, Tensor>, prefix: &str) -> HashMap<String, Tensor> {
    map.iter()
        .map(|(k, v)| (format!("{prefix}.{k}"), v.clone()))
        .collect()
}

fn unprefixed(map: &HashMap<String, Tensor>, prefix: &str) -> HashMap<String, Tensor> {
    let p = format!("{prefix}.");
    map.iter()
        .filter_map(|(k, v)| k.strip_prefix(&p).map(|k| (k.to_string(), v.clone())))
        .collect()
}

/// How the learning rate falls.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Schedule {
    /// ×`gamma` at each of these epochs (0-based epoch at which the new rate starts); the paper decays
    /// ×0.1 at 90, 180 and 270 of 360 epochs.
    Step { milestones: Vec<usize>, gamma: f64 },
    /// Cosine from the initial rate to 0 over all steps.
    Cosine,
}

impl Schedule {
    /// The paper's step decay scaled to `epochs`: ×0.1 at a quarter, half and three quarters.
    pub fn paper(epochs: usize) -> Schedule {
        let mut milestones: Vec<usize> = [1, 2, 3]
            .iter()
            .map(|q| epochs * q / 4)
            .filter(|&m| m > 0)
            .collect();
        milestones.dedup();
        Schedule::Step {
            milestones,
            gamma: 0.1,
        }
    }

    /// The rate at `step` of `total` steps, in epoch `epoch`.
    pub fn lr(&self, base: f64, epoch: usize, step: u64, total: u64) -> f64 {
        match self {
            Schedule::Step { milestones, gamma } => {
                base * gamma.powi(milestones.iter().filter(|&&m| epoch >= m).count() as i32)
            }
            Schedule::Cosine => {
                0.5 * base
                    * (1.0 + (std::f64::consts::PI * step as f64 / total.max(1) as f64).cos())
            }
        }
    }
}
