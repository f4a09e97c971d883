//! Times training steps of the super net (forward, backward, SGD update) on random data:
//! `cargo run --release -p fbnet --example supernet_step -- [resolution] [width] [batch] [steps] [channels]`.

use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use candle_core::{Device, Tensor};
use fbnet::latency::gumbel_softmax;
use fbnet::optim::Sgd;
use fbnet::supernet::Network;
use mobile_core::Space;
use mobile_core::onnx::weights::SplitMix;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: f64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (res, width, batch, steps) = (
        arg(0, 28.0) as usize,
        arg(1, 1.0),
        arg(2, 64.0) as usize,
        arg(3, 3.0) as usize,
    );
    let mut space = Space::fbnet_small().with_variant(Some(res), Some(width), None);
    space.input_channels = arg(4, 1.0) as usize;
    let dev = Device::Cpu;
    let net = Network::supernet(&space, &dev, 0)?;
    println!("{}: {} trainable values", space.name, net.params.count());
    let mut rng = SplitMix::new(1);
    let x = Tensor::from_vec(
        rng.normals(batch * space.input_channels * res * res),
        (batch, space.input_channels, res, res),
        &dev,
    )?;
    let y = Tensor::from_vec(
        (0..batch as u32).map(|i| i % 10).collect::<Vec<_>>(),
        batch,
        &dev,
    )?;
    let thetas: Vec<Tensor> = net
        .layers
        .iter()
        .map(|l| Tensor::zeros(l.candidates.len(), candle_core::DType::F32, &dev))
        .collect::<Result<_, _>>()?;
    let mut sgd = Sgd::new(0.9, 1e-4);
    let named: Vec<(&str, &fbnet::params::Param)> = net
        .params
        .trainable()
        .map(|(k, p)| (k.as_str(), p))
        .collect();
    for s in 0..steps {
        let t0 = Instant::now();
        let m: Vec<Tensor> = thetas
            .iter()
            .map(|t| gumbel_softmax(t, 5.0, &mut rng))
            .collect::<Result<_, _>>()?;
        let logits = net.forward(&x, Some(&m), true)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
        let t1 = Instant::now();
        let grads = loss.backward()?;
        let t2 = Instant::now();
        sgd.step(&named, &grads, 0.1)?;
        let t3 = Instant::now();
        println!(
            "step {s}: loss {:.3} forward {:.2}s backward {:.2}s update {:.2}s total {:.2}s ({:.0} img/s)",
            loss.to_scalar::<f32>()?,
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t3 - t2).as_secs_f64(),
            (t3 - t0).as_secs_f64(),
            batch as f64 / (t3 - t0).as_secs_f64()
        );
    }
    Ok(())
}
