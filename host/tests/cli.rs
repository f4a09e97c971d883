//! The `fbnet` command line end to end, as a user runs it.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn fbnet(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fbnet"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("fbnet runs")
}

fn ok(args: &[&str], dir: &Path) -> String {
    let out = fbnet(args, dir);
    assert!(
        out.status.success(),
        "fbnet {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(args: &[&str], dir: &Path) -> String {
    let out = fbnet(args, dir);
    assert!(!out.status.success(), "fbnet {args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn arch_and_space_commands() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let list = ok(&["arch", "list"], d);
    for name in [
        "fbnet-a",
        "fbnet-b",
        "fbnet-c",
        "fbnet-96-0.35-1",
        "fbnet-s8",
        "fbnet-iphonex",
        "mbv2-like",
    ] {
        assert!(list.contains(name), "{name} missing from {list}");
    }
    let show = ok(&["arch", "show", "fbnet-b"], d);
    assert!(show.contains("total 291.0M MACs, 4.80M params"), "{show}");
    assert!(show.contains("published definition (mobile-vision): 291.1M MACs"));
    assert!(show.contains("paper Table 3"));
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["arch", "show", "fbnet-c", "--json"], d)).unwrap();
    assert_eq!(json["layers"].as_array().unwrap().len(), 25);
    // the JSON form is an architecture file the commands accept again
    std::fs::write(d.join("c.json"), json.to_string()).unwrap();
    assert!(ok(&["arch", "show", "c.json"], d).contains("fbnet-c"));

    let space: serde_json::Value = serde_json::from_str(&ok(
        &["space", "show", "--space", "fbnet-small", "--json"],
        d,
    ))
    .unwrap();
    assert_eq!(space["resolution"], 32);
    assert!(ok(&["space", "show"], d).contains("22 searchable layers"));
    assert!(fails(&["space", "show", "--space", "nope"], d).contains("unknown space `nope`"));
    assert!(fails(&["arch", "show", "nope"], d).contains("neither a built-in"));
}

#[test]
fn arch_onnx_writes_models_onnx_runtime_loads() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for dtype in ["fp32", "int8"] {
        let file = format!("b-{dtype}.onnx");
        ok(
            &[
                "arch",
                "onnx",
                "fbnet-96-0.35-1",
                "--dtype",
                dtype,
                "--out",
                &file,
            ],
            d,
        );
        let bytes = std::fs::read(d.join(&file)).unwrap();
        let mut s = mobile_core::runtime::SessionConfig::default()
            .session(&bytes)
            .unwrap();
        let out =
            mobile_core::runtime::run(&mut s, &vec![0.1; 3 * 96 * 96], &[1, 3, 96, 96]).unwrap();
        assert_eq!(out[0].0, vec![1, 1000]);
    }
}

#[test]
fn profile_show_validate_diff_and_bad_tables() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let space = [
        "--space",
        "fbnet-small",
        "--resolution",
        "16",
        "--width",
        "0.25",
    ];
    let mut args = vec!["profile", "--quick", "--out", "t.json"];
    args.extend(space);
    let out = ok(&args, d);
    assert!(out.contains("entries in"), "{out}");
    // profiling again to the same file is refused, and the finished table stays as it was
    let before = std::fs::read(d.join("t.json")).unwrap();
    let err = fails(&args, d);
    assert!(
        err.contains("t.json") && err.contains("--resume") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(d.join("t.json")).unwrap(), before);
    // a full profile does not continue a quick one
    let mut full = vec!["profile", "--resume", "--out", "t.json"];
    full.extend(space);
    let err = fails(&full, d);
    assert!(
        err.contains("cannot resume") && err.contains("timing"),
        "{err}"
    );
    assert_eq!(std::fs::read(d.join("t.json")).unwrap(), before);
    let show = ok(&["lut", "show", "t.json"], d);
    assert!(
        show.contains("onnxruntime 1.31.1") && show.contains("k5_e6/"),
        "{show}"
    );
    assert!(ok(&["lut", "diff", "t.json", "t.json"], d).contains("B/A over all common ops 1.00x"));

    let report: serde_json::Value = serde_json::from_str(&ok(
        &[
            "lut", "validate", "--lut", "t.json", "--archs", "1", "--quick", "--json", "--out",
            "v.json",
        ],
        d,
    ))
    .unwrap();
    // FBNet-A/B/C fit this space's layer structure, plus one random network, at both dtypes
    assert_eq!(report["checks"].as_array().unwrap().len(), 8);
    assert!(d.join("v.json").exists());

    std::fs::write(d.join("bad.json"), "{\"schema\": 1, \"entries\": 3").unwrap();
    let err = fails(&["lut", "show", "bad.json"], d);
    assert!(
        err.contains("bad.json") && err.contains("not JSON"),
        "{err}"
    );
    // a partial table cannot be validated, and says how to finish it
    let mut t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("t.json")).unwrap()).unwrap();
    t["entries"].as_array_mut().unwrap().truncate(10);
    std::fs::write(d.join("partial.json"), t.to_string()).unwrap();
    let err = fails(&["lut", "validate", "--lut", "partial.json", "--quick"], d);
    assert!(err.contains("--resume"), "{err}");
    // and resuming it completes it
    let mut args = vec!["profile", "--quick", "--resume", "--out", "partial.json"];
    args.extend(space);
    ok(&args, d);
    assert!(!ok(&["lut", "show", "partial.json"], d).contains("not yet measured"));
}

#[test]
fn search_refuses_bad_input_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let err = fails(&["search", "--lut", "missing.json"], d);
    assert!(err.contains("missing.json"), "{err}");
    std::fs::write(d.join("broken.json"), "{ not json").unwrap();
    let err = fails(&["search", "--lut", "broken.json"], d);
    assert!(err.contains("broken.json"), "{err}");
    let err = fails(&["search", "--resume", "no-such-run"], d);
    assert!(
        err.contains("no-such-run") && err.contains("not a search run folder"),
        "{err}"
    );
    // settings that make no sense are refused by name before the table is read
    let err = fails(
        &["search", "--lut", "missing.json", "--theta-every", "0"],
        d,
    );
    assert!(err.contains("--theta-every"), "{err}");
    let err = fails(
        &[
            "search",
            "--lut",
            "missing.json",
            "--tau",
            "1",
            "--tau-end",
            "2",
        ],
        d,
    );
    assert!(err.contains("--tau-end"), "{err}");
    // a device this build cannot use is named, with what to do, before any run folder is made
    let table = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tables/fbnet-small-r28-w0.25-i1-amd-epyc-t1.json"
    );
    if !cfg!(feature = "cuda") {
        let err = fails(&["search", "--lut", table, "--device", "cuda"], d);
        assert!(
            err.contains("--device cuda") && err.contains("--features cuda"),
            "{err}"
        );
    }
    let err = fails(&["search", "--lut", table, "--device", "tpu"], d);
    assert!(err.contains("expected cpu or cuda"), "{err}");
    assert!(!d.join("runs").exists(), "a run folder was made");
    let err = fails(&["report", "no-such-run"], d);
    assert!(
        err.contains("no-such-run") && err.contains("not a search run folder"),
        "{err}"
    );
}

#[test]
fn train_export_run_and_bench_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let arch = mobile_core::Arch::new(
        "tiny-cli",
        common::tiny_space(),
        vec![
            mobile_core::Block::K3E3,
            mobile_core::Block::Skip,
            mobile_core::Block::K5E1G2,
        ],
    )
    .unwrap();
    std::fs::write(d.join("arch.json"), arch.to_json()).unwrap();
    let train = ok(
        &[
            "train",
            "arch.json",
            "--classes",
            "3",
            "--max-images",
            "192",
            "--max-val-images",
            "60",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--out",
            "run",
        ],
        d,
    );
    assert!(
        train.contains("chosen on held-out training images") && train.contains("test top-1"),
        "{train}"
    );
    let export = ok(
        &[
            "export",
            "run",
            "--out",
            "m/model.onnx",
            "--int8",
            "--calib",
            "16",
        ],
        d,
    );
    assert!(export.contains("same top-1 as candle 100.00%"), "{export}");
    assert!(d.join("m/model.int8.onnx").exists());
    // a real test image, as a user would pick it
    let img =
        image::GrayImage::from_fn(28, 28, |x, y| image::Luma([((x * 9 + y * 3) % 256) as u8]));
    img.save(d.join("shirt.png")).unwrap();
    let json = ok(
        &[
            "run",
            "m/model.int8.onnx",
            "shirt.png",
            "--top",
            "2",
            "--json",
        ],
        d,
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let classes = v[0]["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 2);
    let p: Vec<f64> = classes
        .iter()
        .map(|c| c["probability"].as_f64().unwrap())
        .collect();
    assert!(p[0] >= p[1] && p[0] <= 1.0 && p[1] >= 0.0, "{json}");
    let bench = ok(&["bench", "m/model.onnx", "--runs", "20", "--json"], d);
    let b: serde_json::Value = serde_json::from_str(&bench).unwrap();
    assert_eq!(b["runs"], 20);
    assert!(b["p10_us"].as_f64().unwrap() <= b["p90_us"].as_f64().unwrap());
    // bad input names the file and the problem
    let e = fails(&["run", "missing.onnx", "shirt.png"], d);
    assert!(e.contains("missing.onnx"), "{e}");
    std::fs::write(d.join("notes.onnx"), "not a model").unwrap();
    let e = fails(&["bench", "notes.onnx"], d);
    assert!(
        e.contains("notes.onnx") && e.contains("not an ONNX model"),
        "{e}"
    );
    let e = fails(&["export", "nowhere", "--out", "x.onnx"], d);
    assert!(e.contains("nowhere"), "{e}");
    let e = fails(&["run", "m/model.onnx", "notes.onnx"], d);
    assert!(e.contains("notes.onnx"), "{e}");
}

/// `fbnet arch random` writes architectures of the table's space within the asked latency band (by
/// uniform draws near the median, by the random walk far below it) and the all-BLOCK baselines.
#[test]
fn random_architectures_near_a_latency_and_uniform_baselines() {
    use mobile_core::onnx::Dtype;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let space = common::tiny_space();
    let lut = common::macs_lut(&space);
    lut.save(&d.join("tiny.json")).unwrap();
    let text = ok(
        &[
            "arch",
            "random",
            "--lut",
            "tiny.json",
            "--count",
            "0",
            "--out",
            "r",
        ],
        d,
    );
    let median: f64 = text
        .split("median ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no median in {text}"));
    let skip = ok(
        &[
            "arch",
            "random",
            "--lut",
            "tiny.json",
            "--all",
            "skip",
            "--out",
            "r",
        ],
        d,
    );
    let all_skip = mobile_core::Arch::load(d.join("r/all-skip.json").to_str().unwrap()).unwrap();
    assert!(all_skip.text().contains("skip"), "{skip}");
    // an architecture far below the median: the uniform draws rarely reach it, the walk does
    ok(
        &[
            "arch",
            "random",
            "--lut",
            "tiny.json",
            "--all",
            "k3_e1",
            "--out",
            "r",
        ],
        d,
    );
    let small = mobile_core::Arch::load(d.join("r/all-k3_e1.json").to_str().unwrap()).unwrap();
    let small_ms = lut.predict(&small, Dtype::Int8).unwrap() / 1000.0;
    assert!(small_ms < median);
    for near in [median, small_ms] {
        let out = d.join(format!("near-{near}"));
        let near_s = format!("{near}");
        let out_s = out.to_str().unwrap();
        ok(
            &[
                "arch",
                "random",
                "--lut",
                "tiny.json",
                "--count",
                "3",
                "--near-ms",
                &near_s,
                "--seed",
                "3",
                "--out",
                out_s,
            ],
            d,
        );
        for k in 1..=3 {
            let arch =
                mobile_core::Arch::load(out.join(format!("random-{k}.json")).to_str().unwrap())
                    .unwrap();
            let ms = lut.predict(&arch, Dtype::Int8).unwrap() / 1000.0;
            assert!(
                (ms - near).abs() <= 0.05 * near + 1e-9,
                "random-{k} takes {ms} ms, asked for {near} ms"
            );
        }
    }
    let err = fails(
        &[
            "arch",
            "random",
            "--lut",
            "tiny.json",
            "--near-ms",
            "0.000001",
            "--out",
            "x",
        ],
        d,
    );
    assert!(err.contains("no architecture"), "{err}");
}
