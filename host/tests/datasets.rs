//! The real Fashion-MNIST as Debian's `dataset-fashion-mnist` installs it (scripts/test.sh installs the
//! package; `FBNET_FASHION_MNIST` may point at another folder of the IDX files).

use std::path::PathBuf;

use fbnet::data::{Augment, LoaderConfig, batches, estimate_mean_std, load_fashion_mnist, open};

fn dir() -> PathBuf {
    std::env::var_os("FBNET_FASHION_MNIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/datasets/fashion-mnist"))
}

#[test]
fn fashion_mnist_loads_with_its_published_shape_and_balance() {
    let d = dir();
    assert!(
        d.exists(),
        "{} is missing: install Debian's dataset-fashion-mnist (scripts/test.sh does) or set FBNET_FASHION_MNIST",
        d.display()
    );
    let test = load_fashion_mnist(&d, false).unwrap();
    assert_eq!(
        (test.len(), test.channels, test.height, test.width),
        (10_000, 1, 28, 28)
    );
    // 1,000 test images per class, and real pictures: neither blank nor saturated
    for c in 0..10 {
        assert_eq!(test.labels.iter().filter(|&&l| l == c).count(), 1000);
    }
    let mean = test.images.iter().map(|&p| p as f64).sum::<f64>() / test.images.len() as f64;
    assert!((40.0..120.0).contains(&mean), "mean pixel {mean}");
    let (weights, arch) = test.split(0.8, 0).unwrap();
    assert_eq!((weights.len(), arch.len()), (8000, 2000));
    let three = test.subset_classes(3, 1).unwrap();
    assert_eq!(three.len(), 3000);
}

/// Fashion-MNIST through the pipeline: the statistics estimated from a sample of the test set are the
/// published ones (mean 0.2860, std 0.3530 over the training set, as torchvision tutorials quote them),
/// and a batch normalised with them has mean about 0 and standard deviation about 1.
#[test]
fn fashion_mnist_batches_are_normalised_with_its_statistics() {
    let spec = format!("fashion-mnist:{}", dir().display());
    let source = open(&spec, false, None).unwrap();
    assert_eq!((source.len(), source.channels()), (10_000, 1));
    assert!(open(&spec, false, Some(3)).is_err());
    let (mean, std) = estimate_mean_std(source.as_ref(), 2000).unwrap();
    assert!((mean[0] - 0.286).abs() < 0.01, "mean {mean:?}");
    assert!((std[0] - 0.353).abs() < 0.01, "std {std:?}");

    let cfg = LoaderConfig {
        batch_size: 1000,
        workers: 2,
        prefetch: 2,
        shuffle: true,
        drop_last: false,
        seed: 0,
        augment: Augment::eval(28, 1).with_mean_std(mean.clone(), std.clone()),
    };
    let indices: Vec<usize> = (0..source.len()).collect();
    let mut loader = batches(source.clone(), &indices, &cfg, 0).unwrap();
    assert_eq!(loader.len(), 10);
    let batch = loader.next().unwrap().unwrap();
    drop(loader);
    assert_eq!(batch.shape, [1000, 1, 28, 28]);
    let n = batch.images.len() as f32;
    let m = batch.images.iter().sum::<f32>() / n;
    let s = (batch.images.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / n).sqrt();
    assert!(
        m.abs() < 0.05 && (s - 1.0).abs() < 0.05,
        "batch mean {m}, std {s}"
    );
    // evaluation does not augment: each image is its pixels, normalised
    let raw = load_fashion_mnist(&dir(), false).unwrap();
    for (k, &i) in batch.indices.iter().enumerate().take(20) {
        assert_eq!(batch.labels[k], raw.labels[i]);
        let want: Vec<f32> = raw
            .image(i)
            .iter()
            .map(|&p| (p as f32 / 255.0 - mean[0]) / std[0])
            .collect();
        let got = &batch.images[k * 784..(k + 1) * 784];
        assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-4));
    }
}
