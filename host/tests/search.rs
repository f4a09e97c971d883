//! The DNAS loop end to end on real Fashion-MNIST images (three classes, a few hundred images, a tiny
//! space) with a synthetic latency table whose entries grow with each op's MACs: resume reproduces an
//! uninterrupted run, latency pressure lowers the expected latency, and the run folder holds what it
//! promises.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::Device;
use fbnet::search::{LossForm, RunDir, SearchConfig, read_metrics, search};
use mobile_core::onnx::Dtype;
use mobile_core::{Arch, Space};

/// A complete int8 table: each op costs 10 µs + 10 µs per thousand MACs, so larger blocks are slower.
fn write_lut(space: &Space, dir: &std::path::Path) -> std::path::PathBuf {
    let lut = common::synthetic_lut(
        space,
        Dtype::Int8,
        |op| 10.0 + op.cost().macs as f64 / 100.0,
        5.0,
    );
    let path = dir.join("tiny.json");
    lut.save(&path).unwrap();
    path
}

fn config(lut: std::path::PathBuf) -> SearchConfig {
    SearchConfig {
        data: "fashion-mnist".into(),
        lut,
        classes: Some(3),
        max_images: Some(240),
        epochs: 2,
        freeze_epochs: 0,
        batch_size: 32,
        theta_lr: 0.05,
        samples: 2,
        ..SearchConfig::default()
    }
}

fn run(
    cfg: &SearchConfig,
    dir: &std::path::Path,
    resume: bool,
    cancel_at_epoch: Option<usize>,
) -> anyhow::Result<fbnet::search::SearchResult> {
    let cancel = AtomicBool::new(false);
    let mut progress = |p: &fbnet::search::Progress| {
        if Some(p.epoch) == cancel_at_epoch {
            cancel.store(true, Ordering::Relaxed);
        }
    };
    search(
        cfg,
        &RunDir(dir.to_path_buf()),
        resume,
        &Device::Cpu,
        &mut progress,
        &cancel,
    )
}

fn thetas(r: &fbnet::search::SearchResult) -> Vec<f64> {
    r.layers.iter().flat_map(|l| l.theta.clone()).collect()
}

#[test]
fn an_interrupted_search_resumes_to_the_same_theta_and_leaves_a_complete_run_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(write_lut(&common::tiny_space(), tmp.path()));
    let straight = run(&cfg, &tmp.path().join("straight"), false, None).unwrap();

    let dir = tmp.path().join("resumed");
    let err = run(&cfg, &dir, false, Some(1)).unwrap_err();
    assert!(err.to_string().contains("cancelled"), "{err}");
    assert_eq!(read_metrics(&RunDir(dir.clone())).unwrap().len(), 1);
    // a second start in the same folder is refused rather than overwriting the run
    assert!(
        run(&cfg, &dir, false, None)
            .unwrap_err()
            .to_string()
            .contains("--resume")
    );
    let resumed = run(&cfg, &dir, true, None).unwrap();

    let (a, b) = (thetas(&straight), thetas(&resumed));
    assert!(a.iter().any(|&v| v.abs() > 1e-3), "θ never moved: {a:?}");
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-5, "θ differs after resume: {x} vs {y}");
    }
    let metrics = read_metrics(&RunDir(dir.clone())).unwrap();
    assert_eq!(
        metrics.iter().map(|m| m.epoch).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(metrics[1].tau < metrics[0].tau);
    for m in &metrics {
        assert!(m.train_ce.is_finite() && m.theta_acc >= 0.0 && m.expected_latency_us > 0.0);
    }
    // the results are files the rest of the tool reads
    for f in [
        "config.json",
        "result.json",
        "report.md",
        "heatmap.png",
        "arch.svg",
        "searched-best.json",
        "searched-sample-2.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let best = Arch::load(dir.join("searched-best.json").to_str().unwrap()).unwrap();
    assert_eq!(best.text(), resumed.best.arch);
    assert_eq!(best.space.hash(), common::tiny_space().hash());
    // the most likely architecture takes each layer's most probable candidate
    for (layer, b) in resumed.layers.iter().zip(&best.choices) {
        let i = layer.candidates.iter().position(|c| c == b).unwrap();
        assert!(layer.probs.iter().all(|&p| p <= layer.probs[i]));
    }
}

#[test]
fn latency_pressure_lowers_the_expected_latency() {
    let tmp = tempfile::tempdir().unwrap();
    let lut = write_lut(&common::tiny_space(), tmp.path());
    let mut free = config(lut.clone());
    free.loss = LossForm::Additive;
    free.alpha = 0.0;
    free.beta = 1.0;
    let mut pressed = free.clone();
    pressed.alpha = 0.01;
    run(&free, &tmp.path().join("free"), false, None).unwrap();
    run(&pressed, &tmp.path().join("pressed"), false, None).unwrap();
    let last = |d: &str| {
        read_metrics(&RunDir(tmp.path().join(d)))
            .unwrap()
            .last()
            .unwrap()
            .expected_latency_us
    };
    let (f, p) = (last("free"), last("pressed"));
    assert!(
        p < 0.95 * f,
        "expected latency with pressure {p} µs, without {f} µs"
    );
}

#[test]
fn a_table_for_another_class_count_is_refused_with_advice() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(write_lut(&common::tiny_space(), tmp.path()));
    cfg.classes = None;
    let err = run(&cfg, &tmp.path().join("r"), false, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("10 classes") && err.contains("--classes"),
        "{err}"
    );
}

#[test]
fn a_diverging_search_stops_with_a_clear_message_and_keeps_its_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(write_lut(&common::tiny_space(), tmp.path()));
    cfg.lr = 1e30;
    let dir = tmp.path().join("r");
    let err = run(&cfg, &dir, false, None).unwrap_err().to_string();
    assert!(
        err.contains("not a finite number") && err.contains("checkpoint"),
        "{err}"
    );
    assert!(dir.join("config.json").is_file());
    assert!(read_metrics(&RunDir(dir)).unwrap().is_empty());
}
