//! The CUDA kernels (`host/src/kernels/cuda/kernels.cu`) against the CPU kernels, forward and gradients,
//! at odd sizes, strides 1 and 2 and kernel sizes 3 to 7. Two ways:
//! - on every machine, the kernels' source compiled as plain C++ (`cuda_emulate.cpp`, a C++ compiler on
//!   the PATH as `c++`, which a Rust toolchain on Linux comes with): each grid-stride loop runs as an
//!   ordinary loop, so this checks the index arithmetic and the reductions, not the GPU;
//! - with the `cuda` feature on a machine with a GPU, the ops themselves on candle's CUDA device.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use candle_core::{Device, Tensor, Var};
use fbnet::kernels::{batch_norm_train, depthwise_conv};
use mobile_core::rng::SplitMix;

/// `(n, c, h, w, k, stride)`: odd and even sizes, a 1x1 plane, reductions of one and of many partial
/// sums (more than 32 output positions per channel).
const DEPTHWISE: [(usize, usize, usize, usize, usize, usize); 7] = [
    (2, 3, 7, 9, 3, 1),
    (2, 5, 9, 7, 5, 2),
    (1, 4, 8, 8, 3, 2),
    (3, 2, 5, 11, 7, 1),
    (2, 3, 1, 1, 3, 1),
    (4, 3, 17, 19, 3, 2),
    (3, 6, 23, 21, 5, 1),
];

/// `(n, c, plane, relu)`.
const BATCH_NORM: [(usize, usize, usize, bool); 5] = [
    (2, 3, 35, true),
    (2, 3, 35, false),
    (5, 4, 33, true),
    (1, 2, 1, false),
    (7, 3, 300, true),
];

const EPS: f64 = 1e-5;

fn randn(n: usize, seed: u64) -> Vec<f32> {
    SplitMix::new(seed).normals(n)
}

fn output_size(h: usize, k: usize, s: usize) -> usize {
    (h + 2 * (k / 2) - k) / s + 1
}

/// Inputs and results of one depthwise case: `[x, w, dy]` in, `[y, dx, dw]` out.
struct Depthwise {
    dims: (usize, usize, usize, usize, usize, usize),
    x: Vec<f32>,
    w: Vec<f32>,
    dy: Vec<f32>,
}

impl Depthwise {
    fn new(case: usize) -> Depthwise {
        let dims @ (n, c, h, w, k, s) = DEPTHWISE[case];
        let (ho, wo) = (output_size(h, k, s), output_size(w, k, s));
        let seed = 10 * case as u64;
        Depthwise {
            dims,
            x: randn(n * c * h * w, seed + 1),
            w: randn(c * k * k, seed + 2),
            dy: randn(n * c * ho * wo, seed + 3),
        }
    }

    /// `[y, dx, dw]` from the ops on `dev`, the gradients of `Σ y·dy`.
    fn run_ops(&self, dev: &Device) -> [Vec<f32>; 3] {
        let (n, c, h, w, k, s) = self.dims;
        let x = Var::from_tensor(&Tensor::from_vec(self.x.clone(), (n, c, h, w), dev).unwrap())
            .unwrap();
        let wt = Var::from_tensor(&Tensor::from_vec(self.w.clone(), (c, 1, k, k), dev).unwrap())
            .unwrap();
        let y = depthwise_conv(&x, &wt, s).unwrap();
        let dy = Tensor::from_vec(self.dy.clone(), y.shape(), dev).unwrap();
        let grads = y.mul(&dy).unwrap().sum_all().unwrap().backward().unwrap();
        [
            flat(&y),
            flat(grads.get(&x).unwrap()),
            flat(grads.get(&wt).unwrap()),
        ]
    }

    fn run_emulated(&self) -> [Vec<f32>; 3] {
        let (n, c, h, w, k, s) = self.dims;
        let (ho, wo) = (output_size(h, k, s), output_size(w, k, s));
        let mut input = ints(&[0, n, c, h, w, k, s, ho, wo]);
        for v in [&self.x, &self.w, &self.dy] {
            input.extend(v.iter().flat_map(|f| f.to_le_bytes()));
        }
        let out = emulate(&input);
        split(&out, &[n * c * ho * wo, n * c * h * w, c * k * k])
            .try_into()
            .unwrap()
    }
}

/// Inputs and results of one batch-norm case: `[x, γ, β, dy]` in, `[y, mean, var, dx, dγ, dβ]` out.
struct BatchNorm {
    dims: (usize, usize, usize, bool),
    x: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    dy: Vec<f32>,
}

impl BatchNorm {
    fn new(case: usize) -> BatchNorm {
        let dims @ (n, c, plane, _) = BATCH_NORM[case];
        let seed = 100 + 10 * case as u64;
        // an offset and scale per value, so the two-pass variance matters
        let x = randn(n * c * plane, seed + 1)
            .into_iter()
            .enumerate()
            .map(|(i, v)| 3.0 + 2.0 * v + (i / plane % c) as f32)
            .collect();
        BatchNorm {
            dims,
            x,
            gamma: randn(c, seed + 2).iter().map(|v| 1.0 + 0.3 * v).collect(),
            beta: randn(c, seed + 3),
            dy: randn(n * c * plane, seed + 4),
        }
    }

    fn run_ops(&self, dev: &Device) -> [Vec<f32>; 6] {
        let (n, c, plane, relu) = self.dims;
        let var = |v: &Vec<f32>, shape: &[usize]| {
            Var::from_tensor(&Tensor::from_vec(v.clone(), shape, dev).unwrap()).unwrap()
        };
        let (x, g, b) = (
            var(&self.x, &[n, c, plane]),
            var(&self.gamma, &[c]),
            var(&self.beta, &[c]),
        );
        let (y, stats) = batch_norm_train(&x, &g, &b, EPS, relu).unwrap();
        let dy = Tensor::from_vec(self.dy.clone(), y.shape(), dev).unwrap();
        let grads = y.mul(&dy).unwrap().sum_all().unwrap().backward().unwrap();
        [
            flat(&y),
            stats.mean.to_vec1().unwrap(),
            stats.var.to_vec1().unwrap(),
            flat(grads.get(&x).unwrap()),
            flat(grads.get(&g).unwrap()),
            flat(grads.get(&b).unwrap()),
        ]
    }

    fn run_emulated(&self) -> [Vec<f32>; 6] {
        let (n, c, plane, relu) = self.dims;
        let mut input = ints(&[1, n, c, plane, relu as usize]);
        input.extend((EPS as f32).to_le_bytes());
        for v in [&self.x, &self.gamma, &self.beta, &self.dy] {
            input.extend(v.iter().flat_map(|f| f.to_le_bytes()));
        }
        let out = emulate(&input);
        let len = n * c * plane;
        split(&out, &[len, c, c, len, c, c]).try_into().unwrap()
    }
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn ints(v: &[usize]) -> Vec<u8> {
    v.iter()
        .flat_map(|&i| i32::try_from(i).unwrap().to_le_bytes())
        .collect()
}

fn split(values: &[f32], lens: &[usize]) -> Vec<Vec<f32>> {
    assert_eq!(
        values.len(),
        lens.iter().sum::<usize>(),
        "the emulated kernels wrote {} values",
        values.len()
    );
    let mut at = 0;
    lens.iter()
        .map(|&l| {
            at += l;
            values[at - l..at].to_vec()
        })
        .collect()
}

/// The harness compiled once per test process.
fn harness() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("fbnet-cuda-emulate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("emulate");
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cuda_emulate.cpp");
        let out = Command::new("c++")
            .args(["-std=c++17", "-O2", "-Wall", "-Werror", "-o"])
            .arg(&bin)
            .arg(&src)
            .output()
            .expect("a C++ compiler on the PATH as `c++` (Debian: build-essential)");
        assert!(
            out.status.success(),
            "compiling {}: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        bin
    })
}

fn emulate(input: &[u8]) -> Vec<f32> {
    let mut child = Command::new(harness())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "emulated kernels: {}", out.status);
    out.stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// Asserts `got` equals `want` within `tol` relative to the larger of 1 and `want`'s largest value.
fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * scale && g.is_finite(),
            "{what}[{i}]: {g} against {w} (scale {scale})"
        );
    }
}

/// [`assert_close`] for each named result of a case.
fn assert_all_close(got: &[Vec<f32>], want: &[Vec<f32>], names: &[&str], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: results");
    for ((g, w), name) in got.iter().zip(want).zip(names) {
        assert_close(g, w, tol, &format!("{what} {name}"));
    }
}

const DW_NAMES: [&str; 3] = ["y", "dx", "dw"];
const BN_NAMES: [&str; 6] = ["y", "mean", "var", "dx", "dgamma", "dbeta"];

#[test]
fn emulated_depthwise_kernels_match_the_cpu_kernels() {
    for case in 0..DEPTHWISE.len() {
        let d = Depthwise::new(case);
        let want = d.run_ops(&Device::Cpu);
        let what = format!("depthwise {:?}", d.dims);
        assert_all_close(&d.run_emulated(), &want, &DW_NAMES, 1e-5, &what);
    }
}

#[test]
fn emulated_batch_norm_kernels_match_the_cpu_kernels() {
    for case in 0..BATCH_NORM.len() {
        let b = BatchNorm::new(case);
        let want = b.run_ops(&Device::Cpu);
        let what = format!("batch norm {:?}", b.dims);
        assert_all_close(&b.run_emulated(), &want, &BN_NAMES, 2e-5, &what);
    }
}

/// A kernel whose indexing is off by one plane must fail the comparison (the test is not vacuous).
#[test]
fn a_wrong_result_fails_the_comparison() {
    let d = Depthwise::new(1);
    let want = d.run_ops(&Device::Cpu);
    let mut got = d.run_emulated();
    got[0].rotate_left(1);
    let caught = std::panic::catch_unwind(|| assert_close(&got[0], &want[0], 1e-5, "shifted"));
    assert!(caught.is_err());
}

#[cfg(feature = "cuda")]
mod gpu {
    use super::*;

    fn gpu() -> Device {
        Device::new_cuda(0).expect("a CUDA device (these tests run on the GPU machine)")
    }

    #[test]
    fn gpu_depthwise_ops_match_the_cpu_kernels() {
        let dev = gpu();
        for case in 0..DEPTHWISE.len() {
            let d = Depthwise::new(case);
            let want = d.run_ops(&Device::Cpu);
            let what = format!("GPU depthwise {:?}", d.dims);
            assert_all_close(&d.run_ops(&dev), &want, &DW_NAMES, 1e-4, &what);
        }
    }

    #[test]
    fn gpu_batch_norm_ops_match_the_cpu_kernels() {
        let dev = gpu();
        for case in 0..BATCH_NORM.len() {
            let b = BatchNorm::new(case);
            let want = b.run_ops(&Device::Cpu);
            let what = format!("GPU batch norm {:?}", b.dims);
            assert_all_close(&b.run_ops(&dev), &want, &BN_NAMES, 1e-4, &what);
        }
    }
}
