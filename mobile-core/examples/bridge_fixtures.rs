//! Writes what the bridge tests (Python over uniffi, Kotlin over JNI) work on, into the folder given as
//! the only argument: `space.json` (a three-layer space that profiles in seconds), `model.onnx` and
//! `model.int8.onnx` (a network of that space with seeded random weights and fbnet metadata) and
//! `image.png`. The bridges cannot build these themselves: they only reach the apps' API.

use std::path::PathBuf;

use mobile_core::measure::random_inputs;
use mobile_core::model_meta::{META_FORMAT, ModelMeta};
use mobile_core::onnx::{Dtype, RandomWeights, arch_graph};
use mobile_core::runtime::{self, RangeEstimate, SessionConfig, calibrate};
use mobile_core::space::Stage;
use mobile_core::{Arch, Block, Space};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: bridge_fixtures OUT_DIR")?,
    );
    std::fs::create_dir_all(&out)?;
    runtime::init(None)?;
    let space = Space {
        name: "bridge-tiny".into(),
        resolution: 16,
        input_channels: 3,
        stem_channels: 8,
        stem_stride: 2,
        stages: vec![
            Stage {
                channels: 8,
                layers: 1,
                stride: 1,
            },
            Stage {
                channels: 16,
                layers: 2,
                stride: 2,
            },
        ],
        head_channels: 32,
        num_classes: 4,
        width: 1.0,
        candidates: Block::ALL.to_vec(),
    };
    std::fs::write(
        out.join("space.json"),
        serde_json::to_string_pretty(&space)?,
    )?;
    let arch = Arch::parse("bridge-tiny-a", &space, "k3_e1 | k3_e6 skip")?;
    let meta = |dtype| ModelMeta {
        format: META_FORMAT,
        name: arch.name.clone(),
        arch: arch.text(),
        space: space.name.clone(),
        space_hash: space.hash(),
        dtype,
        labels: ["ant", "bee", "cat", "dog"].map(String::from).to_vec(),
        input_shape: vec![1, 3, 16, 16],
        mean: vec![0.485, 0.456, 0.406],
        std: vec![0.229, 0.224, 0.225],
        dataset: "toy".into(),
        accuracy: None,
        prediction: None,
    };
    let fp32 = arch_graph(
        &arch,
        Dtype::Fp32,
        &mut RandomWeights { seed: 3 },
        None,
        1,
        &meta(Dtype::Fp32).to_props(),
    )?;
    std::fs::write(out.join("model.onnx"), fp32.model.to_bytes())?;
    let calib = random_inputs(&fp32.input_shape, 4, 9);
    let ranges = calibrate(
        &fp32,
        &calib,
        SessionConfig::default(),
        RangeEstimate::MinMax,
    )?;
    let int8 = arch_graph(
        &arch,
        Dtype::Int8,
        &mut RandomWeights { seed: 3 },
        Some(&ranges),
        1,
        &meta(Dtype::Int8).to_props(),
    )?;
    std::fs::write(out.join("model.int8.onnx"), int8.model.to_bytes())?;
    let img = image::RgbImage::from_fn(24, 20, |x, y| {
        image::Rgb([(9 * x) as u8, (13 * y) as u8, ((x * y) % 256) as u8])
    });
    img.save(out.join("image.png"))?;
    println!("bridge fixtures in {}", out.display());
    Ok(())
}
