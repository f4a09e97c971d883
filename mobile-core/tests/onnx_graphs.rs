//! ONNX Runtime runs the graphs the builder writes, and the int8 QDQ form tracks the fp32 form.

use mobile_core::measure::random_inputs;
use mobile_core::onnx::{Dtype, RandomWeights, arch_graph, op_graph};
use mobile_core::runtime::{RangeEstimate, SessionConfig, calibrate, run};
use mobile_core::{Arch, BUILTINS, Block, Op, Space, builtin};

fn tiny_space() -> Space {
    Space::fbnet_small().with_variant(Some(16), Some(0.25), Some(10))
}

/// Runs `op` in fp32 and int8 (calibrated on the same input) and returns (fp32 output, int8 output, the
/// output quantisation step).
fn fp32_and_int8(op: &Op, seed: u64) -> (Vec<f32>, Vec<f32>, f32) {
    let cfg = SessionConfig::default();
    let fp = op_graph(op, Dtype::Fp32, &mut RandomWeights { seed }, None).unwrap();
    let input = random_inputs(&fp.input_shape, 1, seed).remove(0);
    let ranges = calibrate(
        &fp,
        std::slice::from_ref(&input),
        cfg,
        RangeEstimate::MinMax,
    )
    .unwrap();
    let q = op_graph(op, Dtype::Int8, &mut RandomWeights { seed }, Some(&ranges)).unwrap();
    let mut s_fp = cfg.session(&fp.model.to_bytes()).unwrap();
    let mut s_q = cfg.session(&q.model.to_bytes()).unwrap();
    let a = run(&mut s_fp, &input, &fp.input_shape).unwrap().remove(0);
    let b = run(&mut s_q, &input, &q.input_shape).unwrap().remove(0);
    assert_eq!(a.0, b.0, "{op}: output shapes differ");
    let last = fp.activations.last().unwrap();
    let (lo, hi) = ranges[last];
    let step = (hi.max(0.0) - lo.min(0.0)) / 255.0;
    (a.1, b.1, step)
}

#[test]
fn every_op_of_a_space_runs_with_the_right_output_shape() {
    let space = tiny_space();
    let cfg = SessionConfig::default();
    for op in space.unique_ops() {
        let g = op_graph(&op, Dtype::Fp32, &mut RandomWeights { seed: 1 }, None).unwrap();
        let mut s = cfg.session(&g.model.to_bytes()).unwrap();
        let n: usize = g.input_shape.iter().product();
        let out = run(&mut s, &vec![0.5; n], &g.input_shape)
            .unwrap()
            .remove(0);
        let expect = match op {
            Op::Classifier { classes, .. } => vec![1, classes],
            _ => vec![1, op.cout(), op.hw_out(), op.hw_out()],
        };
        assert_eq!(out.0, expect, "{op}");
        assert!(out.1.iter().all(|v| v.is_finite()), "{op}");
    }
}

#[test]
fn int8_blocks_track_fp32_within_a_few_quantisation_steps() {
    // A grouped block with its channel shuffle, an expanding residual block, a strided block, the stem
    // and the classifier.
    let ops = [
        Op::Block {
            block: Block::K5E1G2,
            cin: 32,
            cout: 32,
            hw: 8,
            stride: 1,
        },
        Op::Block {
            block: Block::K3E6,
            cin: 16,
            cout: 16,
            hw: 8,
            stride: 1,
        },
        Op::Block {
            block: Block::K5E3,
            cin: 16,
            cout: 24,
            hw: 8,
            stride: 2,
        },
        Op::Stem {
            cin: 3,
            cout: 16,
            hw: 16,
            stride: 2,
        },
        Op::Classifier {
            cin: 64,
            hw: 4,
            classes: 10,
        },
    ];
    for (i, op) in ops.iter().enumerate() {
        let (a, b, step) = fp32_and_int8(op, 7 + i as u64);
        let max_diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(
            max_diff <= 6.0 * step,
            "{op}: max |fp32 - int8| = {max_diff}, step {step}, scale {scale}"
        );
        // and it is not trivially equal: a quantised graph differs somewhere
        assert!(
            max_diff > 0.0,
            "{op}: int8 output identical to fp32, quantisation did not happen"
        );
    }
}

#[test]
fn shuffle_is_applied_in_the_graph() {
    // In a g2 block without a shuffle, the second half of the outputs depends only on the second half
    // of the inputs (both grouped 1x1s keep the halves apart). With the shuffle after the first 1x1, a
    // change confined to the first half of the inputs must reach the second half of the outputs.
    let op = Op::Block {
        block: Block::K3E1G2,
        cin: 16,
        cout: 16,
        hw: 4,
        stride: 1,
    };
    let g = op_graph(&op, Dtype::Fp32, &mut RandomWeights { seed: 3 }, None).unwrap();
    let mut s = SessionConfig::default()
        .session(&g.model.to_bytes())
        .unwrap();
    let n: usize = g.input_shape.iter().product();
    let x = random_inputs(&g.input_shape, 1, 5).remove(0);
    let mut y = x.clone();
    for v in &mut y[..n / 2] {
        *v += 1.0;
    }
    let a = run(&mut s, &x, &g.input_shape).unwrap().remove(0).1;
    let b = run(&mut s, &y, &g.input_shape).unwrap().remove(0).1;
    let half = n / 2;
    let changed = a[half..]
        .iter()
        .zip(&b[half..])
        .any(|(p, q)| (p - q).abs() > 1e-4);
    assert!(
        changed,
        "second group's outputs ignore the first group's inputs: no channel shuffle"
    );
}

#[test]
fn every_builtin_architecture_runs_on_a_zero_input() {
    let cfg = SessionConfig::default();
    for b in BUILTINS {
        let arch = builtin(b.name).unwrap().unwrap();
        let g = arch_graph(
            &arch,
            Dtype::Fp32,
            &mut RandomWeights { seed: 0 },
            None,
            1,
            &[],
        )
        .unwrap();
        let mut s = cfg.session(&g.model.to_bytes()).unwrap();
        let n: usize = g.input_shape.iter().product();
        let out = run(&mut s, &vec![0.0; n], &g.input_shape)
            .unwrap()
            .remove(0);
        assert_eq!(out.0, vec![1, arch.space.num_classes], "{}", b.name);
        assert!(out.1.iter().all(|v| v.is_finite()), "{}", b.name);
    }
}

#[test]
fn whole_int8_network_tracks_fp32_top1() {
    let space = tiny_space();
    let arch = Arch::parse(
        "t",
        &space,
        "k3_e1 | k3_e6 k5_e1_g2 skip k3_e3 | k5_e6 k3_e1 skip k3_e1_g2 | k5_e3 skip k3_e6 k5_e1 | k3_e6 k5_e6 skip k3_e3 | k5_e6 k5_e1 skip k5_e3 | k3_e6",
    )
    .unwrap();
    let cfg = SessionConfig::default();
    let fp = arch_graph(
        &arch,
        Dtype::Fp32,
        &mut RandomWeights { seed: 11 },
        None,
        1,
        &[],
    )
    .unwrap();
    let calib = random_inputs(&fp.input_shape, 8, 99);
    let ranges = calibrate(&fp, &calib, cfg, RangeEstimate::MinMax).unwrap();
    let q = arch_graph(
        &arch,
        Dtype::Int8,
        &mut RandomWeights { seed: 11 },
        Some(&ranges),
        1,
        &[],
    )
    .unwrap();
    let mut s_fp = cfg.session(&fp.model.to_bytes()).unwrap();
    let mut s_q = cfg.session(&q.model.to_bytes()).unwrap();
    // evaluated on inputs the calibration never saw
    let held_out = random_inputs(&fp.input_shape, 32, 100);
    let argmax = |v: &[f32]| (0..v.len()).max_by(|&i, &j| v[i].total_cmp(&v[j])).unwrap();
    let mut rel = Vec::new();
    let mut same_top1 = 0;
    for x in &held_out {
        let a = run(&mut s_fp, x, &fp.input_shape).unwrap().remove(0).1;
        let b = run(&mut s_q, x, &q.input_shape).unwrap().remove(0).1;
        same_top1 += usize::from(argmax(&a) == argmax(&b));
        let range = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        rel.push(diff / range);
    }
    let worst = rel.iter().cloned().fold(0f32, f32::max);
    assert!(
        worst < 0.25,
        "int8 logits drift {worst:.3} of the logit scale from fp32"
    );
    eprintln!(
        "int8 top-1 agrees with fp32 on {same_top1} of 32 held-out inputs, worst drift {worst:.3}"
    );
    assert!(
        same_top1 >= 28,
        "int8 top-1 agrees with fp32 on only {same_top1} of 32 held-out inputs"
    );
}
