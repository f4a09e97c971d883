//! Helpers shared by the host's integration tests (each test crate uses a part of them).
#![allow(dead_code)]

use candle_core::Tensor;
use mobile_core::device::DeviceInfo;
use mobile_core::lut::{Entry, Lut, Method, NETWORK_OVERHEAD, RuntimeDesc};
use mobile_core::measure::{Stats, TimingConfig};
use mobile_core::onnx::Dtype;
use mobile_core::runtime::SessionConfig;
use mobile_core::{Op, Space};

/// Timing statistics of a constant `v` µs.
pub fn stats(v: f64) -> Stats {
    Stats {
        trimmed_mean: v,
        p10: v,
        p50: v,
        p90: v,
        mean: v,
        std: 0.0,
        count: 10,
    }
}

/// The int8 table the search tests use: each op costs 10 µs + 10 µs per thousand MACs (so larger
/// blocks are slower), 5 µs of overhead per network.
pub fn macs_lut(space: &Space) -> Lut {
    synthetic_lut(
        space,
        Dtype::Int8,
        |op| 10.0 + op.cost().macs as f64 / 100.0,
        5.0,
    )
}

/// A complete synthetic table of `space` at `dtype`: each op costs `latency(op)` µs, the network
/// overhead `overhead` µs. Tests choose latencies that grow with MACs, so that larger blocks are slower.
pub fn synthetic_lut(
    space: &Space,
    dtype: Dtype,
    latency: impl Fn(&Op) -> f64,
    overhead: f64,
) -> Lut {
    let mut lut = Lut::new(
        space.clone(),
        vec![dtype],
        DeviceInfo::default(),
        RuntimeDesc::onnxruntime("1.31.1", SessionConfig::default()),
        TimingConfig::quick(),
        Method::InNetwork,
    );
    for op in space.unique_ops() {
        lut.entries.push(Entry {
            op: op.key(),
            dtype,
            stats: stats(latency(&op)),
            noisy: false,
        });
    }
    lut.overhead.push(Entry {
        op: NETWORK_OVERHEAD.into(),
        dtype,
        stats: stats(overhead),
        noisy: false,
    });
    lut
}

/// Largest absolute difference between two tensors of one shape.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    a.sub(b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar())
        .expect("tensors of one shape")
}

/// Largest absolute value of a tensor (the scale relative tolerances are taken of).
pub fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.max(0))
        .and_then(|t| t.to_scalar())
        .expect("a non-empty tensor")
}

/// A space small enough for training tests: 28 px grey images, three classes, three searchable layers
/// (one with a stride), every block of Table 2.
pub fn tiny_space() -> mobile_core::Space {
    use mobile_core::space::Stage;
    mobile_core::Space {
        name: "tiny".into(),
        resolution: 28,
        input_channels: 1,
        stem_channels: 8,
        stem_stride: 2,
        stages: vec![
            Stage {
                channels: 8,
                layers: 2,
                stride: 1,
            },
            Stage {
                channels: 16,
                layers: 1,
                stride: 2,
            },
        ],
        head_channels: 32,
        num_classes: 3,
        width: 1.0,
        candidates: mobile_core::Block::ALL.to_vec(),
    }
}
