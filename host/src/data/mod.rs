//! Image classification datasets in the formats users have, loaded into memory as u8 pixels (NCHW),
//! with the paper's proxy-task tools: a random subset of classes and the split of a training set into a
//! part for the weights and a part for the architecture parameters.
//!
//! Formats: IDX (MNIST, Fashion-MNIST; plain or gzip, as Debian's `dataset-fashion-mnist` installs them
//! under /usr/share/datasets/fashion-mnist) and CIFAR-10 binary batches. Bad files fail with an error that
//! names the file and what is wrong with it.

mod cifar;
mod idx;

pub use cifar::{CIFAR10_CLASSES, load_cifar_batches, load_cifar10};
pub use idx::{FASHION_MNIST_CLASSES, load_fashion_mnist, load_idx};

use anyhow::{Result, ensure};
use mobile_core::onnx::weights::SplitMix;

/// An in-memory image classification dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Pixels, image after image, each `channels × height × width` (planar).
    pub images: Vec<u8>,
    /// Class index of each image.
    pub labels: Vec<u32>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Class names, indexed by label.
    pub classes: Vec<String>,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes of one image.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// The images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let mut images = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Dataset {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            classes: self.classes.clone(),
            ..*self
        }
    }

    /// A random subset of `n` classes (chosen with `seed`), relabelled 0..n in the order of their
    /// original labels: the paper's proxy task (section 4.1 searches on 100 ImageNet classes).
    pub fn subset_classes(&self, n: usize, seed: u64) -> Result<Dataset> {
        ensure!(
            n >= 2 && n <= self.classes.len(),
            "cannot take {n} classes of a dataset with {}",
            self.classes.len()
        );
        let mut all: Vec<usize> = (0..self.classes.len()).collect();
        SplitMix::new(seed).shuffle(&mut all);
        let mut chosen = all[..n].to_vec();
        chosen.sort_unstable();
        let mut map = vec![None; self.classes.len()];
        for (new, &old) in chosen.iter().enumerate() {
            map[old] = Some(new as u32);
        }
        let keep: Vec<usize> = (0..self.len())
            .filter(|&i| map[self.labels[i] as usize].is_some())
            .collect();
        let mut out = self.select(&keep);
        for l in &mut out.labels {
            *l = map[*l as usize].unwrap_or_default();
        }
        out.classes = chosen.iter().map(|&c| self.classes[c].clone()).collect();
        Ok(out)
    }

    /// Splits into two parts, `fraction` of every class in the first (the paper trains the weights on
    /// 80% of the training set and the architecture parameters on the other 20%). Stratified, so both
    /// parts keep the class balance; the order within each part is shuffled with `seed`.
    pub fn split(&self, fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        ensure!(
            fraction > 0.0 && fraction < 1.0,
            "split fraction {fraction} must be between 0 and 1"
        );
        let mut rng = SplitMix::new(seed);
        let (mut first, mut second) = (Vec::new(), Vec::new());
        for class in 0..self.classes.len() as u32 {
            let mut members: Vec<usize> = (0..self.len())
                .filter(|&i| self.labels[i] == class)
                .collect();
            rng.shuffle(&mut members);
            let cut = (members.len() as f64 * fraction).round() as usize;
            first.extend_from_slice(&members[..cut]);
            second.extend_from_slice(&members[cut..]);
        }
        rng.shuffle(&mut first);
        rng.shuffle(&mut second);
        Ok((self.select(&first), self.select(&second)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 classes, `per` images each, every pixel of an image equal to its index modulo 256.
    fn toy(per: usize) -> Dataset {
        let n = 10 * per;
        Dataset {
            images: (0..n).flat_map(|i| vec![(i % 256) as u8; 4]).collect(),
            labels: (0..n).map(|i| (i % 10) as u32).collect(),
            channels: 1,
            height: 2,
            width: 2,
            classes: (0..10).map(|c| format!("c{c}")).collect(),
        }
    }

    #[test]
    fn class_subsets_are_seeded_and_relabelled() {
        let d = toy(5);
        let a = d.subset_classes(3, 7).unwrap();
        assert_eq!(a, d.subset_classes(3, 7).unwrap());
        assert_eq!(a.classes.len(), 3);
        assert_eq!(a.len(), 15);
        assert!(a.labels.iter().all(|&l| l < 3));
        // each kept image still carries its class: the image index modulo 10 is the original label
        for i in 0..a.len() {
            let original = a.image(i)[0] as usize % 10;
            assert_eq!(a.classes[a.labels[i] as usize], format!("c{original}"));
        }
        assert_ne!(a.classes, d.subset_classes(3, 8).unwrap().classes);
        assert!(d.subset_classes(11, 0).is_err());
    }

    #[test]
    fn the_split_is_stratified_disjoint_and_complete() {
        let d = toy(10);
        let (w, a) = d.split(0.8, 1).unwrap();
        assert_eq!((w.len(), a.len()), (80, 20));
        for c in 0..10 {
            assert_eq!(w.labels.iter().filter(|&&l| l == c).count(), 8);
        }
        let mut seen: Vec<u8> = w
            .images
            .iter()
            .chain(&a.images)
            .step_by(4)
            .copied()
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..100).map(|i| i as u8).collect::<Vec<_>>());
        assert!(d.split(1.0, 0).is_err());
    }
}
