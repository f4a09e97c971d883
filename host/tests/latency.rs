//! The differentiable latency term and the Gumbel-softmax relaxation of DNAS, checked against the table's
//! own prediction and against finite differences.

mod common;

use candle_core::{Device, Tensor, Var};
use fbnet::latency::{LatencyLoss, LatencyTable, gumbel_softmax};
use mobile_core::lut::Lut;
use mobile_core::onnx::Dtype;
use mobile_core::onnx::weights::SplitMix;
use mobile_core::{Space, builtin};

/// A complete fp32 table whose entry for each op is 1 + its MACs in millions (µs), overhead 5 µs.
fn table(space: &Space) -> Lut {
    common::synthetic_lut(
        space,
        Dtype::Fp32,
        |op| 1.0 + op.cost().macs as f64 / 1e6,
        5.0,
    )
}

#[test]
fn one_hot_expected_latency_is_the_table_prediction() {
    let space = Space::fbnet_224();
    let lut = table(&space);
    let t = LatencyTable::new(&lut, &space, Dtype::Fp32).unwrap();
    let arch = builtin("fbnet-b").unwrap().unwrap();
    let one_hot: Vec<Vec<f64>> = t
        .candidates
        .iter()
        .zip(&arch.choices)
        .map(|(c, b)| c.iter().map(|x| if x == b { 1.0 } else { 0.0 }).collect())
        .collect();
    let predicted = lut.predict(&arch, Dtype::Fp32).unwrap();
    assert!((t.expected_us(&one_hot) - predicted).abs() < 1e-6);
    // the tensor form agrees with the plain one on a non-trivial distribution
    let probs: Vec<Vec<f64>> = t
        .layers
        .iter()
        .map(|l| vec![1.0 / l.len() as f64; l.len()])
        .collect();
    let m: Vec<Tensor> = probs
        .iter()
        .map(|p| {
            Tensor::new(
                p.iter().map(|&v| v as f32).collect::<Vec<_>>().as_slice(),
                &Device::Cpu,
            )
            .unwrap()
        })
        .collect();
    let lat = t.expected(&m).unwrap().to_scalar::<f32>().unwrap() as f64;
    assert!((lat - t.expected_us(&probs)).abs() / lat < 1e-5);
}

#[test]
fn a_table_of_another_space_or_an_incomplete_one_is_refused() {
    let space = Space::fbnet_small();
    let lut = table(&space);
    let err = LatencyTable::new(&lut, &Space::fbnet_224(), Dtype::Fp32)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not for space `fbnet-224`"), "{err}");
    assert!(LatencyTable::new(&lut, &space, Dtype::Int8).is_err());
}

#[test]
fn gumbel_softmax_is_a_seeded_distribution_with_the_right_gradient() {
    let theta = Var::new(&[0.5f32, -1.0, 2.0, 0.0], &Device::Cpu).unwrap();
    let sample = |seed, tau| {
        gumbel_softmax(theta.as_tensor(), tau, &mut SplitMix::new(seed))
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let m = sample(3, 1.0);
    assert!((m.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    assert_eq!(m, sample(3, 1.0));
    assert_ne!(m, sample(4, 1.0));
    // a low temperature gives (nearly) the one-hot of the same argmax
    let cold = sample(3, 0.01);
    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0
    };
    assert_eq!(argmax(&cold), argmax(&m));
    assert!(cold.iter().cloned().fold(0f32, f32::max) > 0.99);

    // d/dθ of Σ w_i m_i against central differences (same noise: same seed)
    let w = Tensor::new(&[1.0f32, 3.0, -2.0, 0.5], &Device::Cpu).unwrap();
    let f = |t: &Tensor| {
        gumbel_softmax(t, 0.7, &mut SplitMix::new(9))
            .unwrap()
            .mul(&w)
            .unwrap()
            .sum_all()
            .unwrap()
    };
    let grads = f(theta.as_tensor()).backward().unwrap();
    let g = grads.get(&theta).unwrap().to_vec1::<f32>().unwrap();
    let base = theta.as_tensor().to_vec1::<f32>().unwrap();
    for i in 0..4 {
        let h = 1e-2f32;
        let mut up = base.clone();
        up[i] += h;
        let mut down = base.clone();
        down[i] -= h;
        let at = |v: Vec<f32>| {
            f(&Tensor::new(v.as_slice(), &Device::Cpu).unwrap())
                .to_scalar::<f32>()
                .unwrap()
        };
        let numeric = (at(up) - at(down)) / (2.0 * h);
        assert!(
            (numeric - g[i]).abs() < 2e-3,
            "θ[{i}]: autograd {} vs finite difference {numeric}",
            g[i]
        );
    }
}

#[test]
fn the_latency_losses_have_the_papers_form_and_gradient() {
    let ce = Tensor::new(2.0f32, &Device::Cpu).unwrap();
    let lat = Tensor::new(5000.0f32, &Device::Cpu).unwrap();
    let paper = LatencyLoss::default()
        .combine(&ce, &lat)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let expect = 2.0 * 0.2 * (5000f64.ln()).powf(0.6);
    assert!((paper as f64 - expect).abs() < 1e-4, "{paper} vs {expect}");
    let additive = LatencyLoss::Additive {
        alpha: 0.01,
        beta: 0.5,
    }
    .combine(&ce, &lat)
    .unwrap();
    assert!(
        (additive.to_scalar::<f32>().unwrap() as f64 - (2.0 + 0.01 * 5000f64.sqrt())).abs() < 1e-4
    );

    // the loss pushes θ towards faster blocks: its gradient w.r.t. a layer's θ is positive for the
    // slowest candidate and negative for the fastest
    let space = Space::fbnet_224();
    let t = LatencyTable::new(&table(&space), &space, Dtype::Fp32).unwrap();
    let thetas: Vec<Var> = t
        .layers
        .iter()
        .map(|l| Var::zeros(l.len(), candle_core::DType::F32, &Device::Cpu).unwrap())
        .collect();
    let mut rng = SplitMix::new(1);
    let m: Vec<Tensor> = thetas
        .iter()
        .map(|th| gumbel_softmax(th.as_tensor(), 5.0, &mut rng).unwrap())
        .collect();
    let loss = LatencyLoss::default()
        .combine(&ce, &t.expected(&m).unwrap())
        .unwrap();
    let grads = loss.backward().unwrap();
    let layer = 12;
    let g = grads.get(&thetas[layer]).unwrap().to_vec1::<f32>().unwrap();
    let lat = &t.layers[layer];
    let slowest = lat
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0;
    let fastest = lat
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0;
    assert!(
        g[slowest] > 0.0 && g[fastest] < 0.0,
        "{g:?} for latencies {lat:?}"
    );
}
