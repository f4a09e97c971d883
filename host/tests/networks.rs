//! Every built-in architecture as a candle network (the stand-alone form the trainer uses), and the super
//! net with a one-hot mix, which must compute exactly the stand-alone network of the chosen blocks.

mod common;

use candle_core::{DType, Device, Tensor};
use fbnet::network::{Choice, Mix, Network};
use mobile_core::rng::SplitMix;
use mobile_core::{Arch, BUILTINS, Space};

/// The built-ins at 32 px and 10 classes, so that the whole registry runs in seconds.
fn small(b: &mobile_core::Builtin) -> Arch {
    let space = (b.space)().with_variant(Some(32), None, Some(10));
    Arch::parse(b.name, &space, b.text).unwrap()
}

#[test]
fn every_builtin_runs_on_a_zero_input_in_both_modes() {
    for b in BUILTINS {
        let arch = small(b);
        let net = Network::standalone(&arch, &Device::Cpu, 0).unwrap();
        let c = arch.space.input_channels;
        let x = Tensor::zeros((2, c, 32, 32), DType::F32, &Device::Cpu).unwrap();
        for train in [true, false] {
            let y = net.forward(&x, None, train).unwrap();
            assert_eq!(y.dims(), [2, 10], "{}", b.name);
            let v: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
            assert!(v.iter().all(|x| x.is_finite()), "{} train={train}", b.name);
        }
    }
}

#[test]
fn a_one_hot_mix_makes_the_super_net_its_chosen_network() {
    let space = Space::fbnet_small()
        .with_variant(Some(16), Some(0.25), None)
        .with_input_channels(1);
    let supernet = Network::supernet(&space, &Device::Cpu, 0).unwrap();
    let arch = mobile_core::arch::builtin_in("fbnet-b", &space)
        .unwrap()
        .unwrap();
    let standalone = Network::standalone(&arch, &Device::Cpu, 1).unwrap();
    // copy the chosen candidates' parameters into the stand-alone net (`l3.k5_e6.dw…` → `l3.dw…`)
    for (name, p) in standalone.params.iter() {
        let source = match name.split_once('.') {
            Some((layer, rest))
                if layer.starts_with('l') && layer[1..].parse::<usize>().is_ok() =>
            {
                let i: usize = layer[1..].parse().unwrap();
                format!("{layer}.{}.{rest}", arch.choices[i].name())
            }
            _ => name.clone(),
        };
        let t = supernet
            .params
            .get(&source)
            .unwrap_or_else(|| panic!("{source}"));
        p.var.set(t.var.as_tensor()).unwrap();
    }
    let one_hot: Vec<Tensor> = supernet
        .layers
        .iter()
        .zip(&arch.choices)
        .map(|(l, b)| {
            let v: Vec<f32> = l
                .candidates
                .iter()
                .map(|c| if c == b { 1.0 } else { 0.0 })
                .collect();
            Tensor::from_vec(v, l.candidates.len(), &Device::Cpu).unwrap()
        })
        .collect();
    let x = Tensor::from_vec(
        SplitMix::new(5).normals(4 * 256),
        (4, 1, 16, 16),
        &Device::Cpu,
    )
    .unwrap();
    // in evaluation mode (running statistics) and in training mode (batch statistics, the fused block
    // kernels)
    for train in [true, false] {
        let a = supernet
            .forward(&x, Some(Mix::Soft(&one_hot)), train)
            .unwrap();
        let b = standalone.forward(&x, None, train).unwrap();
        let diff = common::max_diff(&a, &b);
        assert!(
            diff < 1e-5,
            "super net with a one-hot mix (train {train}) differs from the chosen network by {diff}"
        );
    }
    let b = standalone.forward(&x, None, false).unwrap();
    // the hard relaxation's path through the same candidates (with and without straight-through
    // weights) is the chosen network too
    for with_weights in [false, true] {
        let paths: Vec<Choice> = supernet
            .layers
            .iter()
            .zip(&arch.choices)
            .zip(&one_hot)
            .map(|((l, b), w)| {
                Choice::batch(
                    l.candidates.iter().position(|c| c == b).unwrap(),
                    with_weights.then(|| w.clone()),
                )
            })
            .collect();
        let h = supernet
            .forward(&x, Some(Mix::Hard(&paths)), false)
            .unwrap();
        let diff = common::max_diff(&h, &b);
        assert!(diff < 1e-5, "hard path differs by {diff}");
    }
}
