//! Latency tables and architecture files from disk: good ones load, bad ones are refused with an error
//! that names the file and the problem.

use std::path::Path;

use mobile_core::device::DeviceInfo;
use mobile_core::lut::{Entry, Lut, Method, NETWORK_OVERHEAD, ReferenceTiming, RuntimeDesc};
use mobile_core::measure::{Stats, TimingConfig};
use mobile_core::onnx::Dtype;
use mobile_core::runtime::SessionConfig;
use mobile_core::{Arch, Space, builtin};

fn stats(p50: f64) -> Stats {
    Stats {
        trimmed_mean: p50,
        p10: p50 * 0.9,
        p50,
        p90: p50 * 1.1,
        mean: p50,
        std: p50 * 0.05,
        count: 20,
    }
}

/// A complete table whose entry for each op is its MACs in thousands (µs), plus 7 µs of overhead.
fn synthetic(space: Space) -> Lut {
    let mut lut = Lut::new(
        space.clone(),
        vec![Dtype::Fp32],
        DeviceInfo::default(),
        RuntimeDesc::onnxruntime("1.31.1", SessionConfig::default()),
        TimingConfig::quick(),
        Method::InNetwork,
    );
    for op in space.unique_ops() {
        lut.entries.push(Entry {
            op: op.key(),
            dtype: Dtype::Fp32,
            stats: stats(op.cost().macs as f64 / 1e3 + 1.0),
            noisy: false,
        });
    }
    lut.overhead.push(Entry {
        op: NETWORK_OVERHEAD.into(),
        dtype: Dtype::Fp32,
        stats: stats(7.0),
        noisy: false,
    });
    lut
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Loads `text` as a table and returns the error message, which must name the file.
fn refused(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "bad.json", text);
    let msg = Lut::load(&p).unwrap_err().to_string();
    assert!(
        msg.contains("bad.json"),
        "error does not name the file: {msg}"
    );
    msg
}

#[test]
fn a_saved_table_loads_and_predicts_by_summing_its_entries() {
    let space = Space::fbnet_224();
    let lut = synthetic(space.clone());
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.json");
    lut.save(&p).unwrap();
    let back = Lut::load(&p).unwrap();
    assert_eq!(back, lut);
    back.require_complete(Dtype::Fp32).unwrap();
    let arch = builtin("fbnet-b").unwrap().unwrap();
    let expect: f64 = arch
        .ops()
        .iter()
        .filter(|o| !o.is_identity())
        .map(|o| o.cost().macs as f64 / 1e3 + 1.0)
        .sum::<f64>()
        + 7.0;
    assert!((back.predict(&arch, Dtype::Fp32).unwrap() - expect).abs() < 1e-6);
    // no int8 entries: asking for them is an error, not a zero
    assert!(back.predict(&arch, Dtype::Int8).is_err());
}

#[test]
fn tables_of_schema_1_still_load_and_a_speed_reference_is_checked() {
    let space = Space::fbnet_small();
    let mut lut = synthetic(space.clone());
    // schema 1: no reference, no reference times in records
    let mut old = serde_json::to_value(&lut).unwrap();
    old["schema"] = 1.into();
    let dir = tempfile::tempdir().unwrap();
    let back = Lut::load(&write(dir.path(), "old.json", &old.to_string())).unwrap();
    assert_eq!((back.schema, back.reference.is_none()), (1, true));

    let mut reference = mobile_core::reference::new_record(&space, 5).unwrap();
    for (at, us) in [("start", 100.0), ("after cover-0", 130.0), ("end", 110.0)] {
        reference.timings.push(ReferenceTiming {
            dtype: Dtype::Fp32,
            at: at.into(),
            us,
        });
    }
    lut.reference = Some(reference);
    let p = dir.path().join("new.json");
    lut.save(&p).unwrap();
    let back = Lut::load(&p).unwrap();
    assert_eq!(back, lut);
    let r = back.reference.as_ref().unwrap();
    assert_eq!(r.baseline(Dtype::Fp32), Some(110.0));
    assert_eq!(r.baseline(Dtype::Int8), None);

    let good = serde_json::to_value(&lut).unwrap();
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = good.clone();
        f(&mut v);
        v.to_string()
    };
    assert!(
        refused(&edit(
            &|v| v["reference"]["timings"][1]["us"] = (-5.0).into()
        ))
        .contains("speed reference timing `after cover-0`")
    );
    assert!(
        refused(&edit(
            &|v| v["reference"]["timings"][0]["dtype"] = "int8".into()
        ))
        .contains("does not declare")
    );
    assert!(
        refused(&edit(&|v| v["reference"]["arch"] = "k3_e1 | k3_e1".into()))
            .contains("speed reference")
    );
    assert!(refused(&edit(&|v| v["schema"] = 3.into())).contains("schema 3"));
}

#[test]
fn corrupt_and_foreign_tables_are_refused() {
    let lut = synthetic(Space::fbnet_small());
    let good = serde_json::to_value(&lut).unwrap();
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = good.clone();
        f(&mut v);
        v.to_string()
    };

    assert!(refused("{ truncated").contains("not JSON"));
    assert!(refused("[1, 2]").contains("schema"));
    assert!(refused(&edit(&|v| v["schema"] = 99.into())).contains("schema 99"));
    assert!(
        refused(&edit(&|v| {
            v.as_object_mut().unwrap().remove("entries");
        }))
        .contains("malformed")
    );
    // a table whose space was edited after measuring (or mixes two spaces)
    assert!(refused(&edit(&|v| v["space"]["num_classes"] = 100.into())).contains("space_hash"));
    // non-positive and non-finite latencies
    assert!(
        refused(&edit(&|v| v["entries"][3]["p50"] = (-1.0).into()))
            .contains("must be finite, positive")
    );
    assert!(
        refused(&edit(&|v| v["entries"][3]["p10"] = 0.0.into()))
            .contains("must be finite, positive")
    );
    assert!(
        refused(&edit(&|v| v["entries"][3]["p50"] = serde_json::Value::Null)).contains("malformed")
    );
    // an op that is not in the space, a dtype the table does not declare, a duplicate
    assert!(
        refused(&edit(&|v| v["entries"][0]["op"] = "k7_e9/c1-1/h1/s1".into()))
            .contains("not an op")
    );
    assert!(
        refused(&edit(&|v| v["entries"][0]["dtype"] = "int8".into())).contains("does not declare")
    );
    assert!(
        refused(&edit(&|v| {
            let first = v["entries"][0].clone();
            v["entries"].as_array_mut().unwrap().push(first);
        }))
        .contains("twice")
    );
    assert!(refused(&edit(&|v| v["overhead"][0]["p50"] = (-3.0).into())).contains("overhead"));
    // the figure every prediction sums is checked like the others, and against its percentiles
    for bad in [0.0, -5.0, 1e12] {
        let msg = refused(&edit(&|v| v["entries"][2]["trimmed_mean"] = bad.into()));
        assert!(msg.contains("trimmed_mean"), "{msg}");
    }
    let msg = refused(&edit(&|v| {
        let p50 = v["entries"][2]["p50"].as_f64().unwrap();
        v["entries"][2]["trimmed_mean"] = (p50 * 10.0).into();
    }));
    assert!(msg.contains("outside its percentiles"), "{msg}");
    let msg = refused(&edit(&|v| v["entries"][2]["p10"] = 1e6.into()));
    assert!(msg.contains("out of order"), "{msg}");
    let msg = refused(&edit(&|v| v["entries"][2]["count"] = 0.into()));
    assert!(msg.contains("sample count"), "{msg}");
    // the settings and the fit
    let msg = refused(&edit(&|v| v["runtime"]["session"]["threads"] = 0.into()));
    assert!(msg.contains("threads"), "{msg}");
    let msg = refused(&edit(&|v| v["timing"]["min_runs"] = 0.into()));
    assert!(msg.contains("timing"), "{msg}");
    let msg = refused(&edit(&|v| {
        v["calibration"] = serde_json::json!([
            {"dtype": "fp32", "per_kernel_us": 1e300, "networks": 3, "max_residual": 0.01}
        ])
    }));
    assert!(msg.contains("calibration"), "{msg}");
}

/// Every table the project ships passes the checks.
#[test]
fn the_committed_tables_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tables");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".json") && !name.ends_with(".validate.json") {
            Lut::load(&path).unwrap();
            n += 1;
        }
    }
    assert!(n >= 2, "no tables found in {}", dir.display());
}

#[test]
fn an_incomplete_table_says_what_is_missing() {
    let mut lut = synthetic(Space::fbnet_small());
    let removed = lut.entries.remove(5);
    let err = lut.require_complete(Dtype::Fp32).unwrap_err().to_string();
    assert!(
        err.contains("lacks 1 fp32 ops") && err.contains(&removed.op),
        "{err}"
    );
    let arch = builtin("fbnet-b").unwrap().unwrap();
    // fbnet-b belongs to the 224 space, not to this table's
    let err = lut.predict(&arch, Dtype::Fp32).unwrap_err().to_string();
    assert!(err.contains("fbnet-224"), "{err}");
}

#[test]
fn architecture_text_and_files() {
    let space = Space::fbnet_224();
    let b = builtin("fbnet-b").unwrap().unwrap();
    assert_eq!(
        Arch::parse("b", &space, &b.text()).unwrap().choices,
        b.choices
    );

    let err = |t: &str| Arch::parse("x", &space, t).unwrap_err().to_string();
    assert!(err("k3_e1 | k3_e6").contains("stage groups"));
    let mut t = b.text();
    t = t.replacen("k3_e6 k5_e1", "k3_e6 k5_e1 k5_e1", 1);
    assert!(err(&t).contains("stage 1 has 5 blocks"));
    // skip cannot change shape: the first layer of stage 1 is strided
    assert!(err(&b.text().replacen("k3_e6", "skip", 1)).contains("cannot be `skip`"));
    assert!(err(&b.text().replacen("k3_e6", "k9_e6", 1)).contains("unknown block `k9_e6`"));

    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "b.json", &b.to_json());
    let back = Arch::load(p.to_str().unwrap()).unwrap();
    assert_eq!(back, b);
    // a file whose embedded space was edited no longer matches its hash
    let mut v: serde_json::Value = serde_json::from_str(&b.to_json()).unwrap();
    v["space"]["resolution"] = 192.into();
    let p = write(dir.path(), "edited.json", &v.to_string());
    let msg = Arch::load(p.to_str().unwrap()).unwrap_err().to_string();
    assert!(msg.contains("edited.json") && msg.contains("hash"), "{msg}");
    let msg = Arch::load("no-such-arch").unwrap_err().to_string();
    assert!(msg.contains("fbnet-b"), "lists the built-ins: {msg}");
}

/// Found by the `arch` fuzz target: an architecture file whose embedded space has stem stride 0 made the
/// space check divide by zero; it is refused with the file named.
#[test]
fn an_architecture_of_a_broken_space_is_refused() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/example-search/searched-best.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(Arch::from_json(&v.to_string(), Path::new("ok.json")).is_ok());
    v["space"]["stem_stride"] = 0.into();
    let err = Arch::from_json(&v.to_string(), Path::new("bad.json"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.json") || err.contains("stem stride"),
        "{err}"
    );
}
