//! IDX files (MNIST, Fashion-MNIST), plain or gzip-compressed.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

use super::Dataset;

/// Fashion-MNIST's class names, by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Largest IDX file read, packed or unpacked (4 GiB; MNIST-sized sets take 50 MB).
const MAX_IDX_BYTES: u64 = 4 << 30;

/// The bytes of a file, gunzipped when it starts with the gzip magic.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        // A gzip bomb (or a corrupt length) stops at the limit instead of filling the memory.
        flate2::read::GzDecoder::new(&raw[..])
            .take(MAX_IDX_BYTES + 1)
            .read_to_end(&mut out)
            .with_context(|| format!("{}: corrupt gzip data", path.display()))?;
        ensure!(
            out.len() as u64 <= MAX_IDX_BYTES,
            "{}: unpacks to more than {} MiB, more than any IDX dataset this tool reads",
            path.display(),
            MAX_IDX_BYTES >> 20
        );
        return Ok(out);
    }
    Ok(raw)
}

/// Parses an IDX file of unsigned bytes: returns its dimensions and data.
fn parse_idx(path: &Path, bytes: &[u8], ndims: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let name = path.display();
    ensure!(bytes.len() >= 4, "{name}: too short for an IDX header");
    ensure!(
        bytes[0] == 0 && bytes[1] == 0 && bytes[2] == 0x08,
        "{name}: not an IDX file of unsigned bytes (magic {:02x} {:02x} {:02x})",
        bytes[0],
        bytes[1],
        bytes[2]
    );
    ensure!(
        bytes[3] as usize == ndims,
        "{name}: IDX file has {} dimensions, expected {ndims}",
        bytes[3]
    );
    let header = 4 + 4 * ndims;
    ensure!(bytes.len() >= header, "{name}: truncated IDX header");
    let dims: Vec<usize> = (0..ndims)
        .map(|i| {
            u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap_or_default()) as usize
        })
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n as u64 <= MAX_IDX_BYTES)
        .with_context(|| {
            format!("{name}: dimensions {dims:?} describe more data than any IDX dataset holds")
        })?;
    let found = bytes.len() - header;
    if found < expected {
        bail!(
            "{name}: truncated: dimensions {dims:?} need {expected} bytes of data, the file has {found}"
        );
    }
    Ok((dims, bytes[header..header + expected].to_vec()))
}

/// Loads an images file (`n × rows × cols`) and its labels file. Classes are named by `classes` when
/// given, else by their numbers; a label outside them is an error naming the labels file.
pub fn load_idx(images: &Path, labels: &Path, classes: Option<&[&str]>) -> Result<Dataset> {
    let (dims, pixels) = parse_idx(images, &read_maybe_gz(images)?, 3)?;
    let (ldims, labs) = parse_idx(labels, &read_maybe_gz(labels)?, 1)?;
    ensure!(
        dims[0] == ldims[0],
        "{} holds {} images but {} holds {} labels",
        images.display(),
        dims[0],
        labels.display(),
        ldims[0]
    );
    ensure!(dims[0] > 0, "{}: no images", images.display());
    let max = labs.iter().copied().max().unwrap_or(0) as usize;
    let classes: Vec<String> = match classes {
        Some(names) => {
            ensure!(
                max < names.len(),
                "{}: label {max} is out of range for {} classes",
                labels.display(),
                names.len()
            );
            names.iter().map(|s| s.to_string()).collect()
        }
        None => (0..=max).map(|c| c.to_string()).collect(),
    };
    Ok(Dataset {
        images: pixels,
        labels: labs.into_iter().map(u32::from).collect(),
        channels: 1,
        height: dims[1],
        width: dims[2],
        classes,
    })
}

/// The first of `names` that exists in `dir`.
fn find(dir: &Path, names: &[String]) -> Result<PathBuf> {
    names
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.exists())
        .with_context(|| format!("{}: none of {} found", dir.display(), names.join(", ")))
}

/// Fashion-MNIST's training (60,000) or test (10,000) set from `dir` (the IDX files, `.gz` or not;
/// Debian's `dataset-fashion-mnist` puts them in /usr/share/datasets/fashion-mnist).
pub fn load_fashion_mnist(dir: &Path, train: bool) -> Result<Dataset> {
    let prefix = if train { "train" } else { "t10k" };
    let names = |kind: &str| {
        let base = format!("{prefix}-{kind}");
        vec![base.clone(), format!("{base}.gz")]
    };
    let images = find(dir, &names("images-idx3-ubyte"))?;
    let labels = find(dir, &names("labels-idx1-ubyte"))?;
    load_idx(&images, &labels, Some(&FASHION_MNIST_CLASSES))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            v.extend(d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn reads_plain_and_gzip_idx_and_refuses_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let pixels: Vec<u8> = (0..3 * 2 * 2).map(|i| i as u8).collect();
        std::fs::write(
            d.join("train-images-idx3-ubyte.gz"),
            gz(&idx(&[3, 2, 2], &pixels)),
        )
        .unwrap();
        std::fs::write(d.join("train-labels-idx1-ubyte"), idx(&[3], &[9, 0, 4])).unwrap();
        let ds = load_fashion_mnist(d, true).unwrap();
        assert_eq!((ds.len(), ds.channels, ds.height, ds.width), (3, 1, 2, 2));
        assert_eq!(ds.image(2), &[8, 9, 10, 11]);
        assert_eq!(ds.classes[ds.labels[0] as usize], "Ankle boot");

        let err = |images: Vec<u8>, labels: Vec<u8>| {
            std::fs::write(d.join("i"), images).unwrap();
            std::fs::write(d.join("l"), labels).unwrap();
            load_idx(&d.join("i"), &d.join("l"), Some(&FASHION_MNIST_CLASSES))
                .unwrap_err()
                .to_string()
        };
        let e = err(idx(&[3, 2, 2], &pixels[..10]), idx(&[3], &[1, 2, 3]));
        assert!(e.contains("truncated") && e.contains("/i"), "{e}");
        let e = err(idx(&[3, 2, 2], &pixels), idx(&[3], &[1, 2, 10]));
        assert!(
            e.contains("label 10 is out of range") && e.contains("/l"),
            "{e}"
        );
        let e = err(idx(&[3, 2, 2], &pixels), idx(&[2], &[1, 2]));
        assert!(e.contains("3 images") && e.contains("2 labels"), "{e}");
        let e = err(b"GIF89a....".to_vec(), idx(&[1], &[0]));
        assert!(e.contains("not an IDX file"), "{e}");
        let e = err(vec![0x1f, 0x8b, 1, 2, 3], idx(&[1], &[0]));
        assert!(e.contains("corrupt gzip"), "{e}");
        // dimensions whose product overflows, or names terabytes, are refused before any allocation
        let e = err(
            idx(&[u32::MAX, u32::MAX, u32::MAX], &pixels),
            idx(&[3], &[1, 2, 3]),
        );
        assert!(e.contains("more data than any IDX"), "{e}");
        let e = err(idx(&[60_000, 60_000, 28], &pixels), idx(&[3], &[1, 2, 3]));
        assert!(e.contains("more data than any IDX"), "{e}");
        assert!(
            load_fashion_mnist(d, false)
                .unwrap_err()
                .to_string()
                .contains("t10k-images")
        );
    }
}
