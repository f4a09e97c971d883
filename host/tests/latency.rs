//! The differentiable latency term and the Gumbel-softmax relaxation of DNAS, checked against the table's
//! own prediction and against finite differences.

mod common;

use candle_core::{Device, Tensor, Var};
use fbnet::latency::{LatencyLoss, LatencyTable};
use fbnet::relaxation::gumbel_softmax;
use mobile_core::lut::Lut;
use mobile_core::onnx::Dtype;
use mobile_core::rng::SplitMix;
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
        gumbel_softmax(theta.as_tensor(), tau, None, &mut SplitMix::new(seed))
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
        gumbel_softmax(t, 0.7, None, &mut SplitMix::new(9))
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
        .map(|th| gumbel_softmax(th.as_tensor(), 5.0, None, &mut rng).unwrap())
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

/// The hard (straight-through) relaxation's θ gradient, checked against central finite differences.
/// With the Gumbel draw held fixed, the path k it picks stays the same for small moves of θ, and the
/// straight-through estimator is the exact gradient of the surrogate loss in which candidate k's
/// output is scaled by s_k(θ) / s_k(θ₀) (s the soft sample; 1 at θ₀) and the latency term is the
/// expectation under softmax(θ): that is what is differenced here, through the whole tiny super net.
#[test]
fn the_hard_relaxations_theta_gradient_matches_finite_differences() {
    use candle_nn::ops::softmax;
    use fbnet::network::{Choice, Mix, Network};
    use fbnet::relaxation::gumbel_hard;

    let space = common::tiny_space();
    let lut = common::macs_lut(&space);
    let table = LatencyTable::new(&lut, &space, Dtype::Int8).unwrap();
    let net = Network::supernet(&space, &Device::Cpu, 3).unwrap();
    let x = Tensor::from_vec(
        SplitMix::new(4).normals(6 * 28 * 28),
        (6, 1, 28, 28),
        &Device::Cpu,
    )
    .unwrap();
    let y = Tensor::new(&[0u32, 1, 2, 0, 1, 2], &Device::Cpu).unwrap();
    let loss_fn = LatencyLoss::Multiplicative {
        alpha: 0.2,
        beta: 0.6,
    };
    let tau = 1.5;
    let theta0: Vec<Vec<f32>> = net
        .layers
        .iter()
        .enumerate()
        .map(|(l, layer)| {
            (0..layer.candidates.len())
                .map(|i| 0.3 * ((l * 7 + i * 3) % 5) as f32 - 0.6)
                .collect()
        })
        .collect();
    let seed = |l: usize| SplitMix::new(100 + l as u64);
    let vars: Vec<Var> = theta0
        .iter()
        .map(|t| Var::new(t.as_slice(), &Device::Cpu).unwrap())
        .collect();
    // analytic: the straight-through weights of one draw per layer
    let picks: Vec<(usize, Tensor)> = vars
        .iter()
        .enumerate()
        .map(|(l, v)| {
            let (k, w) = gumbel_hard(v.as_tensor(), tau, None, &mut seed(l)).unwrap();
            (k[0], w)
        })
        .collect();
    let paths: Vec<Choice> = picks
        .iter()
        .map(|(k, w)| Choice::batch(*k, Some(w.clone())))
        .collect();
    let expected_lat = |thetas: &[Tensor]| {
        let p: Vec<Tensor> = thetas.iter().map(|t| softmax(t, 0).unwrap()).collect();
        table.expected(&p).unwrap()
    };
    let ce = |logits: &Tensor| candle_nn::loss::cross_entropy(logits, &y).unwrap();
    let thetas: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let logits = net.forward(&x, Some(Mix::Hard(&paths)), true).unwrap();
    let loss = loss_fn
        .combine(&ce(&logits), &expected_lat(&thetas))
        .unwrap();
    let grads = loss.backward().unwrap();

    // numeric: the surrogate at θ moved along one coordinate, the same draws
    let s0: Vec<f32> = picks
        .iter()
        .enumerate()
        .map(|(l, (k, _))| {
            let s = gumbel_softmax(vars[l].as_tensor(), tau, None, &mut seed(l)).unwrap();
            s.to_vec1::<f32>().unwrap()[*k]
        })
        .collect();
    let surrogate = |theta: &[Vec<f32>]| -> f64 {
        let thetas: Vec<Tensor> = theta
            .iter()
            .map(|t| Tensor::new(t.as_slice(), &Device::Cpu).unwrap())
            .collect();
        let paths: Vec<Choice> = thetas
            .iter()
            .enumerate()
            .map(|(l, t)| {
                let s = gumbel_softmax(t, tau, None, &mut seed(l)).unwrap();
                Choice::batch(picks[l].0, Some(s.affine(1.0 / s0[l] as f64, 0.0).unwrap()))
            })
            .collect();
        let logits = net.forward(&x, Some(Mix::Hard(&paths)), true).unwrap();
        loss_fn
            .combine(&ce(&logits), &expected_lat(&thetas))
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64
    };
    let eps = 1e-2f32;
    let mut checked = 0;
    for (l, v) in vars.iter().enumerate() {
        let g: Vec<f32> = grads.get(v.as_tensor()).unwrap().to_vec1().unwrap();
        assert!(g.iter().any(|&v| v != 0.0), "layer {l} got no θ gradient");
        for i in 0..theta0[l].len() {
            let mut up = theta0.clone();
            up[l][i] += eps;
            let mut down = theta0.clone();
            down[l][i] -= eps;
            let numeric = (surrogate(&up) - surrogate(&down)) / (2.0 * eps as f64);
            let analytic = g[i] as f64;
            assert!(
                (numeric - analytic).abs() < 2e-3 + 0.03 * analytic.abs(),
                "layer {l} candidate {i}: straight-through {analytic}, finite differences {numeric}"
            );
            checked += 1;
        }
    }
    assert!(checked > 20);
}

/// The most likely architecture within a latency band, by dynamic programming over the layers on a
/// grid of the budget, lies in the band and is at least as likely as the exhaustive optimum of the band
/// narrowed by the grid's rounding (0.5% of the budget at each edge).
#[test]
fn the_most_likely_architecture_within_a_band_is_the_exhaustive_optimum() {
    use fbnet::decision::{latency_range, most_likely_within};
    let mut rng = SplitMix::new(21);
    let layers: Vec<Vec<f64>> = (0..4)
        .map(|_| (0..5).map(|_| 1.0 + 30.0 * rng.uniform()).collect())
        .collect();
    let probs: Vec<Vec<f64>> = (0..4)
        .map(|_| {
            let w: Vec<f64> = (0..5).map(|_| rng.uniform() + 0.05).collect();
            let s: f64 = w.iter().sum();
            w.iter().map(|v| v / s).collect()
        })
        .collect();
    let table = LatencyTable {
        dtype: Dtype::Int8,
        fixed_us: 12.0,
        candidates: vec![mobile_core::Block::ALL[..5].to_vec(); 4],
        layers,
    };
    let log_prob = |c: &[usize]| -> f64 { c.iter().zip(&probs).map(|(&i, p)| p[i].ln()).sum() };
    let (min, max) = latency_range(&table);
    for (lo, hi) in [(60.0, 70.0), (40.0, 45.0), (80.0, 100.0), (min, max)] {
        let margin = 0.005 * (hi - table.fixed_us);
        let mut best: Option<f64> = None;
        for code in 0..5usize.pow(4) {
            let choice: Vec<usize> = (0..4).map(|l| code / 5usize.pow(l) % 5).collect();
            let lat = table.latency_of(&choice);
            if lat >= lo + margin && lat <= hi - margin {
                best = Some(best.map_or(log_prob(&choice), |b: f64| b.max(log_prob(&choice))));
            }
        }
        let found = most_likely_within(&table, &probs, lo, hi);
        if let Some(c) = &found {
            let lat = table.latency_of(c);
            assert!(lat >= lo && lat <= hi, "{lat} outside [{lo}, {hi}]");
        }
        if let Some(b) = best {
            let c = found.unwrap_or_else(|| panic!("band [{lo}, {hi}]: nothing found"));
            assert!(
                log_prob(&c) >= b - 1e-9,
                "band [{lo}, {hi}]: {} < {b}",
                log_prob(&c)
            );
        }
    }
    // the whole range holds the per-layer most likely architecture
    let all = most_likely_within(&table, &probs, min, max).unwrap();
    assert_eq!(all, fbnet::decision::argmax_each(&probs));
    assert!(most_likely_within(&table, &probs, max + 1.0, max + 2.0).is_none());
}

/// The joint search scales the weights' gradient back by `ce_factor`: it must be ∂loss/∂CE of every
/// form, at latencies below, at and above a target.
#[test]
fn ce_factor_is_the_losses_derivative_in_the_cross_entropy() {
    let forms = [
        LatencyLoss::default(),
        LatencyLoss::Additive {
            alpha: 0.01,
            beta: 0.5,
        },
        LatencyLoss::Elastic {
            target_us: 400.0,
            weight: 1.0,
        },
        LatencyLoss::Mnas {
            target_us: 400.0,
            weight: 0.7,
        },
    ];
    for form in forms {
        for lat_us in [120.0, 400.0, 900.0] {
            let ce = Var::new(1.7f32, &Device::Cpu).unwrap();
            let lat = Tensor::new(lat_us as f32, &Device::Cpu).unwrap();
            let grads = form
                .combine(ce.as_tensor(), &lat)
                .unwrap()
                .backward()
                .unwrap();
            let autograd = grads
                .get(ce.as_tensor())
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64;
            let factor = form.ce_factor(lat_us);
            assert!(
                (autograd - factor).abs() < 1e-5 * factor.max(1.0),
                "{form:?} at {lat_us} µs: autograd {autograd}, ce_factor {factor}"
            );
        }
    }
}
