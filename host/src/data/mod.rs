//! Image classification datasets and the pipeline that feeds them to the trainer.
//!
//! Where samples come from is a [`Source`]: an in-memory [`Dataset`] (IDX files such as Fashion-MNIST,
//! plain or gzip as Debian's `dataset-fashion-mnist` installs them under /usr/share/datasets/fashion-mnist,
//! and CIFAR-10 binary batches) or a lazy [`ImageFolder`] of JPEG/PNG files in the ImageNet layout, decoded
//! only when a sample is read. The paper's proxy-task tools work on the labels of any source and return
//! indices: [`class_subset`] (a random subset of classes, [`Subset`] being the relabelled view of it) and
//! [`stratified_split`] (a part for the weights and a part for the architecture parameters). [`batches`]
//! decodes and augments ([`Augment`]) on background threads, deterministically for a seed and an epoch.
//! [`open`] turns a dataset spec from the command line into a source. Bad files fail with an error that
//! names the file and what is wrong with it.

mod augment;
mod cifar;
mod folder;
mod idx;
mod loader;

pub use augment::{Augment, Crop, IMAGENET_MEAN, IMAGENET_STD, estimate_mean_std};
pub use cifar::{CIFAR10_CLASSES, load_cifar_batches, load_cifar10};
pub use folder::{IMAGE_EXTENSIONS, ImageFolder, eval_split};
pub use idx::{FASHION_MNIST_CLASSES, load_fashion_mnist, load_idx};
pub use loader::{
    Batch, Loader, LoaderConfig, LoaderStats, batch_count, batches, batches_from, epoch_order,
};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, bail, ensure};
use mobile_core::rng::SplitMix;

/// One decoded image, planar: the layout of [`Dataset`] and of the network's input. Defined in
/// mobile-core, so the phone preprocesses with the very type and resize the trainer evaluates with.
pub use mobile_core::preprocess::Image;

/// Where samples come from. Labels and class names are known up front (the proxy-task tools and the
/// loader's batches need them without decoding anything); pixels are produced by [`Source::read`], which
/// may decode a file, so it is fallible and called from the loader's threads (hence `Send + Sync`).
pub trait Source: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The class index of every sample, by sample index.
    fn labels(&self) -> &[u32];

    /// The class index of sample `i`.
    fn label(&self, i: usize) -> u32 {
        self.labels()[i]
    }

    /// Class names, indexed by label.
    fn classes(&self) -> &[String];

    /// Channels of every image [`Source::read`] returns (1 grey, 3 RGB).
    fn channels(&self) -> usize;

    /// The pixels of sample `i`. Images of one source may differ in height and width (photos do); the
    /// augmentation brings them to one size.
    fn read(&self, i: usize) -> Result<Image>;
}

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
    /// original labels: the paper's proxy task (section 4.1 searches on 100 ImageNet classes). An
    /// in-memory copy of what [`Subset::random_classes`] is as a view; both use [`class_subset`].
    pub fn subset_classes(&self, n: usize, seed: u64) -> Result<Dataset> {
        let (keep, chosen) = class_subset(&self.labels, self.classes.len(), n, seed)?;
        let mut out = self.select(&keep);
        out.labels = relabel(&self.labels, &keep, &chosen);
        out.classes = chosen.iter().map(|&c| self.classes[c].clone()).collect();
        Ok(out)
    }

    /// Splits into two parts, `fraction` of every class in the first (the paper trains the weights on
    /// 80% of the training set and the architecture parameters on the other 20%): [`stratified_split`]
    /// applied to the images.
    pub fn split(&self, fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        let (first, second) = stratified_split(&self.labels, self.classes.len(), fraction, seed)?;
        Ok((self.select(&first), self.select(&second)))
    }
}

impl Source for Dataset {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn labels(&self) -> &[u32] {
        &self.labels
    }

    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn channels(&self) -> usize {
        self.channels
    }

    fn read(&self, i: usize) -> Result<Image> {
        ensure!(
            i < self.len(),
            "image {i} is out of range for a dataset of {} images",
            self.len()
        );
        Ok(Image {
            pixels: self.image(i).to_vec(),
            channels: self.channels,
            height: self.height,
            width: self.width,
        })
    }
}

/// Checks that every label names one of `num_classes` classes, so the tools below can index by label.
fn check_labels(labels: &[u32], num_classes: usize) -> Result<()> {
    if let Some((i, l)) = labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| l as usize >= num_classes)
    {
        bail!("sample {i} has label {l}, out of range for {num_classes} classes");
    }
    Ok(())
}

/// The paper's proxy task on the labels of any source: `n` of the `num_classes` classes chosen at random
/// with `seed`. Returns the indices of the samples of those classes (in increasing order) and the chosen
/// original classes (sorted; the new label of a sample is the position of its class in this list).
/// Working on labels alone keeps the choice independent of how the pixels are stored.
pub fn class_subset(
    labels: &[u32],
    num_classes: usize,
    n: usize,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    ensure!(
        n >= 2 && n <= num_classes,
        "cannot take {n} classes of a dataset with {num_classes}"
    );
    check_labels(labels, num_classes)?;
    let mut all: Vec<usize> = (0..num_classes).collect();
    SplitMix::new(seed).shuffle(&mut all);
    let mut chosen = all[..n].to_vec();
    chosen.sort_unstable();
    let mut wanted = vec![false; num_classes];
    for &c in &chosen {
        wanted[c] = true;
    }
    let keep = (0..labels.len())
        .filter(|&i| wanted[labels[i] as usize])
        .collect();
    Ok((keep, chosen))
}

/// The new labels of the samples `keep` after [`class_subset`] chose the sorted classes `chosen`.
fn relabel(labels: &[u32], keep: &[usize], chosen: &[usize]) -> Vec<u32> {
    keep.iter()
        .map(|&i| {
            let new = chosen.partition_point(|&c| c < labels[i] as usize);
            new as u32
        })
        .collect()
}

/// Splits the sample indices `0..labels.len()` into two parts with `fraction` of every class (rounded)
/// in the first: the paper trains the weights on 80% of the training set and the architecture
/// parameters on the other 20%. Stratified, so both parts keep the class balance; the order within each
/// part is shuffled with `seed`.
pub fn stratified_split(
    labels: &[u32],
    num_classes: usize,
    fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    ensure!(
        fraction > 0.0 && fraction < 1.0,
        "split fraction {fraction} must be between 0 and 1"
    );
    check_labels(labels, num_classes)?;
    let mut by_class = vec![Vec::new(); num_classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let mut rng = SplitMix::new(seed);
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for members in &mut by_class {
        rng.shuffle(members);
        let cut = (members.len() as f64 * fraction).round() as usize;
        first.extend_from_slice(&members[..cut]);
        second.extend_from_slice(&members[cut..]);
    }
    rng.shuffle(&mut first);
    rng.shuffle(&mut second);
    Ok((first, second))
}

/// Some samples of another source, in a given order, possibly relabelled: the lazy counterpart of
/// [`Dataset::select`] and [`Dataset::subset_classes`], so a proxy task on an image folder decodes
/// nothing until the loader reads a sample.
pub struct Subset {
    source: Arc<dyn Source>,
    indices: Vec<usize>,
    labels: Vec<u32>,
    classes: Vec<String>,
}

impl Subset {
    /// The samples `indices` of `source`, with their labels and classes unchanged.
    pub fn new(source: Arc<dyn Source>, indices: Vec<usize>) -> Result<Subset> {
        if let Some(&i) = indices.iter().find(|&&i| i >= source.len()) {
            bail!(
                "index {i} is out of range for a source of {} samples",
                source.len()
            );
        }
        let labels = indices.iter().map(|&i| source.label(i)).collect();
        let classes = source.classes().to_vec();
        Ok(Subset {
            source,
            indices,
            labels,
            classes,
        })
    }

    /// The paper's proxy task: the samples of `n` classes chosen at random with `seed` (see
    /// [`class_subset`]), relabelled 0..n in the order of their original labels.
    pub fn random_classes(source: Arc<dyn Source>, n: usize, seed: u64) -> Result<Subset> {
        let (keep, chosen) = class_subset(source.labels(), source.classes().len(), n, seed)?;
        let labels = relabel(source.labels(), &keep, &chosen);
        let classes = chosen
            .iter()
            .map(|&c| source.classes()[c].clone())
            .collect();
        Ok(Subset {
            source,
            indices: keep,
            labels,
            classes,
        })
    }

    /// For each sample of the subset, its index in the underlying source.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }
}

impl Source for Subset {
    fn len(&self) -> usize {
        self.indices.len()
    }

    fn labels(&self) -> &[u32] {
        &self.labels
    }

    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn channels(&self) -> usize {
        self.source.channels()
    }

    fn read(&self, i: usize) -> Result<Image> {
        ensure!(
            i < self.len(),
            "sample {i} is out of range for a subset of {} samples",
            self.len()
        );
        self.source.read(self.indices[i])
    }
}

/// Where Fashion-MNIST's IDX files are: `$FBNET_FASHION_MNIST`, else where Debian's
/// `dataset-fashion-mnist` installs them.
pub fn fashion_mnist_dir() -> PathBuf {
    std::env::var_os("FBNET_FASHION_MNIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/datasets/fashion-mnist"))
}

/// The dataset `spec` (training or evaluation split) limited to `classes` random classes (the paper's
/// proxy task; the same `class_seed` picks the same classes in both splits), checked to have the
/// `expected` number of classes; `hint` says how to fix a mismatch.
pub fn open_classes(
    spec: &str,
    train: bool,
    channels: usize,
    classes: Option<usize>,
    class_seed: u64,
    expected: usize,
    hint: &dyn Fn(usize) -> String,
) -> Result<Arc<dyn Source>> {
    let mut source = open(spec, train, Some(channels))?;
    if let Some(n) = classes {
        source = Arc::new(Subset::random_classes(source, n, class_seed)?);
    }
    let n = source.classes().len();
    ensure!(
        n == expected,
        "the data has {n} classes but {expected} are needed: {}",
        hint(n)
    );
    Ok(source)
}

/// At most `max` indices of `source`, a stratified sample (all of them without `max`).
pub fn sample(source: &dyn Source, max: Option<usize>, seed: u64) -> Result<Vec<usize>> {
    match max.filter(|&m| m < source.len()) {
        Some(m) => Ok(stratified_split(
            source.labels(),
            source.classes().len(),
            m as f64 / source.len() as f64,
            seed,
        )?
        .0),
        None => Ok((0..source.len()).collect()),
    }
}

/// Splits `pool` (indices of `source`) in two, stratified, `fraction` of every class in the first part
/// (see [`stratified_split`]).
pub fn split_pool(
    source: &dyn Source,
    pool: &[usize],
    fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let labels: Vec<u32> = pool.iter().map(|&i| source.label(i)).collect();
    let (a, b) = stratified_split(&labels, source.classes().len(), fraction, seed)?;
    Ok((
        a.into_iter().map(|i| pool[i]).collect(),
        b.into_iter().map(|i| pool[i]).collect(),
    ))
}

/// `spec` with its folder made absolute (against the current folder), so that a run folder's
/// configuration names the same data wherever the run is resumed from. `fashion-mnist` stays as it is.
pub fn absolute_spec(spec: &str) -> String {
    let abs = |p: &str| mobile_core::files::absolute(p).display().to_string();
    if spec == "fashion-mnist" {
        spec.to_string()
    } else if let Some(dir) = spec.strip_prefix("fashion-mnist:") {
        format!("fashion-mnist:{}", abs(dir))
    } else if let Some(dir) = spec.strip_prefix("cifar10:") {
        format!("cifar10:{}", abs(dir))
    } else {
        abs(spec)
    }
}

/// The dataset a spec names, as the command line writes it:
///
/// - `fashion-mnist` (the folder [`fashion_mnist_dir`] finds) or `fashion-mnist:DIR`;
/// - `cifar10:DIR`, a folder of CIFAR-10's binary batches;
/// - otherwise the path of an image folder: `train/` for training, and `val/` (or else `test/`, see
///   [`eval_split`]) for evaluation, each holding one folder of images per class.
///
/// `train` picks the training or the evaluation set. `channels` asks for 1 (grey) or 3 (RGB) channels;
/// `None` keeps the dataset's own (3 for an image folder). The in-memory formats have fixed channels
/// and refuse another number rather than silently converting.
pub fn open(spec: &str, train: bool, channels: Option<usize>) -> Result<Arc<dyn Source>> {
    let memory = |d: Dataset, name: &str| -> Result<Arc<dyn Source>> {
        if let Some(c) = channels {
            ensure!(
                c == d.channels,
                "{name} has {} channel(s); {c} were asked for",
                d.channels
            );
        }
        Ok(Arc::new(d))
    };
    if spec == "fashion-mnist" {
        return memory(load_fashion_mnist(&fashion_mnist_dir(), train)?, spec);
    }
    if let Some(dir) = spec.strip_prefix("fashion-mnist:") {
        return memory(load_fashion_mnist(Path::new(dir), train)?, "fashion-mnist");
    }
    if let Some(dir) = spec.strip_prefix("cifar10:") {
        return memory(load_cifar10(Path::new(dir), train)?, "cifar10");
    }
    let root = Path::new(spec);
    ensure!(
        root.is_dir(),
        "unknown dataset `{spec}`: expected fashion-mnist, fashion-mnist:DIR, cifar10:DIR or the folder \
         of an image dataset (train/ and val/ or test/, one folder per class)"
    );
    let split = if train { "train" } else { eval_split(root)? };
    Ok(Arc::new(ImageFolder::open(
        root,
        split,
        channels.unwrap_or(3),
    )?))
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

    /// The index tools give what the earlier per-class scans over the dataset gave (the reference below
    /// is that code), so seeds recorded with earlier runs keep selecting the same samples.
    #[test]
    fn index_tools_reproduce_the_original_scans() {
        let labels: Vec<u32> = (0..97u32).map(|i| (i * 7 + i / 5) % 6).collect();
        let mut rng = SplitMix::new(3);
        let (mut first, mut second) = (Vec::new(), Vec::new());
        for class in 0..6 {
            let mut members: Vec<usize> =
                (0..labels.len()).filter(|&i| labels[i] == class).collect();
            rng.shuffle(&mut members);
            let cut = (members.len() as f64 * 0.8).round() as usize;
            first.extend_from_slice(&members[..cut]);
            second.extend_from_slice(&members[cut..]);
        }
        rng.shuffle(&mut first);
        rng.shuffle(&mut second);
        assert_eq!(
            stratified_split(&labels, 6, 0.8, 3).unwrap(),
            (first, second)
        );

        let mut all: Vec<usize> = (0..6).collect();
        SplitMix::new(9).shuffle(&mut all);
        let mut chosen = all[..4].to_vec();
        chosen.sort_unstable();
        let keep: Vec<usize> = (0..labels.len())
            .filter(|&i| chosen.contains(&(labels[i] as usize)))
            .collect();
        assert_eq!(class_subset(&labels, 6, 4, 9).unwrap(), (keep, chosen));
    }

    #[test]
    fn index_tools_refuse_labels_out_of_range() {
        let e = class_subset(&[0, 1, 5], 3, 2, 0).unwrap_err().to_string();
        assert!(e.contains("sample 2 has label 5"), "{e}");
        assert!(stratified_split(&[0, 3], 3, 0.5, 0).is_err());
    }

    /// A subset view reads through to the source and relabels like the in-memory copy does.
    #[test]
    fn a_subset_view_equals_the_in_memory_subset() {
        let d = toy(4);
        let copy = d.subset_classes(4, 5).unwrap();
        let view = Subset::random_classes(Arc::new(d.clone()), 4, 5).unwrap();
        assert_eq!(view.len(), copy.len());
        assert_eq!(view.labels(), &copy.labels[..]);
        assert_eq!(view.classes(), &copy.classes[..]);
        for i in 0..view.len() {
            assert_eq!(view.read(i).unwrap().pixels, copy.image(i));
            assert_eq!(
                d.labels[view.indices()[i]] as usize % 10,
                copy.image(i)[0] as usize % 10
            );
        }
        assert!(view.read(view.len()).is_err());
        let e = Subset::new(Arc::new(d), vec![0, 40])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("index 40 is out of range"), "{e}");
    }
}
