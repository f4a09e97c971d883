//! The input pipeline end to end: image folders written here with the image crate, the proxy-task tools
//! on a lazy source, augmentation, and the threaded loader's order, determinism and shutdown.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use fbnet::data::{
    Augment, Batch, Crop, Dataset, Image, ImageFolder, LoaderConfig, Source, Subset, batch_count,
    batches, estimate_mean_std, eval_split, open, stratified_split,
};
use image::{GrayImage, Luma, Rgb, RgbImage};
use mobile_core::rng::SplitMix;

/// Red, green and blue of pixel (x, y) of image `k` of class `class` in [`folder`]: all distinct, so a
/// wrong channel, row, column, image or class shows.
fn colour(class: u8, k: u8, x: u32, y: u32) -> [u8; 3] {
    [10 * x as u8 + class, 20 * y as u8 + k, 100 + 10 * class + k]
}

/// `root/train/{cat,ant,bee}` (created in that order; sorted they are ant, bee, cat) with four 6x4
/// PNGs each, one with an upper-case extension, plus a text file and a hidden file to be skipped.
fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (class, name) in [(2u8, "cat"), (0, "ant"), (1, "bee")] {
        let d = dir.path().join("train").join(name);
        std::fs::create_dir_all(&d).unwrap();
        for k in 0..4u8 {
            let img = RgbImage::from_fn(6, 4, |x, y| Rgb(colour(class, k, x, y)));
            let file = if k == 3 {
                "3.PNG".into()
            } else {
                format!("{k}.png")
            };
            img.save_with_format(d.join(file), image::ImageFormat::Png)
                .unwrap();
        }
        std::fs::write(d.join("notes.txt"), "not an image").unwrap();
        std::fs::write(d.join(".hidden.png"), "not an image").unwrap();
    }
    dir
}

fn err<T>(r: Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn a_folder_lists_sorted_classes_and_reads_png_pixels_exactly() {
    let dir = folder();
    let f = ImageFolder::open(dir.path(), "train", 3).unwrap();
    assert_eq!(f.classes(), &["ant", "bee", "cat"]);
    assert_eq!(f.len(), 12);
    assert_eq!(f.labels(), &[0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
    assert_eq!(f.channels(), 3);
    assert!(f.path(7).ends_with("bee/3.PNG"));
    for i in 0..f.len() {
        let img = f.read(i).unwrap();
        assert_eq!((img.channels, img.height, img.width), (3, 4, 6));
        let (class, k) = (f.label(i) as u8, (i % 4) as u8);
        for y in 0..4 {
            for x in 0..6 {
                let p = y * 6 + x;
                let want = colour(class, k, x as u32, y as u32);
                let got = [img.pixels[p], img.pixels[24 + p], img.pixels[48 + p]];
                assert_eq!(got, want, "image {i} pixel ({x}, {y})");
            }
        }
    }
}

#[test]
fn a_folder_reads_jpeg_and_grey() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("val").join("only");
    std::fs::create_dir_all(&d).unwrap();
    GrayImage::from_pixel(9, 5, Luma([77]))
        .save_with_format(d.join("a.JPEG"), image::ImageFormat::Jpeg)
        .unwrap();
    RgbImage::from_pixel(3, 3, Rgb([200, 200, 200]))
        .save_with_format(d.join("b.jpg"), image::ImageFormat::Jpeg)
        .unwrap();
    let grey = ImageFolder::open(dir.path(), "val", 1).unwrap();
    assert_eq!(grey.len(), 2);
    let a = grey.read(0).unwrap();
    assert_eq!((a.channels, a.height, a.width), (1, 5, 9));
    assert!(a.pixels.iter().all(|&p| p.abs_diff(77) <= 2), "{a:?}");
    let b = grey.read(1).unwrap();
    assert!(b.pixels.iter().all(|&p| p.abs_diff(200) <= 2), "{b:?}");
    let rgb = ImageFolder::open(dir.path(), "val", 3)
        .unwrap()
        .read(0)
        .unwrap();
    assert_eq!(rgb.pixels.len(), 3 * 5 * 9);
    assert!(rgb.pixels.iter().all(|&p| p.abs_diff(77) <= 2));
}

#[test]
fn folder_errors_name_the_path() {
    let dir = folder();
    let root = dir.path();
    let e = err(ImageFolder::open(&root.join("nowhere"), "train", 3));
    assert!(
        e.contains("nowhere") && e.contains("no such image folder"),
        "{e}"
    );
    let e = err(ImageFolder::open(root, "val", 3));
    assert!(e.contains(&root.join("val").display().to_string()), "{e}");
    assert!(e.contains("no `val` split"), "{e}");
    let e = err(ImageFolder::open(root, "train", 2));
    assert!(e.contains("not 2"), "{e}");

    std::fs::create_dir_all(root.join("train").join("dog")).unwrap();
    std::fs::write(root.join("train").join("dog").join("x.txt"), "").unwrap();
    let e = err(ImageFolder::open(root, "train", 3));
    assert!(e.contains("dog") && e.contains("holds no images"), "{e}");

    std::fs::create_dir_all(root.join("test")).unwrap();
    std::fs::write(root.join("test").join("stray.png"), "").unwrap();
    let e = err(ImageFolder::open(root, "test", 3));
    assert!(e.contains("test") && e.contains("no class folders"), "{e}");

    // a corrupt file is listed; reading it fails and names it
    std::fs::write(
        root.join("train").join("dog").join("broken.jpg"),
        b"\xff\xd8garbage",
    )
    .unwrap();
    let f = ImageFolder::open(root, "train", 3).unwrap();
    let broken = f.classes().iter().position(|c| c == "dog").unwrap();
    let i = f
        .labels()
        .iter()
        .position(|&l| l as usize == broken)
        .unwrap();
    let e = err(f.read(i));
    assert!(
        e.contains("broken.jpg") && e.contains("cannot decode"),
        "{e}"
    );
    assert!(err(f.read(f.len())).contains("out of range"));
}

#[test]
fn specs_open_folders_and_refuse_unknown_names() {
    let dir = folder();
    let root = dir.path();
    let e = err(eval_split(root));
    assert!(e.contains("no evaluation split"), "{e}");
    copy_split(&root.join("train"), &root.join("test"));
    assert_eq!(eval_split(root).unwrap(), "test");
    copy_split(&root.join("train"), &root.join("val"));
    assert_eq!(eval_split(root).unwrap(), "val");
    std::fs::remove_dir_all(root.join("val").join("cat")).unwrap();

    let spec = root.to_str().unwrap();
    let train = open(spec, true, None).unwrap();
    assert_eq!((train.len(), train.channels()), (12, 3));
    let val = open(spec, false, Some(1)).unwrap();
    assert_eq!((val.len(), val.channels()), (8, 1));
    assert_eq!(val.classes(), &["ant", "bee"]);

    let e = err(open("imagenet-please", true, None));
    assert!(e.contains("unknown dataset `imagenet-please`"), "{e}");
    let e = err(open("cifar10:/no/such/dir", true, None));
    assert!(e.contains("/no/such/dir/data_batch_1.bin"), "{e}");
    let e = err(open("fashion-mnist:/no/such/dir", false, None));
    assert!(e.contains("/no/such/dir"), "{e}");
}

fn copy_split(from: &Path, to: &Path) {
    for class in std::fs::read_dir(from).unwrap() {
        let class = class.unwrap().path();
        let dest = to.join(class.file_name().unwrap());
        std::fs::create_dir_all(&dest).unwrap();
        for file in std::fs::read_dir(&class).unwrap() {
            let file = file.unwrap().path();
            std::fs::copy(&file, dest.join(file.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
fn proxy_tools_work_on_a_lazy_source() {
    let dir = folder();
    let f: Arc<dyn Source> = Arc::new(ImageFolder::open(dir.path(), "train", 3).unwrap());
    let proxy = Subset::random_classes(Arc::clone(&f), 2, 4).unwrap();
    assert_eq!(proxy.len(), 8);
    assert_eq!(proxy.classes().len(), 2);
    assert!(proxy.classes()[0] < proxy.classes()[1]);
    for i in 0..proxy.len() {
        let original = proxy.indices()[i];
        let new = proxy.label(i) as usize;
        assert_eq!(
            proxy.classes()[new],
            f.classes()[f.label(original) as usize]
        );
        assert_eq!(proxy.read(i).unwrap(), f.read(original).unwrap());
    }
    let (weights, arch) = stratified_split(proxy.labels(), 2, 0.75, 1).unwrap();
    assert_eq!((weights.len(), arch.len()), (6, 2));
    for class in 0..2 {
        let in_arch = arch.iter().filter(|&&i| proxy.label(i) == class).count();
        assert_eq!(in_arch, 1);
    }
    let mut all: Vec<usize> = weights.iter().chain(&arch).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..8).collect::<Vec<_>>());
}

/// `n` 1×8×8 images, image `i` holding the value `i` everywhere but pixel (0, 0), which holds 255 − i;
/// label `i % 4`.
fn toy(n: usize) -> Dataset {
    Dataset {
        images: (0..n)
            .flat_map(|i| {
                let mut px = vec![i as u8; 64];
                px[0] = 255 - i as u8;
                px
            })
            .collect(),
        labels: (0..n).map(|i| (i % 4) as u32).collect(),
        channels: 1,
        height: 8,
        width: 8,
        classes: (0..4).map(|c| format!("c{c}")).collect(),
    }
}

fn config(batch_size: usize, workers: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size,
        workers,
        prefetch: 2,
        shuffle: true,
        drop_last: false,
        seed: 11,
        augment: Augment::train_small(8, 1),
    }
}

fn collect(
    source: &Arc<dyn Source>,
    indices: &[usize],
    cfg: &LoaderConfig,
    epoch: u64,
) -> Vec<Batch> {
    batches(Arc::clone(source), indices, cfg, epoch)
        .unwrap()
        .collect::<Result<Vec<_>>>()
        .unwrap()
}

#[test]
fn an_epoch_visits_every_index_once_in_batches_of_the_right_shape() {
    let source: Arc<dyn Source> = Arc::new(toy(60));
    let indices: Vec<usize> = (0..60).filter(|i| i % 5 != 0).collect(); // 48 samples
    let cfg = config(10, 2);
    let got = collect(&source, &indices, &cfg, 0);
    assert_eq!(got.len(), batch_count(48, 10, false));
    assert_eq!(got.len(), 5);
    for (b, batch) in got.iter().enumerate() {
        let n = if b == 4 { 8 } else { 10 };
        assert_eq!(batch.shape, [n, 1, 8, 8]);
        assert_eq!(batch.images.len(), n * 64);
        assert_eq!(batch.labels.len(), n);
        for (k, &i) in batch.indices.iter().enumerate() {
            assert_eq!(batch.labels[k], source.label(i));
        }
    }
    let mut seen: Vec<usize> = got.iter().flat_map(|b| b.indices.clone()).collect();
    assert_ne!(seen, indices, "shuffled");
    seen.sort_unstable();
    assert_eq!(seen, indices);

    let drop = LoaderConfig {
        drop_last: true,
        ..cfg.clone()
    };
    let got = collect(&source, &indices, &drop, 0);
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|b| b.shape[0] == 10));
    let ordered = LoaderConfig {
        shuffle: false,
        ..cfg
    };
    let got = collect(&source, &indices, &ordered, 0);
    let seen: Vec<usize> = got.iter().flat_map(|b| b.indices.clone()).collect();
    assert_eq!(seen, indices);
}

#[test]
fn batches_are_the_same_for_any_number_of_workers_and_differ_between_epochs() {
    let source: Arc<dyn Source> = Arc::new(toy(50));
    let indices: Vec<usize> = (0..50).collect();
    let inline = collect(&source, &indices, &config(4, 0), 3);
    let one = collect(&source, &indices, &config(4, 1), 3);
    let three = collect(&source, &indices, &config(4, 3), 3);
    assert_eq!(one, three);
    assert_eq!(one, inline);
    assert_eq!(three, collect(&source, &indices, &config(4, 3), 3));
    // the augmentation is random: flips and shifts move the odd pixel of some images
    let moved = one
        .iter()
        .flat_map(|b| b.images.chunks(64))
        .filter(|img| img[0] != img.iter().copied().fold(f32::MIN, f32::max))
        .count();
    assert!(moved > 10, "{moved} of 50 images augmented");
    let next = collect(&source, &indices, &config(4, 3), 4);
    let order = |bs: &[Batch]| {
        bs.iter()
            .flat_map(|b| b.indices.clone())
            .collect::<Vec<_>>()
    };
    assert_ne!(order(&one), order(&next));
    let other_seed = LoaderConfig {
        seed: 12,
        ..config(4, 3)
    };
    assert_ne!(
        order(&one),
        order(&collect(&source, &indices, &other_seed, 3))
    );
}

/// Counts reads and takes a millisecond for each, like a file being decoded.
struct Slow {
    inner: Dataset,
    reads: AtomicUsize,
}

impl Source for Slow {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn labels(&self) -> &[u32] {
        &self.inner.labels
    }
    fn classes(&self) -> &[String] {
        &self.inner.classes
    }
    fn channels(&self) -> usize {
        1
    }
    fn read(&self, i: usize) -> Result<Image> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(1));
        self.inner.read(i)
    }
}

#[test]
fn dropping_a_loader_early_stops_its_threads() {
    let slow = Arc::new(Slow {
        inner: toy(200),
        reads: AtomicUsize::new(0),
    });
    let indices: Vec<usize> = (0..200).collect();
    let mut loader = batches(slow.clone(), &indices, &config(4, 3), 0).unwrap();
    assert_eq!(loader.len(), 50);
    loader.next().unwrap().unwrap();
    let start = Instant::now();
    drop(loader);
    assert!(start.elapsed() < Duration::from_secs(2));
    let after = slow.reads.load(Ordering::SeqCst);
    // the workers ran ahead by at most the prefetch and the batches in progress, not the whole epoch
    assert!(after < 40, "{after} reads");
    // only the loader and its threads held clones of the source: the threads were joined
    assert_eq!(Arc::strong_count(&slow), 1);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        slow.reads.load(Ordering::SeqCst),
        after,
        "a thread still runs"
    );
}

#[test]
fn a_loader_reports_how_long_its_consumer_waited_and_how_fast_it_builds() {
    let indices: Vec<usize> = (0..40).collect();
    for workers in [0, 4] {
        let slow = Arc::new(Slow {
            inner: toy(40),
            reads: AtomicUsize::new(0),
        });
        let mut loader = batches(slow, &indices, &config(4, workers), 0).unwrap();
        for b in loader.by_ref() {
            b.unwrap();
        }
        let stats = loader.stats();
        assert_eq!(stats.images, 40, "{workers} workers");
        assert_eq!(stats.workers, workers);
        // every read takes at least a millisecond: no thread builds more than 1000 images a second
        let threads = workers.max(1) as f64;
        assert!(
            stats.images_per_second > 0.0 && stats.images_per_second <= 1000.0 * threads,
            "{workers} workers: {stats:?}"
        );
        if workers == 0 {
            // built on the consumer's thread: all of it was waiting
            assert!(stats.waited_s >= 0.040, "{stats:?}");
        }
    }
}

#[test]
fn read_errors_are_items_that_name_the_file() {
    let dir = folder();
    let bad = dir.path().join("train").join("bee").join("1.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nthen nothing").unwrap();
    let f: Arc<dyn Source> = Arc::new(ImageFolder::open(dir.path(), "train", 3).unwrap());
    let cfg = LoaderConfig {
        shuffle: false,
        augment: Augment::eval(4, 3),
        ..config(2, 2)
    };
    let items: Vec<Result<Batch>> = batches(f, &(0..12).collect::<Vec<_>>(), &cfg, 0)
        .unwrap()
        .collect();
    assert_eq!(items.len(), 6);
    for (b, item) in items.iter().enumerate() {
        match item {
            Ok(batch) => assert_ne!(b, 2, "{batch:?}"),
            Err(e) => {
                assert_eq!(b, 2);
                let e = format!("{e:#}");
                assert!(e.contains(&bad.display().to_string()), "{e}");
            }
        }
    }
}

#[test]
fn loaders_refuse_bad_configurations_up_front() {
    let source: Arc<dyn Source> = Arc::new(toy(10));
    let e = err(batches(source.clone(), &[0, 1], &config(0, 1), 0));
    assert!(e.contains("batch size"), "{e}");
    let e = err(batches(source.clone(), &[0, 10], &config(2, 1), 0));
    assert!(e.contains("index 10 is out of range"), "{e}");
    let rgb = LoaderConfig {
        augment: Augment::eval(8, 3),
        ..config(2, 1)
    };
    let e = err(batches(source, &[0, 1], &rgb, 0));
    assert!(e.contains("3 channel(s) but the images have 1"), "{e}");
    assert_eq!(batch_count(10, 3, true), 3);
    assert_eq!(batch_count(10, 3, false), 4);
    assert_eq!(batch_count(9, 3, false), 3);
}

fn augment(aug: &Augment, img: &Image, seed: u64) -> Vec<f32> {
    let mut out = vec![0.0; aug.output_len()];
    aug.apply(img, &mut SplitMix::new(seed), &mut out).unwrap();
    out
}

#[test]
fn normalisation_maps_a_constant_image_to_its_standard_score() {
    let img = Image {
        pixels: [10u8, 128, 250].iter().flat_map(|&v| vec![v; 35]).collect(),
        channels: 3,
        height: 5,
        width: 7,
    };
    let (mean, std) = (vec![0.1, 0.5, 0.9], vec![0.2, 0.25, 0.3]);
    for crop in [
        Crop::None,
        Crop::Center,
        Crop::RandomResized { min_scale: 0.2 },
    ] {
        let aug = Augment {
            crop,
            hflip: true,
            ..Augment::eval(4, 3).with_mean_std(mean.clone(), std.clone())
        };
        let out = augment(&aug, &img, 5);
        assert_eq!(out.len(), 3 * 16);
        for (c, v) in [10.0f32, 128.0, 250.0].iter().enumerate() {
            let want = (v / 255.0 - mean[c]) / std[c];
            for &got in &out[c * 16..(c + 1) * 16] {
                assert!(
                    (got - want).abs() < 1e-5,
                    "{:?} channel {c}: {got} vs {want}",
                    aug.crop
                );
            }
        }
    }
}

fn numbered(side: usize) -> Image {
    Image {
        pixels: (1..=side * side).map(|v| v as u8).collect(),
        channels: 1,
        height: side,
        width: side,
    }
}

/// Mean 0 and std 1/255 would round; mean 0 and std 1 leaves pixel/255.
fn raw(aug: Augment) -> Augment {
    aug.with_mean_std(vec![0.0], vec![1.0])
}

#[test]
fn a_random_crop_without_padding_or_flip_is_the_identity() {
    let img = numbered(8);
    let aug = Augment {
        crop: Crop::PadRandom { pad: 0 },
        hflip: false,
        ..raw(Augment::train_small(8, 1))
    };
    for seed in 0..5 {
        let out = augment(&aug, &img, seed);
        for (o, &p) in out.iter().zip(&img.pixels) {
            assert!((o * 255.0 - p as f32).abs() < 1e-3);
        }
    }
}

/// Every output of the CIFAR crop is the image, perhaps mirrored, shifted by at most `pad` with black
/// coming in; over many draws both mirrored and plain images and many shifts occur.
#[test]
fn the_padded_random_crop_shifts_and_mirrors() {
    let img = numbered(8);
    let aug = raw(Augment::train_small(8, 1));
    assert_eq!(aug.crop, Crop::PadRandom { pad: 1 });
    let aug = Augment {
        crop: Crop::PadRandom { pad: 2 },
        ..aug
    };
    let mut found = std::collections::HashSet::new();
    for seed in 0..200 {
        let out: Vec<u8> = augment(&aug, &img, seed)
            .iter()
            .map(|v| (v * 255.0).round() as u8)
            .collect();
        let mut hit = None;
        for flip in [false, true] {
            for dy in -2isize..=2 {
                for dx in -2isize..=2 {
                    let want: Vec<u8> = (0..64isize)
                        .map(|p| {
                            let (y, x) = (p / 8 + dy, p % 8 + dx);
                            if !(0..8).contains(&y) || !(0..8).contains(&x) {
                                return 0;
                            }
                            let x = if flip { 7 - x } else { x };
                            img.pixels[(y * 8 + x) as usize]
                        })
                        .collect();
                    if want == out {
                        hit = Some((flip, dy, dx));
                    }
                }
            }
        }
        found.insert(hit.unwrap_or_else(|| panic!("seed {seed}: not a shifted image: {out:?}")));
    }
    assert!(found.iter().any(|h| h.0) && found.iter().any(|h| !h.0));
    assert!(found.len() > 30, "{} distinct crops", found.len());
}

#[test]
fn the_random_resized_crop_has_the_output_size_and_blends_source_pixels() {
    let mut rng = SplitMix::new(1);
    let img = Image {
        pixels: (0..3 * 30 * 40)
            .map(|_| 20 + (rng.next_u64() % 200) as u8)
            .collect(),
        channels: 3,
        height: 30,
        width: 40,
    };
    let aug = raw(Augment::train_photo(16)).with_mean_std(vec![0.0; 3], vec![1.0; 3]);
    assert_eq!(aug.crop, Crop::RandomResized { min_scale: 0.08 });
    let a = augment(&aug, &img, 1);
    assert_eq!(a.len(), 3 * 16 * 16);
    // bilinear resampling only averages: every value lies within the source's range
    assert!(
        a.iter()
            .all(|&v| (20.0 / 255.0 - 1e-5..=220.0 / 255.0 + 1e-5).contains(&v))
    );
    assert_ne!(a, augment(&aug, &img, 2));
    assert_eq!(a, augment(&aug, &img, 1));
    // a wrong output buffer is an error, not a panic
    let mut short = vec![0.0; 10];
    assert!(aug.apply(&img, &mut SplitMix::new(0), &mut short).is_err());
}

#[test]
fn the_centre_crop_takes_the_middle_square() {
    let img = Image {
        pixels: (0..12).collect(),
        channels: 1,
        height: 2,
        width: 6,
    };
    let out = augment(&raw(Augment::eval(2, 1)), &img, 0);
    let px: Vec<u8> = out.iter().map(|v| (v * 255.0).round() as u8).collect();
    assert_eq!(px, vec![2, 3, 8, 9]);
}

#[test]
fn pixel_statistics_are_estimated_per_channel() {
    let d = Dataset {
        images: [0u8, 255, 51, 51, 255, 0, 51, 153]
            .iter()
            .flat_map(|&v| vec![v; 4])
            .collect(),
        labels: vec![0, 1, 0, 1],
        channels: 2,
        height: 2,
        width: 2,
        classes: vec!["a".into(), "b".into()],
    };
    let (mean, std) = estimate_mean_std(&d, 100).unwrap();
    // channel 0 holds 0, 51, 255, 51 → 0, 0.2, 1, 0.2; channel 1 holds 255, 51, 0, 153 → 1, 0.2, 0, 0.6
    let expect = |xs: [f32; 4]| {
        let m = xs.iter().sum::<f32>() / 4.0;
        let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f32>() / 4.0;
        (m, v.sqrt())
    };
    for (c, xs) in [[0.0, 0.2, 1.0, 0.2], [1.0, 0.2, 0.0, 0.6]]
        .into_iter()
        .enumerate()
    {
        let (m, s) = expect(xs);
        assert!(
            (mean[c] - m).abs() < 1e-6 && (std[c] - s).abs() < 1e-6,
            "{mean:?} {std:?}"
        );
    }
    // with one sample each channel is constant
    let e = err(estimate_mean_std(&d, 1));
    assert!(e.contains("constant"), "{e}");
}
