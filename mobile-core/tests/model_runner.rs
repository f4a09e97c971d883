//! Exported models loaded from files the tests write themselves (a tiny network in fp32 and int8 with
//! fbnet metadata): the metadata round trip, logits, classification of encoded images, the benchmark
//! and its predictions, and the errors every bad input gets.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use mobile_core::device::DeviceInfo;
use mobile_core::lut::{Entry, Lut, Method, NETWORK_OVERHEAD, RuntimeDesc};
use mobile_core::measure::{Stats, TimingConfig, random_inputs};
use mobile_core::model::{BenchConfig, Class, Model};
use mobile_core::model_meta::{META_FORMAT, ModelMeta, Prediction};
use mobile_core::onnx::{Dtype, RandomWeights, arch_graph};
use mobile_core::preprocess::{Image, decode, model_input};
use mobile_core::runtime::{RangeEstimate, SessionConfig, calibrate, run};
use mobile_core::space::Stage;
use mobile_core::{Arch, Block, Space};

const ARCH: &str = "k3_e1 | k3_e6 skip";
const LABELS: [&str; 4] = ["ant", "bee", "cat", "dog"];
/// What the metadata's table predicts for fp32; it has no int8 figure.
const META_FP32_US: f64 = 1234.0;

/// Two stages, three searchable layers, 16 px: a whole network that builds and runs in milliseconds.
fn tiny_space(channels: usize) -> Space {
    Space {
        name: "runner-tiny".into(),
        resolution: 16,
        input_channels: channels,
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
        num_classes: LABELS.len(),
        width: 1.0,
        candidates: Block::ALL.to_vec(),
    }
}

fn meta(arch: &Arch, dtype: Dtype) -> ModelMeta {
    let space = &arch.space;
    let c = space.input_channels;
    ModelMeta {
        format: META_FORMAT,
        name: arch.name.clone(),
        arch: arch.text(),
        space: space.name.clone(),
        space_hash: space.hash(),
        dtype,
        labels: LABELS.map(String::from).to_vec(),
        input_shape: vec![1, c, space.resolution, space.resolution],
        mean: [0.485, 0.456, 0.406][..c].to_vec(),
        std: [0.229, 0.224, 0.225][..c].to_vec(),
        dataset: "toy".into(),
        accuracy: Some(0.5),
        prediction: Some(Prediction {
            lut: "meta-lut.json".into(),
            device: "testphone".into(),
            threads: 1,
            latency_us: vec![(Dtype::Fp32, META_FP32_US)],
        }),
    }
}

/// A written model: its file, what it was built from, and the graph's bytes.
struct Written {
    path: PathBuf,
    meta: Option<ModelMeta>,
    bytes: Vec<u8>,
}

/// Builds the tiny network of `channels` input channels at `dtype` with its metadata and writes it to
/// `dir/name`.
fn write_model(dir: &Path, name: &str, channels: usize, dtype: Dtype) -> Written {
    let arch = Arch::parse("tiny", &tiny_space(channels), ARCH).unwrap();
    write_model_with(dir, name, channels, dtype, Some(&meta(&arch, dtype)))
}

/// [`write_model`] with the given metadata, or none; int8 is calibrated on seeded inputs through the
/// fp32 graph.
fn write_model_with(
    dir: &Path,
    name: &str,
    channels: usize,
    dtype: Dtype,
    metadata: Option<&ModelMeta>,
) -> Written {
    let arch = Arch::parse("tiny", &tiny_space(channels), ARCH).unwrap();
    let props = metadata.map(ModelMeta::to_props).unwrap_or_default();
    let cfg = SessionConfig::default();
    let weights = || RandomWeights { seed: 5 };
    let fp32 = arch_graph(&arch, Dtype::Fp32, &mut weights(), None, 1, &props).unwrap();
    let graph = match dtype {
        Dtype::Fp32 => fp32,
        Dtype::Int8 => {
            let calib = random_inputs(&fp32.input_shape, 4, 9);
            let ranges = calibrate(&fp32, &calib, cfg, RangeEstimate::MinMax).unwrap();
            arch_graph(&arch, Dtype::Int8, &mut weights(), Some(&ranges), 1, &props).unwrap()
        }
    };
    let bytes = graph.model.to_bytes();
    let path = dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    Written {
        path,
        meta: metadata.cloned(),
        bytes,
    }
}

/// A `width × height` PNG with distinct values per channel, row and column.
fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(7 * x) as u8, (11 * y) as u8, (x * y % 256) as u8])
    });
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

/// Softmax by hand, in f64.
fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

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

/// A complete fp32 table of `space` whose entry for an op is its MACs in thousands plus 1 (µs), and
/// 7 µs of per-network overhead.
fn synthetic_lut(space: &Space) -> Lut {
    let device = DeviceInfo {
        model: "lutphone".into(),
        ..DeviceInfo::default()
    };
    let mut lut = Lut::new(
        space.clone(),
        vec![Dtype::Fp32],
        device,
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

fn err<T: std::fmt::Debug>(r: mobile_core::Result<T>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn metadata_survives_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for (name, channels, dtype) in [("fp.onnx", 3, Dtype::Fp32), ("q.onnx", 1, Dtype::Int8)] {
        let w = write_model(dir.path(), name, channels, dtype);
        let model = Model::load(&w.path, SessionConfig::default()).unwrap();
        assert_eq!(Some(model.meta()), w.meta.as_ref());
        assert_eq!(model.meta().dtype, dtype);
        assert_eq!(model.origin(), w.path);
        assert_eq!(model.input_len(), channels * 16 * 16);
        // from an app's bundled bytes, the same
        let from_bytes =
            Model::from_bytes(&w.bytes, "asset.onnx", SessionConfig::default()).unwrap();
        assert_eq!(Some(from_bytes.meta()), w.meta.as_ref());
    }
}

#[test]
fn logits_equal_a_plain_session_on_the_same_graph() {
    let dir = tempfile::tempdir().unwrap();
    for (name, dtype) in [("fp.onnx", Dtype::Fp32), ("q.onnx", Dtype::Int8)] {
        let w = write_model(dir.path(), name, 3, dtype);
        let model = Model::load(&w.path, SessionConfig::default()).unwrap();
        let mut session = SessionConfig::default().session(&w.bytes).unwrap();
        let inputs = random_inputs(&model.meta().input_shape, 2, 3);
        let mut seen = Vec::new();
        for input in &inputs {
            let ours = model.logits(input).unwrap();
            let (shape, theirs) = run(&mut session, input, &model.meta().input_shape)
                .unwrap()
                .remove(0);
            assert_eq!(shape, vec![1, LABELS.len()]);
            assert_eq!(ours, theirs, "{dtype}");
            seen.push(ours);
        }
        assert_ne!(seen[0], seen[1], "{dtype}: logits ignore the input");
    }
}

#[test]
fn model_input_of_a_flat_colour_is_its_normalised_value() {
    // a flat image stays flat under any crop and resize, so every float of a plane is known by hand
    let arch = Arch::parse("tiny", &tiny_space(3), ARCH).unwrap();
    let meta = meta(&arch, Dtype::Fp32);
    let rgb = [200u8, 100, 0];
    let img = Image {
        pixels: rgb.iter().flat_map(|&v| vec![v; 40 * 30]).collect(),
        channels: 3,
        height: 30,
        width: 40,
    };
    let input = model_input(&img, &meta).unwrap();
    assert_eq!(input.len(), 3 * 16 * 16);
    for (c, plane) in input.chunks(16 * 16).enumerate() {
        let expected = (rgb[c] as f32 / 255.0 - meta.mean[c]) / meta.std[c];
        for v in plane {
            assert!(
                (v - expected).abs() < 1e-5,
                "channel {c}: {v} vs {expected}"
            );
        }
    }
}

#[test]
fn classify_a_png() {
    let dir = tempfile::tempdir().unwrap();
    for (name, channels, dtype) in [("fp.onnx", 3, Dtype::Fp32), ("q.onnx", 1, Dtype::Int8)] {
        let w = write_model(dir.path(), name, channels, dtype);
        let model = Model::load(&w.path, SessionConfig::default()).unwrap();
        let bytes = png(40, 30);

        // the expected answer by hand: decode, preprocess, logits, softmax
        let img = decode(&bytes, channels, Path::new("t.png")).unwrap();
        assert_eq!((img.channels, img.height, img.width), (channels, 30, 40));
        let logits = model
            .logits(&model_input(&img, model.meta()).unwrap())
            .unwrap();
        let probs = softmax(&logits);

        let all = model.classify_bytes(&bytes, 10).unwrap();
        assert_eq!(
            all.len(),
            LABELS.len(),
            "top_k beyond the classes gives all"
        );
        let sum: f32 = all.iter().map(|c| c.probability).sum();
        assert!(
            (sum - 1.0).abs() < 1e-5,
            "{dtype}: probabilities sum to {sum}"
        );
        assert!(
            all.windows(2).all(|p| p[0].probability >= p[1].probability),
            "{all:?}"
        );
        assert_eq!(all[0].index, argmax(&logits), "{dtype}");
        for Class {
            index,
            label,
            probability,
        } in &all
        {
            assert_eq!(label, LABELS[*index]);
            assert!((*probability as f64 - probs[*index]).abs() < 1e-6);
        }

        let top2 = model.classify_bytes(&bytes, 2).unwrap();
        assert_eq!(top2, all[..2].to_vec());
        assert_eq!(model.classify(&img, 2).unwrap(), top2);
        let file = dir.path().join(format!("{name}.png"));
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(model.classify_file(&file, 2).unwrap(), top2);
    }
}

#[test]
fn bench_reports_ordered_percentiles_and_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let w = write_model(dir.path(), "fp.onnx", 3, Dtype::Fp32);
    let model = Model::load(&w.path, SessionConfig::default()).unwrap();
    let cfg = BenchConfig {
        warmup: 2,
        runs: 20,
        time_reference: false,
    };

    // from the metadata
    let r = model.bench(&cfg, None).unwrap();
    assert_eq!((r.runs, r.warmup, r.threads), (20, 2, 1));
    assert_eq!(r.dtype, Dtype::Fp32);
    assert_eq!(r.model, "tiny");
    assert!(!r.runtime.is_empty());
    assert!(r.min_us > 0.0);
    assert!(
        r.min_us <= r.p10_us && r.p10_us <= r.p50_us && r.p50_us <= r.p90_us,
        "{r:?}"
    );
    assert!(r.min_us <= r.mean_us && r.min_us <= r.trimmed_mean_us);
    assert_eq!(r.predicted_us, Some(META_FP32_US));
    assert!(r.predicted_by.as_deref().unwrap().contains("meta-lut.json"));
    let ratio = r.measured_over_predicted.unwrap();
    assert!((ratio - r.trimmed_mean_us / META_FP32_US).abs() < 1e-12);
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(
        serde_json::from_str::<mobile_core::BenchReport>(&json).unwrap(),
        r
    );

    // from a table: the sum of the arch's op entries (skip costs nothing) plus the overhead
    let lut = synthetic_lut(&tiny_space(3));
    let arch = Arch::parse("tiny", &tiny_space(3), ARCH).unwrap();
    let expected: f64 = arch
        .ops()
        .iter()
        .filter(|op| !op.is_identity())
        .map(|op| op.cost().macs as f64 / 1e3 + 1.0)
        .sum::<f64>()
        + 7.0;
    let r = model.bench(&cfg, Some((&lut, "table.json"))).unwrap();
    assert!((r.predicted_us.unwrap() - expected).abs() < 1e-9, "{r:?}");
    let by = r.predicted_by.unwrap();
    assert!(by.contains("table.json") && by.contains("lutphone"), "{by}");
    assert!((r.measured_over_predicted.unwrap() - r.trimmed_mean_us / expected).abs() < 1e-12);

    // with the table's speed reference timed around the runs: the pace is the reference's time now
    // over its time in the table, and the prediction at that pace is the table's times it
    let timed = BenchConfig {
        time_reference: true,
        ..cfg
    };
    let e = err(model.bench(&timed, Some((&lut, "old-table.json"))));
    assert!(
        e.contains("old-table.json") && e.contains("speed reference"),
        "{e}"
    );
    assert!(err(model.bench(&timed, None)).contains("pass the table"));
    let mut with_reference = lut.clone();
    let mut record = mobile_core::reference::new_record(&lut.space, 1).unwrap();
    let mut reference = mobile_core::reference::Reference::build(
        &record,
        &lut.space,
        Dtype::Fp32,
        SessionConfig::default(),
        &lut.timing,
    )
    .unwrap();
    let now = reference
        .time(&std::sync::atomic::AtomicBool::new(false))
        .unwrap();
    // as if the table had been made on a device twice as fast as this one is now
    record.timings.push(mobile_core::lut::ReferenceTiming {
        dtype: Dtype::Fp32,
        at: "start".into(),
        us: now / 2.0,
    });
    with_reference.reference = Some(record);
    let r = model
        .bench(&timed, Some((&with_reference, "table.json")))
        .unwrap();
    let speed = r.speed_now.unwrap();
    assert!((1.0..4.0).contains(&speed), "{speed}");
    assert!((r.predicted_now_us.unwrap() - expected * speed).abs() < 1e-9);
    assert!(
        (r.predicted_us.unwrap() - expected).abs() < 1e-9,
        "the table's own prediction is kept"
    );
    assert_eq!(
        model
            .bench(&cfg, Some((&with_reference, "t.json")))
            .unwrap()
            .speed_now,
        None
    );

    // the metadata predicts fp32 only: an int8 model has no prediction, and the fp32 table none either
    let q = write_model(dir.path(), "q.onnx", 3, Dtype::Int8);
    let q = Model::load(&q.path, SessionConfig::default()).unwrap();
    let r = q.bench(&cfg, None).unwrap();
    assert_eq!(r.dtype, Dtype::Int8);
    assert_eq!((r.predicted_us, r.measured_over_predicted), (None, None));
    let e = err(q.bench(&cfg, Some((&lut, "table.json"))));
    assert!(e.contains("table.json") && e.contains("int8"), "{e}");

    assert!(
        err(model.bench(
            &BenchConfig {
                warmup: 0,
                runs: 0,
                time_reference: false,
            },
            None
        ))
        .contains("timed run")
    );
    let too_many = BenchConfig {
        warmup: 0,
        runs: mobile_core::model::MAX_BENCH_RUNS + 1,
        time_reference: false,
    };
    assert!(err(model.bench(&too_many, None)).contains("at most"));
    // a long benchmark stops soon after another thread cancels it, and the model stays usable
    let long = BenchConfig {
        warmup: 0,
        runs: mobile_core::model::MAX_BENCH_RUNS,
        time_reference: false,
    };
    let started = std::time::Instant::now();
    let result = std::thread::scope(|s| {
        let bench = s.spawn(|| model.bench(&long, None));
        std::thread::sleep(std::time::Duration::from_millis(50));
        model.cancel();
        bench.join().unwrap()
    });
    assert!(
        matches!(result, Err(mobile_core::Error::Cancelled)),
        "{result:?}"
    );
    assert!(started.elapsed().as_secs_f64() < 5.0);
    assert!(model.bench(&cfg, None).is_ok());
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SessionConfig::default();
    let load = |p: &Path| err(Model::load(p, cfg));

    let missing = dir.path().join("missing.onnx");
    let e = load(&missing);
    assert!(e.contains(&missing.display().to_string()), "{e}");

    let text = dir.path().join("notes.onnx");
    std::fs::write(&text, "these are not the weights you are looking for\n").unwrap();
    let e = load(&text);
    assert!(
        e.contains("notes.onnx") && e.contains("not an ONNX model"),
        "{e}"
    );

    let bare = write_model_with(dir.path(), "bare.onnx", 3, Dtype::Fp32, None);
    let e = load(&bare.path);
    assert!(
        e.contains("bare.onnx") && e.contains("without fbnet metadata"),
        "{e}"
    );

    // metadata copied from a model of another input size
    let arch = Arch::parse("tiny", &tiny_space(3), ARCH).unwrap();
    let mut lying = meta(&arch, Dtype::Fp32);
    lying.input_shape = vec![1, 3, 32, 32];
    let lie = write_model_with(dir.path(), "lie.onnx", 3, Dtype::Fp32, Some(&lying));
    let e = load(&lie.path);
    assert!(
        e.contains("lie.onnx") && e.contains("[1, 3, 32, 32]"),
        "{e}"
    );

    let good = write_model(dir.path(), "fp.onnx", 3, Dtype::Fp32);
    let model = Model::load(&good.path, cfg).unwrap();

    // a table of another space (the grey variant): both hashes and the table are named
    let grey = tiny_space(1);
    let e = err(model.predicted(Some((&synthetic_lut(&grey), "grey.json"))));
    assert!(
        e.contains("grey.json") && e.contains(&grey.hash()) && e.contains(&tiny_space(3).hash()),
        "{e}"
    );
    let e = err(model.bench(
        &BenchConfig::default(),
        Some((&synthetic_lut(&grey), "grey.json")),
    ));
    assert!(e.contains("grey.json"), "{e}");

    let e = err(model.logits(&[0.0; 10]));
    assert!(
        e.contains("fp.onnx") && e.contains("768") && e.contains("10"),
        "{e}"
    );

    let e = err(model.classify_bytes(b"\x89PNG but not really", 3));
    assert!(e.contains("cannot") && e.contains("image"), "{e}");
    let e = err(model.classify_file(dir.path().join("nowhere.png"), 3));
    assert!(e.contains("nowhere.png"), "{e}");
    let e = err(model.classify_file(&text, 3));
    assert!(e.contains("notes.onnx") && e.contains("decode"), "{e}");

    // an image of the wrong channels, and one whose pixels do not fill its shape
    let grey_img = Image {
        pixels: vec![0; 20 * 20],
        channels: 1,
        height: 20,
        width: 20,
    };
    let e = err(model.classify(&grey_img, 1));
    assert!(e.contains("3-channel"), "{e}");
    let short = Image {
        pixels: vec![0; 7],
        channels: 3,
        height: 20,
        width: 20,
    };
    assert!(err(model.classify(&short, 1)).contains("7 bytes"));
}
