//! The operators a network of a space is made of, as the latency table sees them: the fixed stem, one
//! candidate block per searchable layer, the head convolution, and the classifier (global average pool +
//! fully connected). Each op knows its cost (MACs, parameters) and the key under which its latency is
//! tabled, so the profiler, the predictor and the ONNX builder all work from the same list.

use std::collections::BTreeSet;
use std::fmt;

use crate::arch::Arch;
use crate::space::{Block, LayerSpec, Space};

/// One operator of a network, with every shape needed to build, time and count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// 3x3 convolution + BN + ReLU on the network input.
    Stem {
        cin: usize,
        cout: usize,
        hw: usize,
        stride: usize,
    },
    /// A candidate block of a searchable layer.
    Block {
        block: Block,
        cin: usize,
        cout: usize,
        hw: usize,
        stride: usize,
    },
    /// The last 1x1 convolution + BN + ReLU.
    Head { cin: usize, cout: usize, hw: usize },
    /// Global average pool and the fully connected classifier.
    Classifier {
        cin: usize,
        hw: usize,
        classes: usize,
    },
}

/// Multiply-accumulates and parameters of an op (convolutions and FC; BN counted as 2 parameters per
/// channel, as PyTorch counts trainable parameters; pooling and additions cost no MACs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    pub macs: u64,
    pub params: u64,
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, o: Cost) -> Cost {
        Cost {
            macs: self.macs + o.macs,
            params: self.params + o.params,
        }
    }
}

impl std::iter::Sum for Cost {
    fn sum<I: Iterator<Item = Cost>>(iter: I) -> Cost {
        iter.fold(Cost::default(), |a, b| a + b)
    }
}

/// A convolution followed by BN: `k`x`k`, `cin`→`cout`, `groups`, on an output of `hw_out`².
fn conv_bn(cin: usize, cout: usize, k: usize, groups: usize, hw_out: usize) -> Cost {
    let weights = (cin / groups * cout * k * k) as u64;
    Cost {
        macs: weights * (hw_out * hw_out) as u64,
        params: weights + 2 * cout as u64,
    }
}

/// Channels inside a block (after the first 1x1).
pub fn mid_channels(block: Block, cin: usize) -> usize {
    cin * block.expansion().max(1)
}

impl Op {
    /// Spatial size of the op's output.
    pub fn hw_out(&self) -> usize {
        match *self {
            Op::Stem { hw, stride, .. } | Op::Block { hw, stride, .. } => hw.div_ceil(stride),
            Op::Head { hw, .. } => hw,
            Op::Classifier { .. } => 1,
        }
    }

    /// Input shape (channels, height = width).
    pub fn input(&self) -> (usize, usize) {
        match *self {
            Op::Stem { cin, hw, .. }
            | Op::Block { cin, hw, .. }
            | Op::Head { cin, hw, .. }
            | Op::Classifier { cin, hw, .. } => (cin, hw),
        }
    }

    /// Output channels (classes for the classifier).
    pub fn cout(&self) -> usize {
        match *self {
            Op::Stem { cout, .. } | Op::Block { cout, .. } | Op::Head { cout, .. } => cout,
            Op::Classifier { classes, .. } => classes,
        }
    }

    /// Whether the op computes nothing (`skip`): it has no table entry and zero latency.
    pub fn is_identity(&self) -> bool {
        matches!(
            self,
            Op::Block {
                block: Block::Skip,
                ..
            }
        )
    }

    /// MACs and parameters.
    pub fn cost(&self) -> Cost {
        match *self {
            Op::Stem {
                cin,
                cout,
                hw,
                stride,
            } => conv_bn(cin, cout, 3, 1, hw.div_ceil(stride)),
            Op::Head { cin, cout, hw } => conv_bn(cin, cout, 1, 1, hw),
            Op::Classifier { cin, classes, .. } => Cost {
                macs: (cin * classes) as u64,
                params: (cin * classes + classes) as u64,
            },
            Op::Block {
                block: Block::Skip, ..
            } => Cost::default(),
            Op::Block {
                block,
                cin,
                cout,
                hw,
                stride,
            } => {
                let mid = mid_channels(block, cin);
                let g = block.groups();
                let hw_out = hw.div_ceil(stride);
                let expand = if block.has_expansion_conv() {
                    conv_bn(cin, mid, 1, g, hw)
                } else {
                    Cost::default()
                };
                expand
                    + conv_bn(mid, mid, block.kernel(), mid, hw_out)
                    + conv_bn(mid, cout, 1, g, hw_out)
            }
        }
    }

    /// The key of this op in a latency table: kind, shapes and stride, e.g.
    /// `k5_e6/c32-64/h28/s2` or `stem/c3-16/h224/s2`.
    pub fn key(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Op::Stem {
                cin,
                cout,
                hw,
                stride,
            } => write!(f, "stem/c{cin}-{cout}/h{hw}/s{stride}"),
            Op::Block {
                block,
                cin,
                cout,
                hw,
                stride,
            } => write!(f, "{block}/c{cin}-{cout}/h{hw}/s{stride}"),
            Op::Head { cin, cout, hw } => write!(f, "head/c{cin}-{cout}/h{hw}/s1"),
            Op::Classifier { cin, hw, classes } => {
                write!(f, "classifier/c{cin}-{classes}/h{hw}/s1")
            }
        }
    }
}

impl LayerSpec {
    /// The op of `block` placed at this layer.
    pub fn op(&self, block: Block) -> Op {
        Op::Block {
            block,
            cin: self.cin,
            cout: self.cout,
            hw: self.hw_in,
            stride: self.stride,
        }
    }
}

impl Space {
    /// The fixed op in front of the searchable layers.
    pub fn stem_op(&self) -> Op {
        Op::Stem {
            cin: self.input_channels,
            cout: self.stem_out(),
            hw: self.resolution,
            stride: self.stem_stride,
        }
    }

    /// The fixed ops after the searchable layers.
    pub fn tail_ops(&self) -> [Op; 2] {
        let hw = self.last_hw();
        [
            Op::Head {
                cin: self.last_channels(),
                cout: self.head_out(),
                hw,
            },
            Op::Classifier {
                cin: self.head_out(),
                hw,
                classes: self.num_classes,
            },
        ]
    }

    /// Every distinct op that some architecture of the space uses, skip excluded: what a profile times.
    pub fn unique_ops(&self) -> Vec<Op> {
        let mut set = BTreeSet::new();
        set.insert(self.stem_op());
        for layer in self.layers() {
            for block in self.candidates_at(&layer) {
                let op = layer.op(block);
                if !op.is_identity() {
                    set.insert(op);
                }
            }
        }
        set.extend(self.tail_ops());
        set.into_iter().collect()
    }
}

impl Arch {
    /// The network as a sequence of ops: stem, one op per layer (skip included), head, classifier.
    pub fn ops(&self) -> Vec<Op> {
        let mut ops = vec![self.space.stem_op()];
        ops.extend(self.layers().map(|(layer, block)| layer.op(block)));
        ops.extend(self.space.tail_ops());
        ops
    }

    /// Total MACs and parameters.
    pub fn cost(&self) -> Cost {
        self.ops().iter().map(Op::cost).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{BUILTINS, builtin};

    /// The published counts of mobile-vision's definitions at 224 px / 1000 classes: ours must agree
    /// within 1% for B and C, within 2% for A (whose g2 blocks keep their first 1x1, as the paper says).
    #[test]
    fn macs_and_params_match_published_counts() {
        for (name, tol) in [("fbnet-a", 0.02), ("fbnet-b", 0.01), ("fbnet-c", 0.01)] {
            let b = BUILTINS.iter().find(|b| b.name == name).unwrap();
            let (macs, params) = b.published.unwrap();
            let cost = builtin(name).unwrap().unwrap().cost();
            let m = cost.macs as f64 / 1e6;
            let p = cost.params as f64 / 1e6;
            assert!(
                (m / macs - 1.0).abs() <= tol,
                "{name}: {m:.1}M MACs vs {macs}M"
            );
            // published params are given to 0.1M: allow that rounding on top of the tolerance
            assert!(
                (p - params).abs() <= params * tol + 0.05,
                "{name}: {p:.2}M params vs {params}M"
            );
        }
    }

    #[test]
    fn unique_ops_of_the_paper_space() {
        let s = Space::fbnet_224();
        let ops = s.unique_ops();
        // 12 distinct layer shapes × 8 non-skip candidates + stem, head, classifier.
        assert_eq!(ops.len(), 12 * 8 + 3);
        assert!(ops.iter().all(|o| !o.is_identity()));
    }

    #[test]
    fn every_builtin_parses_and_lists_its_ops() {
        for b in BUILTINS {
            let arch = builtin(b.name).unwrap().unwrap();
            assert_eq!(arch.ops().len(), arch.space.num_layers() + 3);
            let again = crate::arch::Arch::parse(b.name, &arch.space, &arch.text()).unwrap();
            assert_eq!(again, arch);
            assert!(arch.cost().macs > 0);
        }
    }
}
