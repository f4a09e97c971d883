//! Times the depthwise convolution kernel alone, forward and backward (input and filter gradients), on
//! the plane sizes of the search spaces at stride 1 and 2, so a kernel change can be measured without
//! the rest of a training step around it:
//! `cargo run --release -p fbnet --example depthwise_step [-- --reps N]`.
//! Prints one line per shape with the median and the fastest milliseconds of each direction over N
//! repetitions (on a shared machine the fastest is the steadier figure).

use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use candle_core::{DType, Device, Tensor, Var};
use fbnet::kernels::depthwise_conv;

/// "median (fastest)" of `v`.
fn summary(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!("{:.2} ({:.2})", v[v.len() / 2], v[0])
}

fn main() -> anyhow::Result<()> {
    unsafe { libmimalloc_sys::mi_option_set(15, -1) };
    let args: Vec<String> = std::env::args().collect();
    let reps = args
        .iter()
        .position(|a| a == "--reps")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(20usize);
    let dev = Device::Cpu;
    // [batch, channels, side]: a 56x56 stage of the paper's space (24 channels expanded 6x), and the
    // 14x14 stage of the small preset at batch 64
    for (n, c, side) in [(8usize, 144usize, 56usize), (64, 48, 14)] {
        for stride in [1, 2] {
            for k in [3, 5] {
                let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, c, side, side), &dev)?)?;
                let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (c, 1, k, k), &dev)?)?;
                let (mut fwd, mut bwd) = (Vec::new(), Vec::new());
                for rep in 0..reps + 2 {
                    let t = Instant::now();
                    let y = depthwise_conv(x.as_tensor(), w.as_tensor(), stride)?;
                    let f = t.elapsed().as_secs_f64();
                    let loss = y.to_dtype(DType::F32)?.sum_all()?;
                    let t = Instant::now();
                    let grads = loss.backward()?;
                    let b = t.elapsed().as_secs_f64();
                    assert!(grads.get(&x).is_some() && grads.get(&w).is_some());
                    // the first two repetitions warm the allocator and the thread pool
                    if rep >= 2 {
                        fwd.push(f * 1e3);
                        bwd.push(b * 1e3);
                    }
                }
                println!(
                    "[{n}, {c}, {side}, {side}] k{k} s{stride}: forward {} ms, backward {} ms",
                    summary(fwd),
                    summary(bwd)
                );
            }
        }
    }
    Ok(())
}
