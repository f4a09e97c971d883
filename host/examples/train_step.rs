//! Times training steps (forward, cross-entropy, backward, SGD update) of a super net or a stand-alone
//! network on seeded random data, for `benches/training-speed.sh`, which runs PyTorch on the same network
//! beside it:
//! `cargo run --release -p fbnet --example train_step -- SPACE.json [ARCH.json | --builtin NAME]
//! [--batch N] [--steps N] [--warmup N] [--device cpu|cuda] [--describe]`. Without an architecture it is
//! the space's super net with Gumbel-softmax mixing (the weight step of the search). Prints one JSON line:
//! images/s over the timed steps, per-step seconds, and the process's peak resident memory (GPU memory is
//! sampled from outside, by `benches/gpu.sh`, the same way for both frameworks). On a GPU the device is
//! synchronised around every timed phase, so the phases are the GPU's time, not the launch queue's.

use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use candle_core::{Device, Tensor};
use fbnet::network::{Mix, Network};
use fbnet::optim::Sgd;
use fbnet::relaxation::gumbel_softmax;
use mobile_core::rng::SplitMix;
use mobile_core::{Arch, Space};

/// Peak resident set size of this process in MB (Linux `VmHWM`).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> anyhow::Result<()> {
    // the same allocator setting as the fbnet binary: freed memory stays in mimalloc
    unsafe { libmimalloc_sys::mi_option_set(15, -1) };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let files: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            !a.starts_with("--")
                && (*i == 0 || !args[i - 1].starts_with("--") || args[i - 1] == "--describe")
        })
        .map(|(_, a)| a)
        .collect();
    let space_file = files.first().ok_or_else(|| {
        anyhow::anyhow!(
            "usage: train_step SPACE.json [ARCH.json] [--batch N] [--steps N] [--warmup N]"
        )
    })?;
    let space: Space = serde_json::from_str(&std::fs::read_to_string(space_file)?)?;
    let (batch, steps, warmup) = (flag("--batch", 64), flag("--steps", 5), flag("--warmup", 2));
    let dev = match args
        .iter()
        .position(|a| a == "--device")
        .and_then(|i| args.get(i + 1))
    {
        None => Device::Cpu,
        Some(name) => fbnet::device::by_name(name)?,
    };
    let builtin = args
        .iter()
        .position(|a| a == "--builtin")
        .and_then(|i| args.get(i + 1));
    let (net, supernet) = match (files.get(1), builtin) {
        (Some(f), _) => {
            let arch = Arch::from_json(&std::fs::read_to_string(f)?, std::path::Path::new(f))?;
            (Network::standalone(&arch, &dev, 0)?, false)
        }
        (None, Some(name)) => {
            let arch = mobile_core::arch::builtin_in(name, &space)
                .ok_or_else(|| anyhow::anyhow!("no built-in {name}"))??;
            (Network::standalone(&arch, &dev, 0)?, false)
        }
        (None, None) => (Network::supernet(&space, &dev, 0)?, true),
    };
    if args.iter().any(|a| a == "--describe") {
        // the network as concrete layers, for the PyTorch twin (benches/torch_train_step.py)
        let layers: Vec<serde_json::Value> = space
            .layers()
            .iter()
            .zip(&net.layers)
            .map(|(spec, layer)| {
                let candidates: Vec<serde_json::Value> = layer
                    .candidates
                    .iter()
                    .map(|b| {
                        serde_json::json!({
                            "name": b.name(), "kernel": b.kernel(), "expansion": b.expansion(),
                            "groups": b.groups(), "pw1": b.has_expansion_conv(),
                            "mid": mobile_core::ops::mid_channels(*b, spec.cin),
                        })
                    })
                    .collect();
                serde_json::json!({"cin": spec.cin, "cout": spec.cout, "stride": spec.stride,
                                   "residual": spec.shape_preserving(), "candidates": candidates})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "supernet": supernet, "resolution": space.resolution, "channels": space.input_channels,
                "stem_out": space.stem_out(), "stem_stride": space.stem_stride, "layers": layers,
                "head_in": space.last_channels(), "head_out": space.head_out(),
                "classes": space.num_classes,
            })
        );
        return Ok(());
    }
    let mut rng = SplitMix::new(1);
    let (c, r) = (space.input_channels, space.resolution);
    let x = Tensor::from_vec(rng.normals(batch * c * r * r), (batch, c, r, r), &dev)?;
    let y = Tensor::from_vec(
        (0..batch as u32)
            .map(|i| i % space.num_classes as u32)
            .collect::<Vec<_>>(),
        batch,
        &dev,
    )?;
    let thetas: Vec<Tensor> = net
        .layers
        .iter()
        .map(|l| Tensor::zeros(l.candidates.len(), candle_core::DType::F32, &dev))
        .collect::<Result<_, _>>()?;
    let mut sgd = Sgd::new(0.9, 1e-4);
    let named = net.params.handles();
    let mut times = Vec::new();
    // forward, backward and update seconds of each timed step, to say where a step's time goes
    let mut phases = Vec::new();
    for s in 0..warmup + steps {
        let t0 = Instant::now();
        let mix: Option<Vec<Tensor>> = if supernet {
            Some(
                thetas
                    .iter()
                    .map(|t| gumbel_softmax(t, 5.0, None, &mut rng))
                    .collect::<Result<_, _>>()?,
            )
        } else {
            None
        };
        let logits = net.forward(&x, mix.as_deref().map(Mix::Soft), true)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
        dev.synchronize()?;
        let t1 = Instant::now();
        let grads = loss.backward()?;
        dev.synchronize()?;
        let t2 = Instant::now();
        sgd.step(&named, &grads, 0.01)?;
        let _ = loss.to_scalar::<f32>()?;
        dev.synchronize()?;
        if s >= warmup {
            times.push(t0.elapsed().as_secs_f64());
            phases.push([t1 - t0, t2 - t1, t2.elapsed()].map(|d| d.as_secs_f64()));
        }
    }
    let total: f64 = times.iter().sum();
    println!(
        "{}",
        serde_json::json!({
            "framework": "fbnet",
            "device": format!("{dev:?}"),
            "params": net.params.count(),
            "images_per_s": (batch * times.len()) as f64 / total,
            "step_s": times,
            "forward_backward_update_s": phases,
            "peak_rss_mb": peak_rss_mb(),
        })
    );
    Ok(())
}
