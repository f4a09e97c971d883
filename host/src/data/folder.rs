//! A folder of image files in the ImageNet layout, `root/<split>/<class>/<image>`, read lazily: listing
//! the files is cheap, and each image is decoded (JPEG or PNG) only when the loader asks for it, so a
//! dataset far larger than memory can be used.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

use super::{Image, Source};

/// The file extensions taken as images (compared without regard to case: `.JPEG` is ImageNet's).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// One split of an image folder: the files of every class, found when it is opened and decoded on
/// [`Source::read`].
#[derive(Clone, Debug)]
pub struct ImageFolder {
    dir: PathBuf,
    files: Vec<PathBuf>,
    labels: Vec<u32>,
    classes: Vec<String>,
    channels: usize,
}

/// The entries of a folder, sorted by name so that labels and sample indices do not depend on the order
/// the file system lists them in.
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?
    {
        let entry = entry.with_context(|| format!("{}: cannot list", dir.display()))?;
        out.push(entry.path());
    }
    out.sort();
    Ok(out)
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

impl ImageFolder {
    /// Lists `root/split`: its subfolders are the classes (sorted by name, so label `i` is the `i`-th
    /// name), and their `.jpg`, `.jpeg` and `.png` files the samples (sorted). Files with other
    /// extensions and hidden entries are skipped; a class folder without images is an error, since it
    /// would silently shift every later label. Images are decoded as RGB (`channels` 3) or grey (1).
    pub fn open(root: &Path, split: &str, channels: usize) -> Result<ImageFolder> {
        ensure!(
            channels == 1 || channels == 3,
            "images can be read with 1 (grey) or 3 (RGB) channels, not {channels}"
        );
        ensure!(root.is_dir(), "{}: no such image folder", root.display());
        let dir = root.join(split);
        ensure!(
            dir.is_dir(),
            "{}: no `{split}` split in this image folder",
            dir.display()
        );
        let (mut files, mut labels, mut classes) = (Vec::new(), Vec::new(), Vec::new());
        for class_dir in sorted_entries(&dir)? {
            if !class_dir.is_dir() || is_hidden(&class_dir) {
                continue;
            }
            let name = class_dir
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| {
                    format!("{}: class folder name is not UTF-8", class_dir.display())
                })?
                .to_string();
            let before = files.len();
            for path in sorted_entries(&class_dir)? {
                if is_image(&path) && !is_hidden(&path) && path.is_file() {
                    files.push(path);
                    labels.push(classes.len() as u32);
                }
            }
            ensure!(
                files.len() > before,
                "{}: class folder holds no images (.jpg, .jpeg or .png)",
                class_dir.display()
            );
            classes.push(name);
        }
        if classes.is_empty() {
            bail!(
                "{}: no class folders (expected one folder of images per class)",
                dir.display()
            );
        }
        Ok(ImageFolder {
            dir,
            files,
            labels,
            classes,
            channels,
        })
    }

    /// The folder of this split, `root/split`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of sample `i`.
    pub fn path(&self, i: usize) -> &Path {
        &self.files[i]
    }
}

impl Source for ImageFolder {
    fn len(&self) -> usize {
        self.files.len()
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

    /// Decodes the file (its format is recognised from its content, so a PNG named `.jpg` still reads)
    /// and converts it to planar RGB or grey.
    fn read(&self, i: usize) -> Result<Image> {
        ensure!(
            i < self.files.len(),
            "{}: image {i} is out of range for a split of {} images",
            self.dir.display(),
            self.files.len()
        );
        let path = &self.files[i];
        let bytes =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        Ok(mobile_core::preprocess::decode(
            &bytes,
            self.channels,
            path,
        )?)
    }
}

/// The evaluation split of an image folder: `val` (ImageNet's name) if `root/val` exists, else `test`
/// (CIFAR-style exports).
pub fn eval_split(root: &Path) -> Result<&'static str> {
    for split in ["val", "test"] {
        if root.join(split).is_dir() {
            return Ok(split);
        }
    }
    bail!(
        "{}: no evaluation split (expected a `val` or `test` folder)",
        root.display()
    )
}
