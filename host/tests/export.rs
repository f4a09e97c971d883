//! Training from scratch and export on real Fashion-MNIST images with a tiny space: batch norm folded
//! into the ONNX graph computes what the candle model computes, the exported fp32 model agrees with the
//! candle model on real test images, the int8 path runs end to end, the metadata round-trips, training
//! resumes exactly, and bad run folders get clear errors.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{Device, Tensor};
use fbnet::data::Source;
use fbnet::export::{ExportConfig, TrainedWeights, export, int8_path};
use fbnet::network::Network;
use fbnet::optim::Schedule;
use fbnet::runs::RunDir;
use fbnet::train::{TrainConfig, TrainProgress, TrainRun, train};
use mobile_core::model::Model;
use mobile_core::model_meta::{ModelMeta, decode_model};
use mobile_core::onnx::{Dtype, arch_graph};
use mobile_core::rng::SplitMix;
use mobile_core::runtime::{RangeEstimate, SessionConfig, run};
use mobile_core::{Arch, Block};

/// Every kind of block: grouped 1x1 with shuffle, no expansion, a residual, a stride.
fn tiny_arch() -> Arch {
    Arch::new(
        "tiny-a",
        common::tiny_space(),
        vec![Block::K3E1G2, Block::K5E6, Block::K3E3],
    )
    .unwrap()
}

fn write_arch(dir: &Path, arch: &Arch) -> PathBuf {
    let path = dir.join(format!("{}.json", arch.name));
    std::fs::write(&path, arch.to_json()).unwrap();
    path
}

fn config(arch: PathBuf, epochs: usize) -> TrainConfig {
    TrainConfig {
        arch: arch.display().to_string(),
        classes: Some(3),
        max_images: Some(300),
        max_val_images: Some(150),
        epochs,
        batch_size: 32,
        lr: 0.05,
        schedule: Schedule::Cosine,
        ..TrainConfig::default()
    }
}

fn run_training(
    cfg: &TrainConfig,
    dir: &Path,
    resume: bool,
    cancel_after_epoch: Option<usize>,
) -> anyhow::Result<fbnet::train::TrainResult> {
    let cancel = AtomicBool::new(false);
    let mut progress = |p: &TrainProgress| {
        if p.phase == "done" && Some(p.epoch) == cancel_after_epoch {
            cancel.store(true, Ordering::Relaxed);
        }
    };
    train(
        cfg,
        &TrainRun(RunDir(dir.to_path_buf())),
        resume,
        &Device::Cpu,
        &mut progress,
        &cancel,
    )
}

/// Sets every batch-norm statistic and affine parameter to seeded values far from the identity, so
/// that folding mistakes (a wrong ε, a swapped γ/β, a missed mean) show.
fn randomise_bn(net: &Network, seed: u64) {
    let mut rng = SplitMix::new(seed);
    for (name, p) in net.params.iter() {
        let n = p.var.elem_count();
        let v: Vec<f32> = if name.ends_with(".bn.var") {
            (0..n).map(|_| 0.2 + 2.0 * rng.uniform() as f32).collect()
        } else if name.ends_with(".bn.gamma") {
            (0..n).map(|_| 0.5 + rng.uniform() as f32).collect()
        } else if name.ends_with(".bn.mean") || name.ends_with(".bn.beta") {
            (0..n).map(|_| 0.5 * rng.normal()).collect()
        } else {
            continue;
        };
        p.var
            .set(&Tensor::from_vec(v, p.var.dims(), &Device::Cpu).unwrap())
            .unwrap();
    }
}

#[test]
fn folded_batch_norm_computes_what_the_candle_model_computes() {
    let arch = tiny_arch();
    let net = Network::standalone(&arch, &Device::Cpu, 3).unwrap();
    randomise_bn(&net, 9);
    let mut weights = TrainedWeights::new(&net.params).unwrap();
    let graph = arch_graph(&arch, Dtype::Fp32, &mut weights, None, 1, &[]).unwrap();
    let mut session = SessionConfig { threads: 1 }
        .session(&graph.model.to_bytes())
        .unwrap();
    let mut rng = SplitMix::new(5);
    for _ in 0..3 {
        let x = rng.normals(28 * 28);
        let onnx = run(&mut session, &x, &graph.input_shape)
            .unwrap()
            .remove(0)
            .1;
        let t = Tensor::from_vec(x, (1, 1, 28, 28), &Device::Cpu).unwrap();
        let candle: Vec<f32> = net
            .forward(&t, None, false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let scale = candle.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = candle
            .iter()
            .zip(&onnx)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(scale > 0.1, "logits too small to compare: {candle:?}");
        assert!(
            diff <= 1e-4 * scale.max(1.0),
            "ONNX {onnx:?} vs candle {candle:?}"
        );
    }
    // an unfolded export (the BN left out) would differ: the check above can fail
    let mut plain =
        TrainedWeights::new(&Network::standalone(&arch, &Device::Cpu, 3).unwrap().params).unwrap();
    let unfolded = arch_graph(&arch, Dtype::Fp32, &mut plain, None, 1, &[]).unwrap();
    let x = SplitMix::new(5).normals(28 * 28);
    let a = run(
        &mut SessionConfig { threads: 1 }
            .session(&unfolded.model.to_bytes())
            .unwrap(),
        &x,
        &graph.input_shape,
    )
    .unwrap()
    .remove(0)
    .1;
    let b = run(&mut session, &x, &graph.input_shape)
        .unwrap()
        .remove(0)
        .1;
    assert!(a.iter().zip(&b).any(|(a, b)| (a - b).abs() > 1e-3));
}

#[test]
fn a_trained_run_exports_to_onnx_that_agrees_with_candle_and_describes_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let arch = tiny_arch();
    let cfg = TrainConfig {
        max_images: Some(800),
        ..config(write_arch(tmp.path(), &arch), 3)
    };
    let dir = tmp.path().join("run");
    let result = run_training(&cfg, &dir, false, None).unwrap();
    assert!(result.best.top1 > 0.5, "3 classes: {result:?}");
    // the epoch was chosen on held-out training images, the first with the best held-out accuracy
    let metrics: Vec<fbnet::train::TrainMetrics> =
        fbnet::runs::read_metrics(&RunDir(dir.clone())).unwrap();
    let held_out: Vec<f64> = metrics.iter().map(|m| m.held_out_top1.unwrap()).collect();
    let top = held_out.iter().cloned().fold(f64::MIN, f64::max);
    assert_eq!(result.best.held_out_top1, Some(top));
    assert_eq!(
        result.best.epoch,
        1 + held_out.iter().position(|&h| h == top).unwrap()
    );
    assert_eq!(result.best.top1, metrics[result.best.epoch - 1].val_top1);
    let out = tmp.path().join("out").join("model.onnx");
    let export_cfg = ExportConfig {
        calib: 32,
        estimate: RangeEstimate::Quantile { q: 1e-4 },
        ..ExportConfig::default()
    };
    let report = export(&dir, &out, &export_cfg, &mut |_, _, _| {}).unwrap();
    assert_eq!(report.images, 150);
    // fp32: the same numbers as candle up to float rounding, on real test images
    assert!(report.fp32.same_top1 >= 0.999, "{report:?}");
    assert!(
        report.fp32.max_abs_diff <= 1e-4 * report.fp32.logit_scale.max(1.0),
        "{report:?}"
    );
    assert!((report.fp32.top1 - report.candle_top1).abs() < 0.01);
    assert!((report.fp32.top1 - result.best.top1).abs() < 0.01);
    // int8: a real quantised model, close to fp32
    let q = report.int8.as_ref().unwrap();
    assert_eq!(q.file, int8_path(&out));
    assert!(q.bytes < report.fp32.bytes, "{report:?}");
    // on real test images int8 classifies like fp32: the same class for nearly every image, and top-1
    // within a few points
    assert!(q.same_top1 >= 0.9, "{report:?}");
    assert!((q.top1 - report.fp32.top1).abs() <= 0.05, "{report:?}");
    assert!(q.max_abs_diff > 0.0, "int8 cannot be exact");
    // the reported accuracies are what stock ONNX Runtime gives on the written files, in a fresh
    // session, with a plain argmax: the int8 logits are float, so no tie decides a class
    let run_dir = TrainRun(RunDir(dir.clone()));
    let info = run_dir.data_info().unwrap();
    let data = fbnet::train::prepare_data(&cfg, &arch, Some((info.mean.clone(), info.std.clone())))
        .unwrap();
    let batches =
        fbnet::data::batches(data.val_source.clone(), &data.val, &data.eval_loader, 0).unwrap();
    let mut inputs = Vec::new();
    for batch in batches {
        let b = batch.unwrap();
        let per = b.images.len() / b.labels.len();
        inputs.extend(
            b.images
                .chunks_exact(per)
                .map(<[f32]>::to_vec)
                .zip(b.labels),
        );
    }
    assert_eq!(inputs.len(), report.images);
    for (file, reported) in [(&out, report.fp32.top1), (&q.file, q.top1)] {
        let mut session = SessionConfig { threads: 1 }
            .session(&std::fs::read(file).unwrap())
            .unwrap();
        let mut correct = 0;
        for (x, label) in &inputs {
            let logits = run(&mut session, x, &[1, 1, 28, 28]).unwrap().remove(0).1;
            let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(
                logits.iter().filter(|&&v| v == max).count(),
                1,
                "{}: tied logits {logits:?}",
                file.display()
            );
            let best = logits.iter().position(|&v| v == max).unwrap();
            correct += usize::from(best == *label as usize);
        }
        assert_eq!(
            correct as f64 / inputs.len() as f64,
            reported,
            "{}: fresh ONNX Runtime top-1 differs from the reported one",
            file.display()
        );
    }
    // the metadata round-trips and is what the run knows
    let info = TrainRun(RunDir(dir.clone())).data_info().unwrap();
    for (file, dtype) in [(&out, Dtype::Fp32), (&q.file, Dtype::Int8)] {
        let model = decode_model(&std::fs::read(file).unwrap(), file).unwrap();
        let meta = ModelMeta::from_model(&model, file).unwrap();
        assert_eq!(meta.dtype, dtype);
        assert_eq!(meta.arch, arch.text());
        assert_eq!(meta.space_hash, arch.space.hash());
        assert_eq!(meta.labels, info.labels);
        assert_eq!(meta.labels.len(), 3);
        assert_eq!(
            (meta.mean.clone(), meta.std.clone()),
            (info.mean.clone(), info.std.clone())
        );
        assert_eq!(meta.input_shape, vec![1, 1, 28, 28]);
        assert_eq!(meta.dataset, "fashion-mnist");
        let expect = if dtype == Dtype::Fp32 {
            report.fp32.top1
        } else {
            q.top1
        };
        assert_eq!(meta.accuracy, Some(expect));
    }
    // real test images as PNG files, classified as the phone would: the class candle predicts
    let (net, _) = TrainRun(RunDir(dir.clone()))
        .load_network(false, &Device::Cpu)
        .unwrap();
    let model = Model::load(&out, SessionConfig { threads: 1 }).unwrap();
    let test = fbnet::data::open("fashion-mnist", false, Some(1)).unwrap();
    let test = fbnet::data::Subset::random_classes(test, 3, 0).unwrap();
    for i in [0, 1, 2, 50, 99] {
        let img = test.read(i).unwrap();
        let png = tmp.path().join(format!("test-{i}.png"));
        image::GrayImage::from_raw(28, 28, img.pixels.clone())
            .unwrap()
            .save(&png)
            .unwrap();
        let classes = model.classify_file(&png, 3).unwrap();
        assert_eq!(classes.len(), 3);
        let x = mobile_core::preprocess::model_input(&img, model.meta()).unwrap();
        let logits: Vec<f32> = net
            .forward(
                &Tensor::from_vec(x, (1, 1, 28, 28), &Device::Cpu).unwrap(),
                None,
                false,
            )
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let best = (0..3)
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap();
        assert_eq!(
            classes[0].index, best,
            "image {i}: {classes:?} vs {logits:?}"
        );
        assert_eq!(classes[0].label, info.labels[best]);
    }
}

#[test]
fn training_resumes_where_it_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(write_arch(tmp.path(), &tiny_arch()), 2);
    let straight = tmp.path().join("straight");
    run_training(&cfg, &straight, false, None).unwrap();
    let split = tmp.path().join("split");
    let err = run_training(&cfg, &split, false, Some(0)).unwrap_err();
    assert!(err.to_string().contains("cancelled"), "{err}");
    assert!(!split.join("result.json").exists());
    run_training(&cfg, &split, true, None).unwrap();
    let load = |d: &Path| {
        candle_core::safetensors::load(d.join("checkpoint/weights.safetensors"), &Device::Cpu)
            .unwrap()
    };
    let (a, b) = (load(&straight), load(&split));
    assert_eq!(a.len(), b.len());
    for (name, t) in &a {
        let d = common::max_diff(t, &b[name]);
        assert!(d < 1e-5, "{name}: {d}");
    }
    let metrics = |d: &Path| -> Vec<fbnet::train::TrainMetrics> {
        fbnet::runs::read_metrics(&RunDir(d.to_path_buf())).unwrap()
    };
    let (ma, mb) = (metrics(&straight), metrics(&split));
    assert_eq!(ma.len(), 2);
    assert_eq!(
        ma.iter().map(|m| m.val_top1).collect::<Vec<_>>(),
        mb.iter().map(|m| m.val_top1).collect::<Vec<_>>()
    );
    // a second start in a used folder is refused
    let err = run_training(&cfg, &straight, false, None).unwrap_err();
    assert!(err.to_string().contains("--resume"), "{err}");
}

#[test]
fn bad_run_folders_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m.onnx");
    let cfg = ExportConfig {
        int8: false,
        ..ExportConfig::default()
    };
    let msg = |dir: &Path| {
        export(dir, &out, &cfg, &mut |_, _, _| {})
            .unwrap_err()
            .to_string()
    };
    // missing folder
    let missing = tmp.path().join("nothing-here");
    assert!(msg(&missing).contains("nothing-here"), "{}", msg(&missing));
    // a folder whose training never finished an epoch
    let arch = tiny_arch();
    let half = tmp.path().join("half");
    let cfg_t = config(write_arch(tmp.path(), &arch), 1);
    std::fs::create_dir_all(&half).unwrap();
    std::fs::write(
        half.join("config.json"),
        serde_json::to_string(&cfg_t).unwrap(),
    )
    .unwrap();
    std::fs::write(half.join("arch.json"), arch.to_json()).unwrap();
    let m = format!(
        "{:#}",
        export(&half, &out, &cfg, &mut |_, _, _| {}).unwrap_err()
    );
    assert!(
        m.contains("data.json") || m.contains("no finished epoch"),
        "{m}"
    );
    // weights of another architecture of the same space
    let dir = tmp.path().join("run");
    run_training(&config(write_arch(tmp.path(), &arch), 1), &dir, false, None).unwrap();
    let other = Arch::new(
        "tiny-b",
        common::tiny_space(),
        vec![Block::K3E1, Block::Skip, Block::K5E3],
    )
    .unwrap();
    std::fs::write(dir.join("arch.json"), other.to_json()).unwrap();
    let m = format!(
        "{:#}",
        export(&dir, &out, &cfg, &mut |_, _, _| {}).unwrap_err()
    );
    assert!(m.contains("weights are of architecture"), "{m}");
    // a file that is not ONNX
    let text = tmp.path().join("notes.onnx");
    std::fs::write(&text, "this is not a model").unwrap();
    let e = decode_model(&std::fs::read(&text).unwrap(), &text).unwrap_err();
    assert!(e.to_string().contains("notes.onnx"), "{e}");
    assert!(e.to_string().contains("not an ONNX model"), "{e}");
}
