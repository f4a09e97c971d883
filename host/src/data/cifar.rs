//! CIFAR-10 binary batches (`data_batch_1.bin` … `data_batch_5.bin`, `test_batch.bin`): records of one
//! label byte and 3×32×32 planar pixels.

use std::path::Path;

use anyhow::{Context, Result, ensure};

use super::Dataset;

/// CIFAR-10's class names, by label.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

const RECORD: usize = 1 + 3 * 32 * 32;

/// Loads the given batch files into one dataset.
pub fn load_cifar_batches(files: &[&Path]) -> Result<Dataset> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for path in files {
        let bytes =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        ensure!(
            !bytes.is_empty() && bytes.len() % RECORD == 0,
            "{}: {} bytes is not a whole number of CIFAR-10 records of {RECORD} bytes (truncated or not a CIFAR-10 batch)",
            path.display(),
            bytes.len()
        );
        for (i, record) in bytes.chunks_exact(RECORD).enumerate() {
            ensure!(
                (record[0] as usize) < CIFAR10_CLASSES.len(),
                "{}: record {i} has label {}, out of range for 10 classes",
                path.display(),
                record[0]
            );
            labels.push(u32::from(record[0]));
            images.extend_from_slice(&record[1..]);
        }
    }
    Ok(Dataset {
        images,
        labels,
        channels: 3,
        height: 32,
        width: 32,
        classes: CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
    })
}

/// CIFAR-10's training (50,000) or test (10,000) set from the folder of its binary batches.
pub fn load_cifar10(dir: &Path, train: bool) -> Result<Dataset> {
    let names: Vec<String> = if train {
        (1..=5).map(|i| format!("data_batch_{i}.bin")).collect()
    } else {
        vec!["test_batch.bin".into()]
    };
    let paths: Vec<_> = names.iter().map(|n| dir.join(n)).collect();
    let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
    load_cifar_batches(&refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_records_and_refuses_truncated_or_mislabelled_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut batch = Vec::new();
        for label in [3u8, 7] {
            batch.push(label);
            batch.extend((0..RECORD - 1).map(|i| (i % 251) as u8 ^ label));
        }
        let good = dir.path().join("test_batch.bin");
        std::fs::write(&good, &batch).unwrap();
        let ds = load_cifar10(dir.path(), false).unwrap();
        assert_eq!((ds.len(), ds.channels, ds.height, ds.width), (2, 3, 32, 32));
        assert_eq!(ds.classes[ds.labels[1] as usize], "horse");
        assert_eq!(ds.image(1)[0], 7);
        assert_eq!(ds.image(1)[1], 1 ^ 7);

        let short = dir.path().join("short.bin");
        std::fs::write(&short, &batch[..RECORD + 10]).unwrap();
        let e = load_cifar_batches(&[&short]).unwrap_err().to_string();
        assert!(e.contains("short.bin") && e.contains("whole number"), "{e}");
        batch[RECORD] = 12;
        let bad = dir.path().join("bad.bin");
        std::fs::write(&bad, &batch).unwrap();
        let e = load_cifar_batches(&[&bad]).unwrap_err().to_string();
        assert!(e.contains("record 1 has label 12"), "{e}");
        assert!(
            load_cifar10(dir.path(), true)
                .unwrap_err()
                .to_string()
                .contains("data_batch_1.bin")
        );
    }
}
