//! ONNX graphs of ops and whole networks, emitted through [`GraphBuilder`] so that fp32 and int8 share one
//! description. The per-op graphs the profiler times and the whole-network graphs that are validated and
//! exported are made by the same [`emit_op`].

use super::Dtype;
use super::builder::{GraphBuilder, Ranges};
use super::proto::ModelProto;
use super::weights::WeightSource;
use crate::arch::Arch;
use crate::error::{Error, Result};
use crate::ops::{Op, mid_channels};
use crate::space::Block;

/// A built graph with what its users need to feed and calibrate it.
#[derive(Clone, Debug)]
pub struct NetworkGraph {
    pub model: ModelProto,
    /// Shape of the single float input `input` (NCHW, batch 1 unless asked otherwise).
    pub input_shape: Vec<usize>,
    /// Every activation tensor of the fp32 form, in order (the outputs of a calibration run).
    pub activations: Vec<String>,
}

impl NetworkGraph {
    /// A copy whose graph outputs are all activations, for a calibration run (fp32 graphs only).
    pub fn calibration_model(&self) -> ModelProto {
        let mut m = self.model.clone();
        if let Some(g) = m.graph.as_mut()
            && let Some(template) = g.output.first().cloned()
        {
            g.output = self
                .activations
                .iter()
                .map(|name| {
                    let mut v = template.clone();
                    v.name = name.clone();
                    v
                })
                .collect();
        }
        m
    }
}

/// Channel order after a shuffle of `groups` groups: output channel `i` reads input channel
/// `(i % groups)·(C/groups) + i / groups` (ShuffleNet's reshape–transpose–reshape, as one permutation).
pub fn shuffle_indices(channels: usize, groups: usize) -> Vec<usize> {
    let per = channels / groups;
    (0..channels)
        .map(|i| (i % groups) * per + i / groups)
        .collect()
}

/// Emits `op` reading activation `x`, with parameters named under `prefix`; returns the output name.
pub fn emit_op(
    b: &mut GraphBuilder<'_>,
    w: &mut dyn WeightSource,
    op: &Op,
    prefix: &str,
    x: &str,
) -> Result<String> {
    match *op {
        Op::Stem {
            cin, cout, stride, ..
        } => {
            let dims = [cout, cin, 3, 3];
            let (wt, bias) = w.conv(prefix, dims, true)?;
            b.conv(x, prefix, &wt, &bias, dims, stride, 1, true)
        }
        Op::Head { cin, cout, .. } => {
            let dims = [cout, cin, 1, 1];
            let (wt, bias) = w.conv(prefix, dims, true)?;
            b.conv(x, prefix, &wt, &bias, dims, 1, 1, true)
        }
        Op::Classifier { cin, classes, .. } => {
            let pooled = b.global_avg_pool(x, &format!("{prefix}.pool"))?;
            let flat = b.flatten(&pooled, &format!("{prefix}.flatten"))?;
            let name = format!("{prefix}.fc");
            let (wt, bias) = w.fc(&name, [classes, cin])?;
            b.gemm(&flat, &name, &wt, &bias, [classes, cin])
        }
        Op::Block {
            block: Block::Skip, ..
        } => Ok(x.to_string()),
        Op::Block {
            block,
            cin,
            cout,
            stride,
            ..
        } => {
            let mid = mid_channels(block, cin);
            let g = block.groups();
            let k = block.kernel();
            let mut h = x.to_string();
            if block.has_expansion_conv() {
                let name = format!("{prefix}.pw1");
                let dims = [mid, cin / g, 1, 1];
                let (wt, bias) = w.conv(&name, dims, true)?;
                h = b.conv(&h, &name, &wt, &bias, dims, 1, g, true)?;
                if g > 1 {
                    h = b.gather_channels(
                        &h,
                        &shuffle_indices(mid, g),
                        &format!("{prefix}.shuffle"),
                    )?;
                }
            }
            let name = format!("{prefix}.dw");
            let dims = [mid, 1, k, k];
            let (wt, bias) = w.conv(&name, dims, true)?;
            h = b.conv(&h, &name, &wt, &bias, dims, stride, mid, true)?;
            let name = format!("{prefix}.pw2");
            let dims = [cout, mid / g, 1, 1];
            let (wt, bias) = w.conv(&name, dims, false)?;
            h = b.conv(&h, &name, &wt, &bias, dims, 1, g, false)?;
            if stride == 1 && cin == cout {
                h = b.add(x, &h, &format!("{prefix}.add"))?;
            }
            Ok(h)
        }
    }
}

/// Emits a sequence of (parameter prefix, op) on an input `[batch, cin, hw, hw]` of the first op.
fn build(
    name: &str,
    ops: &[(String, Op)],
    dtype: Dtype,
    weights: &mut dyn WeightSource,
    ranges: Option<&Ranges>,
    batch: usize,
    metadata: &[(String, String)],
) -> Result<NetworkGraph> {
    let (cin, hw) = ops
        .first()
        .map(|(_, op)| op.input())
        .ok_or_else(|| Error::invalid("a network needs at least one op"))?;
    let input_shape = vec![batch, cin, hw, hw];
    let mut b = GraphBuilder::new(dtype, ranges)?;
    let mut x = b.input("input", &input_shape)?;
    for (prefix, op) in ops {
        x = emit_op(&mut b, weights, op, prefix, &x)?;
    }
    let activations = b.activations().to_vec();
    let model = b.finish(name, &[x], metadata);
    Ok(NetworkGraph {
        model,
        input_shape,
        activations,
    })
}

/// The graph of one op alone (what the profiler times), batch 1.
pub fn op_graph(
    op: &Op,
    dtype: Dtype,
    weights: &mut dyn WeightSource,
    ranges: Option<&Ranges>,
) -> Result<NetworkGraph> {
    build(
        &op.key(),
        &[("op".to_string(), *op)],
        dtype,
        weights,
        ranges,
        1,
        &[],
    )
}

/// The graph of a whole architecture: stem, every layer, head and classifier. Parameter names are
/// `stem`, `l{i}.pw1|dw|pw2`, `head`, `classifier.fc`.
pub fn arch_graph(
    arch: &Arch,
    dtype: Dtype,
    weights: &mut dyn WeightSource,
    ranges: Option<&Ranges>,
    batch: usize,
    metadata: &[(String, String)],
) -> Result<NetworkGraph> {
    let ops = arch.ops();
    let n = ops.len();
    let named: Vec<(String, Op)> = ops
        .into_iter()
        .enumerate()
        .map(|(i, op)| {
            let prefix = match i {
                0 => "stem".to_string(),
                i if i == n - 2 => "head".to_string(),
                i if i == n - 1 => "classifier".to_string(),
                i => format!("l{}", i - 1),
            };
            (prefix, op)
        })
        .collect();
    build(&arch.name, &named, dtype, weights, ranges, batch, metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_interleaves_the_groups() {
        assert_eq!(shuffle_indices(6, 2), vec![0, 3, 1, 4, 2, 5]);
        let mut sorted = shuffle_indices(48, 2);
        sorted.sort();
        assert_eq!(sorted, (0..48).collect::<Vec<_>>());
    }
}
