//! The DNAS loop end to end on real Fashion-MNIST images (three classes, a few hundred images, a tiny
//! space) with a synthetic latency table whose entries grow with each op's MACs: resume reproduces an
//! uninterrupted run, latency pressure lowers the expected latency, and the run folder holds what it
//! promises.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::Device;
use fbnet::search::{
    LossForm, Relaxation, RunDir, SearchConfig, ThetaSchedule, read_metrics, search,
};
use mobile_core::onnx::Dtype;
use mobile_core::{Arch, Space};

/// `common::macs_lut` of the space, saved in `dir`.
fn write_lut(space: &Space, dir: &std::path::Path) -> std::path::PathBuf {
    let lut = common::macs_lut(space);
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

/// Cancelled in its second epoch and resumed, a search ends where an uninterrupted one does, for
/// each way of training θ: interleaved hard, interleaved soft, the paper's phases, joint soft (the default).
#[test]
fn an_interrupted_search_resumes_to_the_same_theta_and_leaves_a_complete_run_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let lut = write_lut(&common::tiny_space(), tmp.path());
    let variants = [
        (Relaxation::Hard, ThetaSchedule::Interleaved, 1),
        (Relaxation::Soft, ThetaSchedule::Interleaved, 2),
        (Relaxation::Soft, ThetaSchedule::Phase, 1),
        (Relaxation::Soft, ThetaSchedule::Joint, 1),
    ];
    for (k, (relaxation, theta_schedule, theta_every)) in variants.into_iter().enumerate() {
        let cfg = SearchConfig {
            relaxation,
            theta_schedule,
            theta_every,
            ..config(lut.clone())
        };
        resumes_exactly(&cfg, &tmp.path().join(format!("v{k}")));
    }
}

/// The joint schedule's weights learn on the cross-entropy alone, as in the other schedules, although
/// its backward is that of the latency-aware loss (the paper's scales CE's gradient by α·log(LAT)^β ≈
/// 0.4 here): with θ held still (lr 0) it trains the weights as the paper's phases do, step for step (both
/// draw the same Gumbel noise and evaluate θ's split once per epoch), and θ moves once it may.
#[test]
fn the_joint_schedule_trains_the_weights_on_the_cross_entropy_and_theta_from_the_same_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let lut = write_lut(&common::tiny_space(), tmp.path());
    let still = |theta_schedule| SearchConfig {
        theta_schedule,
        theta_lr: 0.0,
        ..config(lut.clone())
    };
    run(
        &still(ThetaSchedule::Phase),
        &tmp.path().join("phase"),
        false,
        None,
    )
    .unwrap();
    let joint = run(
        &still(ThetaSchedule::Joint),
        &tmp.path().join("joint"),
        false,
        None,
    )
    .unwrap();
    let curve = |dir: &str| -> Vec<(f64, f64)> {
        read_metrics(&RunDir(tmp.path().join(dir)))
            .unwrap()
            .iter()
            .map(|m| (m.train_ce, m.theta_ce))
            .collect()
    };
    let (p, j) = (curve("phase"), curve("joint"));
    for (a, b) in p.iter().zip(&j) {
        assert!(
            (a.0 - b.0).abs() < 1e-5 && (a.1 - b.1).abs() < 1e-5,
            "phase (train CE, θ-split CE) {a:?} against joint {b:?}"
        );
    }
    assert!(thetas(&joint).iter().all(|&v| v == 0.0));
    let moving = run(
        &SearchConfig {
            theta_schedule: ThetaSchedule::Joint,
            ..config(lut.clone())
        },
        &tmp.path().join("moving"),
        false,
        None,
    )
    .unwrap();
    assert!(thetas(&moving).iter().any(|&v| v.abs() > 1e-3));
    let m = read_metrics(&RunDir(tmp.path().join("moving"))).unwrap();
    assert!(
        m.iter()
            .all(|m| m.theta_ce.is_finite() && m.theta_acc > 0.0)
    );
}

fn resumes_exactly(cfg: &SearchConfig, root: &std::path::Path) {
    let cfg = cfg.clone();
    let tmp = root;
    std::fs::create_dir_all(tmp).unwrap();
    let straight = run(&cfg, &tmp.join("straight"), false, None).unwrap();

    let dir = tmp.join("resumed");
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
    // A kill after epoch 2's metrics line was appended but before its checkpoint was installed: the
    // resumed run reruns epoch 2 and keeps only the line it writes then.
    let metrics_file = RunDir(dir.clone()).metrics();
    let first = std::fs::read_to_string(&metrics_file).unwrap();
    let mut orphan: serde_json::Value =
        serde_json::from_str(first.lines().next().unwrap()).unwrap();
    orphan["epoch"] = 2.into();
    orphan["train_ce"] = 999.0.into();
    std::fs::write(&metrics_file, format!("{first}{orphan}\n")).unwrap();
    let resumed = run(&cfg, &dir, true, None).unwrap();

    let (a, b) = (thetas(&straight), thetas(&resumed));
    assert!(a.iter().any(|&v| v.abs() > 1e-3), "θ never moved: {a:?}");
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x - y).abs() < 1e-5,
            "{:?}: θ differs after resume: {x} vs {y}",
            cfg.relaxation
        );
    }
    // the gradient tallies resume too: the evidence is the straight run's
    for (a, b) in straight.layers.iter().zip(&resumed.layers) {
        let (a, b) = (a.decision.as_ref().unwrap(), b.decision.as_ref().unwrap());
        let (ta, tb) = (a.evidence_t.unwrap(), b.evidence_t.unwrap());
        assert!((ta - tb).abs() <= 1e-6 * ta.abs().max(1.0), "{ta} vs {tb}");
    }
    let metrics = read_metrics(&RunDir(dir.clone())).unwrap();
    assert_eq!(
        metrics.iter().map(|m| m.epoch).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(metrics[1].tau < metrics[0].tau);
    assert!(
        metrics[1].train_ce < 999.0,
        "the orphaned line survived the resume"
    );
    for m in &metrics {
        assert!(m.train_ce.is_finite() && m.theta_acc >= 0.0 && m.expected_latency_us > 0.0);
        assert_eq!(m.winners.len(), 3);
    }
    assert!(metrics[1].theta_steps > metrics[0].theta_steps);
    // the report is written from the folder alone, after the search
    fbnet::search_report::write(&RunDir(dir.clone())).unwrap();
    // the results are files the rest of the tool reads
    for f in [
        "config.json",
        "result.json",
        "report.md",
        "heatmap.svg",
        "curves.svg",
        "arch.svg",
        "searched-best.json",
        "searched-sample-2.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let best = Arch::load(dir.join("searched-best.json").to_str().unwrap()).unwrap();
    assert_eq!(best.text(), resumed.best.arch);
    assert_eq!(best.space.hash(), common::tiny_space().hash());
    // the most likely architecture takes each layer's most probable candidate, and each layer says
    // by how much
    for (layer, b) in resumed.layers.iter().zip(&best.choices) {
        let i = layer.candidates.iter().position(|c| c == b).unwrap();
        assert!(layer.probs.iter().all(|&p| p <= layer.probs[i]));
        let d = layer.decision.as_ref().unwrap();
        assert_eq!(d.winner, i);
        let t = d
            .evidence_t
            .expect("θ steps were made: the evidence is measured");
        assert_eq!(d.decided, t <= fbnet::decision::DECIDED_T);
        assert!(d.accuracy_t.is_some());
    }
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("Decision per layer") && report.contains("θ lead"));
}

/// A run folder names its table by absolute path with the table's hash: a table re-profiled at the same
/// path since is refused on resume, with the file named.
#[test]
fn a_resume_refuses_a_table_that_changed_underneath() {
    let tmp = tempfile::tempdir().unwrap();
    let lut = write_lut(&common::tiny_space(), tmp.path());
    let cfg = SearchConfig {
        epochs: 2,
        ..config(lut.clone())
    };
    let dir = tmp.path().join("run");
    assert!(run(&cfg, &dir, false, Some(1)).is_err());
    let stored: SearchConfig = RunDir(dir.clone()).load_config("search").unwrap();
    assert!(stored.lut.is_absolute() && stored.lut_sha256.is_some());
    // the same table, slower everywhere: another device, or another profile
    let mut table = mobile_core::lut::Lut::load(&lut).unwrap();
    for e in &mut table.entries {
        e.stats.trimmed_mean *= 1.5;
        e.stats.p50 *= 1.5;
        e.stats.p10 *= 1.5;
        e.stats.p90 *= 1.5;
        e.stats.mean *= 1.5;
    }
    table.save(&lut).unwrap();
    let err = format!("{:#}", run(&cfg, &dir, true, None).unwrap_err());
    assert!(
        err.contains("tiny.json") && err.contains("table changed"),
        "{err}"
    );
}

#[test]
fn latency_pressure_lowers_the_expected_latency() {
    let tmp = tempfile::tempdir().unwrap();
    let lut = write_lut(&common::tiny_space(), tmp.path());
    let mut free = config(lut.clone());
    free.relaxation = Relaxation::Soft;
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

/// With `--target-ms` at the median latency of the tiny space's random architectures, the searched-best
/// lands within [0.9 T, T] by the table, and the report says so.
#[test]
fn a_search_with_a_latency_target_lands_within_ten_percent_below_it() {
    let tmp = tempfile::tempdir().unwrap();
    let space = common::tiny_space();
    let lut_path = write_lut(&space, tmp.path());
    let lut = mobile_core::lut::Lut::load(&lut_path).unwrap();
    let mut rng = mobile_core::rng::SplitMix::new(5);
    let mut lats: Vec<f64> = (0..101)
        .map(|_| {
            let choices = space
                .layers()
                .iter()
                .map(|l| {
                    let c = space.candidates_at(l);
                    c[(rng.uniform() * c.len() as f64) as usize % c.len()]
                })
                .collect();
            let arch = Arch::new("r", space.clone(), choices).unwrap();
            lut.predict(&arch, Dtype::Int8).unwrap()
        })
        .collect();
    lats.sort_by(f64::total_cmp);
    let target_us = lats[50];
    let cfg = SearchConfig {
        target_ms: Some(target_us / 1000.0),
        ..config(lut_path)
    };
    let dir = tmp.path().join("t");
    let r = run(&cfg, &dir, false, None).unwrap();
    let best = r
        .best
        .latency_us
        .iter()
        .find(|(d, _)| *d == Dtype::Int8)
        .unwrap()
        .1;
    assert!(
        best <= target_us * (1.0 + 1e-9) && best >= 0.9 * target_us,
        "searched-best {best} µs for a target of {target_us} µs"
    );
    fbnet::search_report::write(&RunDir(dir.clone())).unwrap();
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("Latency target"), "{report}");
}

#[test]
fn bad_search_settings_are_refused_with_the_flag_named() {
    let tmp = tempfile::tempdir().unwrap();
    let lut = write_lut(&common::tiny_space(), tmp.path());
    let cases: Vec<(SearchConfig, &str)> = vec![
        (
            SearchConfig {
                tau_end: 8.0,
                ..config(lut.clone())
            },
            "--tau-end",
        ),
        (
            SearchConfig {
                theta_every: 0,
                ..config(lut.clone())
            },
            "--theta-every",
        ),
        (
            SearchConfig {
                target_ms: Some(-1.0),
                ..config(lut.clone())
            },
            "--target-ms",
        ),
        // the tiny space's fastest network takes far longer than a microsecond
        (
            SearchConfig {
                target_ms: Some(0.001),
                ..config(lut.clone())
            },
            "out of reach",
        ),
    ];
    for (k, (cfg, want)) in cases.into_iter().enumerate() {
        let dir = tmp.path().join(format!("bad{k}"));
        let err = format!("{:#}", run(&cfg, &dir, false, None).unwrap_err());
        assert!(err.contains(want), "expected {want:?} in: {err}");
        // refused before anything is written
        assert!(!dir.join("config.json").exists());
    }
}

/// A run folder of the first release (docs/example-search: no schedule, relaxation or target fields,
/// no per-layer decisions) still loads, and its report is rewritten from it.
#[test]
fn a_run_folder_of_the_first_release_loads_and_its_report_is_rewritten() {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let src = root.join("docs/example-search");
    for f in ["config.json", "metrics.jsonl", "result.json"] {
        std::fs::copy(src.join(f), tmp.path().join(f)).unwrap();
    }
    // the table named relative to the repository
    let cfg_path = tmp.path().join("config.json");
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    let lut = root.join("tables/fbnet-small-r28-w0.25-i1-amd-epyc-t1.json");
    let text = text.replace(
        "\"tables/fbnet-small-r28-w0.25-i1-amd-epyc-t1.json\"",
        &format!("{:?}", lut.display().to_string()),
    );
    std::fs::write(&cfg_path, text).unwrap();
    let run_dir = RunDir(tmp.path().to_path_buf());
    let cfg: SearchConfig = run_dir.load_config("search").unwrap();
    assert_eq!(cfg.theta_schedule, ThetaSchedule::Phase);
    assert_eq!(cfg.relaxation, Relaxation::Soft);
    assert_eq!(cfg.epochs, 8);
    assert_eq!(read_metrics(&run_dir).unwrap().len(), 8);
    fbnet::search::read_result(&run_dir).unwrap();
    fbnet::search_report::write(&run_dir).unwrap();
    let report = std::fs::read_to_string(tmp.path().join("report.md")).unwrap();
    assert!(report.contains("predates per-layer decisions"), "{report}");
    assert!(tmp.path().join("curves.svg").is_file());
}
