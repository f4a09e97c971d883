//! The profiler on real ONNX Runtime sessions: complete tables, cancel and resume, validation.

use std::sync::atomic::{AtomicBool, Ordering};

use mobile_core::device::DeviceInfo;
use mobile_core::lut::{Lut, Method};
use mobile_core::measure::TimingConfig;
use mobile_core::onnx::Dtype;
use mobile_core::profile::in_network::covering_archs;
use mobile_core::profile::{ProfileConfig, profile};
use mobile_core::rng::SplitMix;
use mobile_core::runtime::SessionConfig;
use mobile_core::validate::{validate, validation_archs};
use mobile_core::{Error, Space};

fn config(method: Method, dtypes: Vec<Dtype>, dir: &std::path::Path) -> ProfileConfig {
    ProfileConfig {
        space: Space::fbnet_small().with_variant(Some(16), Some(0.25), Some(10)),
        dtypes,
        session: SessionConfig::default(),
        timing: TimingConfig::quick(),
        device: DeviceInfo::this_host(),
        method,
        seed: 1,
        trace_dir: dir.to_path_buf(),
    }
}

#[test]
fn covering_networks_place_every_candidate_at_every_layer() {
    let space = Space::fbnet_224();
    let archs = covering_archs(&space).unwrap();
    assert_eq!(archs.len(), 9);
    for (l, layer) in space.layers().iter().enumerate() {
        for block in space.candidates_at(layer) {
            assert!(
                archs.iter().any(|a| a.choices[l] == block),
                "layer {l} never gets {block}"
            );
        }
    }
    let mut ops: Vec<_> = archs
        .iter()
        .flat_map(|a| a.ops())
        .filter(|o| !o.is_identity())
        .collect();
    ops.sort();
    ops.dedup();
    assert_eq!(ops, space.unique_ops());
}

#[test]
fn in_network_profile_fills_a_table_that_predicts_whole_networks() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lut.json");
    let mut cfg = config(
        Method::InNetwork,
        vec![Dtype::Fp32, Dtype::Int8],
        dir.path(),
    );
    // Networks of about half a millisecond: large enough that kernels are not all timer noise, small
    // enough for a quick test.
    cfg.space = Space::fbnet_small().with_variant(Some(28), Some(0.5), Some(10));
    let mut steps = Vec::new();
    let mut texts = Vec::new();
    let lut = profile(&cfg, None, Some(&out), &AtomicBool::new(false), &mut |p| {
        steps.push((p.done, p.total));
        texts.push(p.step.clone());
    })
    .unwrap();
    // every covering network's step says the device's pace against the profile's
    let covered = texts.iter().filter(|t| t.starts_with("cover-")).count();
    let paced = texts
        .iter()
        .filter(|t| t.contains("x the profile's median time"))
        .count();
    assert!(covered > 0 && paced == covered, "{texts:?}");
    // progress arrives in order and ends complete
    assert!(steps.windows(2).all(|w| w[0].0 <= w[1].0));
    assert_eq!(steps.last().unwrap().0, steps.last().unwrap().1);
    for d in [Dtype::Fp32, Dtype::Int8] {
        lut.require_complete(d).unwrap();
        assert!(lut.overhead(d).is_some());
    }
    // the profiler leaves no trace files behind
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("fbnet-trace"))
        .collect();
    assert!(leftovers.is_empty());
    // the saved file is the returned table
    let back = Lut::load(&out).unwrap();
    assert_eq!(back, lut);
    // the speed reference was timed at the start, after every covering network and at the end, per dtype
    let covers = covering_archs(&lut.space).unwrap().len();
    let reference = lut.reference.as_ref().unwrap();
    for d in [Dtype::Fp32, Dtype::Int8] {
        let at: Vec<&str> = reference
            .timings
            .iter()
            .filter(|t| t.dtype == d)
            .map(|t| t.at.as_str())
            .collect();
        assert_eq!(at.first(), Some(&"start"), "{at:?}");
        assert_eq!(at.last(), Some(&"end"), "{at:?}");
        for c in 0..covers {
            assert!(at.contains(&format!("after cover-{c}").as_str()), "{at:?}");
        }
        assert!(at.len() <= 2 * covers + 2, "{at:?}");
    }

    // Predictions are sums of entries and track measured whole networks. The machine's speed may
    // drift between profiling and validating (and quick timing is rough), so the bounds are loose: the
    // overall level within a factor of 1.6 either way (double counting every op would be 2x), and the
    // networks relative to each other within 25% on average (scrambled attribution breaks that).
    let archs = validation_archs(&lut.space, 3, 3).unwrap();
    let report = validate(
        &lut,
        &archs,
        &TimingConfig::quick(),
        lut.runtime.session,
        3,
        &AtomicBool::new(false),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(report.checks.len(), archs.len() * 2);
    assert!(
        report
            .checks
            .iter()
            .all(|c| c.predicted_us > 0.0 && c.measured_us > 0.0)
    );
    for s in &report.summary {
        // the reference was timed during the validation and every network set against its pace
        let speed = s.speed_now.unwrap();
        assert!((1.0 / 1.6..1.6).contains(&speed), "{speed}");
        assert!(s.mean_abs_error_corrected.unwrap().is_finite());
        assert!(
            (1.0 / 1.6..1.6).contains(&s.drift) && s.mean_abs_error_relative < 0.25,
            "{}: measured/predicted {:.2}, relative mean |error| {:.2}: {:#?}",
            s.dtype,
            s.drift,
            s.mean_abs_error_relative,
            report.checks
        );
    }
}

#[test]
fn a_cancelled_profile_keeps_its_entries_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lut.json");
    let cfg = config(Method::Isolated, vec![Dtype::Fp32], dir.path());
    let cancel = AtomicBool::new(false);
    let err = profile(&cfg, None, Some(&out), &cancel, &mut |p| {
        if p.done >= 3 {
            cancel.store(true, Ordering::Relaxed);
        }
    })
    .unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err}");
    let partial = Lut::load(&out).unwrap();
    assert!(partial.entries.len() >= 3);
    assert!(!partial.missing(Dtype::Fp32).is_empty());
    assert!(partial.require_complete(Dtype::Fp32).is_err());

    let mut resumed_steps = 0;
    let full = profile(
        &cfg,
        Some(partial.clone()),
        Some(&out),
        &AtomicBool::new(false),
        &mut |_| resumed_steps += 1,
    )
    .unwrap();
    full.require_complete(Dtype::Fp32).unwrap();
    // only the missing ops were measured, and the earlier entries are kept as they were
    assert_eq!(resumed_steps, full.entries.len() - partial.entries.len());
    assert_eq!(&full.entries[..partial.entries.len()], &partial.entries[..]);

    // resuming with other settings is refused
    let mut other = cfg.clone();
    other.method = Method::InNetwork;
    assert!(
        profile(
            &other,
            Some(partial),
            None,
            &AtomicBool::new(false),
            &mut |_| {}
        )
        .is_err()
    );
}

#[test]
fn a_table_is_refused_for_another_space() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(Method::Isolated, vec![Dtype::Fp32], dir.path());
    let cancel = AtomicBool::new(false);
    let err = profile(&cfg, None, None, &cancel, &mut |_| {
        cancel.store(true, Ordering::Relaxed)
    })
    .unwrap_err();
    assert!(matches!(err, Error::Cancelled));
    let lut = Lut::load(&dir.path().join("missing.json"));
    assert!(lut.is_err());

    let other = Space::fbnet_small();
    let arch = mobile_core::Arch::random(&other, "x", &mut SplitMix::new(1)).unwrap();
    let empty = Lut::new(
        cfg.space.clone(),
        vec![Dtype::Fp32],
        DeviceInfo::default(),
        mobile_core::lut::RuntimeDesc::onnxruntime("1.31.1", SessionConfig::default()),
        TimingConfig::quick(),
        Method::Isolated,
    );
    let err = empty.predict(&arch, Dtype::Fp32).unwrap_err().to_string();
    assert!(err.contains("space"), "{err}");
    assert!(empty.check_space(&other).is_err());
}

#[test]
fn an_interrupted_in_network_profile_keeps_its_networks_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lut.json");
    let cfg = config(Method::InNetwork, vec![Dtype::Fp32], dir.path());
    let cancel = AtomicBool::new(false);
    let err = profile(&cfg, None, Some(&out), &cancel, &mut |p| {
        if p.done >= 2 {
            cancel.store(true, Ordering::Relaxed);
        }
    })
    .unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err}");
    // ONNX Runtime writes a profiled session's trace when the session drops, cancelled or not: none
    // is left beside the table (the apps would list it as one)
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(left, ["lut.json"], "files left by the cancelled profile");
    // the networks measured before the cancel are in the saved file, waiting for the fit
    let partial = Lut::load(&out).unwrap();
    assert_eq!(partial.pending.len(), 2);
    assert!(partial.entries.is_empty());
    assert!(partial.require_complete(Dtype::Fp32).is_err());

    let mut steps = 0;
    let full = profile(
        &cfg,
        Some(partial.clone()),
        Some(&out),
        &AtomicBool::new(false),
        &mut |_| steps += 1,
    )
    .unwrap();
    full.require_complete(Dtype::Fp32).unwrap();
    assert!(full.pending.is_empty());
    assert_eq!(full.calibration.len(), 1);
    assert_eq!(
        full.calibration[0].networks,
        covering_archs(&cfg.space).unwrap().len()
    );
    // the two measured networks were not measured again: the rest, plus the fit
    assert_eq!(steps, full.calibration[0].networks - 2 + 1);
}
