//! The real Fashion-MNIST as Debian's `dataset-fashion-mnist` installs it (scripts/test.sh installs the
//! package; `FBNET_FASHION_MNIST` may point at another folder of the IDX files).

use std::path::PathBuf;

use fbnet::data::load_fashion_mnist;

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
