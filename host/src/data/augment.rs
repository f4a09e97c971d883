//! Turning a decoded image into the network's input: a crop (random for training), an optional
//! horizontal flip, a resize to the network's resolution, and per-channel normalisation, written as
//! planar f32. All randomness comes from the [`SplitMix`] the caller passes, so the loader can make every
//! sample's augmentation depend only on the seed, the epoch and the sample's position.

use anyhow::{Result, bail, ensure};
use mobile_core::preprocess::{Rect, normalize, resample};
use mobile_core::rng::SplitMix;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Image, Source};

/// Which part of the image becomes the output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Crop {
    /// The whole image, resized to the output size (the usual evaluation of 28–32 px datasets).
    None,
    /// The largest central square, resized to the output size: evaluation of photos of any aspect ratio
    /// without distorting them (for square images it is [`Crop::None`]).
    Center,
    /// The whole image (resized to the output size if it differs), padded with `pad` black pixels on
    /// every side, then an output-sized window at a random offset: the standard CIFAR training crop
    /// (`pad` 4 at 32 px). `pad` 0 leaves the image in place.
    PadRandom { pad: usize },
    /// Inception's random-resized crop as torchvision implements it: a window of `min_scale`..1 of the
    /// image's area and aspect ratio 3/4..4/3 (log-uniform), resized to the output size; after 10 draws
    /// that do not fit, a central crop of the whole image clamped to those aspect ratios.
    RandomResized { min_scale: f64 },
}

/// One augmentation pipeline: crop, flip, resize to `size`×`size`, normalise. The number of channels is
/// that of `mean` and `std`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Augment {
    /// Side of the square output, in pixels.
    pub size: usize,
    pub crop: Crop,
    /// Mirror left–right with probability 1/2.
    pub hflip: bool,
    /// Per-channel mean of the pixels, in pixel/255 units; the output is `(pixel/255 − mean) / std`.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation of the pixels, in pixel/255 units.
    pub std: Vec<f32>,
}

/// ImageNet's per-channel RGB mean and standard deviation (pixel/255 units), the statistics photo
/// models are usually normalised with.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl Augment {
    /// Training on small images (CIFAR-10, Fashion-MNIST at 28–32 px): a random crop from the image
    /// padded by `size/8` (4 px at 32) and a random flip. Normalised to [-1, 1] until
    /// [`Augment::with_mean_std`] sets the dataset's statistics.
    pub fn train_small(size: usize, channels: usize) -> Augment {
        Augment {
            size,
            crop: Crop::PadRandom { pad: size / 8 },
            hflip: true,
            mean: vec![0.5; channels],
            std: vec![0.5; channels],
        }
    }

    /// Training on photos (ImageNet): random-resized crop of 8%–100% of the area and a random flip, RGB,
    /// normalised with ImageNet's statistics.
    pub fn train_photo(size: usize) -> Augment {
        Augment {
            size,
            crop: Crop::RandomResized { min_scale: 0.08 },
            hflip: true,
            mean: IMAGENET_MEAN.to_vec(),
            std: IMAGENET_STD.to_vec(),
        }
    }

    /// Evaluation: the central square resized to `size`, no randomness. Normalised to [-1, 1] until
    /// [`Augment::with_mean_std`] sets the statistics the training used.
    pub fn eval(size: usize, channels: usize) -> Augment {
        Augment {
            size,
            crop: Crop::Center,
            hflip: false,
            mean: vec![0.5; channels],
            std: vec![0.5; channels],
        }
    }

    /// The same pipeline normalised with other statistics (from [`estimate_mean_std`], or published
    /// ones); training and evaluation must use the same.
    pub fn with_mean_std(self, mean: Vec<f32>, std: Vec<f32>) -> Augment {
        Augment { mean, std, ..self }
    }

    /// Channels of the images it takes and writes.
    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// Floats of one output image: `channels × size × size`.
    pub fn output_len(&self) -> usize {
        self.channels() * self.size * self.size
    }

    /// Whether this pipeline can process images of `channels` channels: the loader checks before it
    /// starts, so a mismatch is reported once rather than on every sample.
    pub fn check(&self, channels: usize) -> Result<()> {
        ensure!(self.size > 0, "augmentation output size must be positive");
        ensure!(
            self.mean.len() == self.std.len(),
            "augmentation has {} means but {} standard deviations",
            self.mean.len(),
            self.std.len()
        );
        ensure!(
            self.std.iter().all(|&s| s > 0.0 && s.is_finite())
                && self.mean.iter().all(|m| m.is_finite()),
            "augmentation standard deviations must be positive and finite: {:?}",
            self.std
        );
        ensure!(
            self.channels() == channels,
            "augmentation normalises {} channel(s) but the images have {channels}",
            self.channels()
        );
        if let Crop::RandomResized { min_scale } = self.crop {
            ensure!(
                min_scale > 0.0 && min_scale <= 1.0,
                "random-resized crop scale {min_scale} must be in (0, 1]"
            );
        }
        Ok(())
    }

    /// Augments `img` into `out` (`channels × size × size`, planar, normalised), drawing the crop and
    /// the flip from `rng`.
    pub fn apply(&self, img: &Image, rng: &mut SplitMix, out: &mut [f32]) -> Result<()> {
        self.check(img.channels)?;
        ensure!(
            out.len() == self.output_len(),
            "augmentation output holds {} floats, {} needed",
            out.len(),
            self.output_len()
        );
        ensure!(
            img.pixels.len() == img.channels * img.height * img.width && img.height * img.width > 0,
            "image of {}x{}x{} has {} bytes",
            img.channels,
            img.height,
            img.width,
            img.pixels.len()
        );
        let whole = Rect {
            x: 0,
            y: 0,
            w: img.width,
            h: img.height,
        };
        let rect = match self.crop {
            Crop::None | Crop::PadRandom { .. } => whole,
            Crop::Center => img.center_square(),
            Crop::RandomResized { min_scale } => random_resized(img, min_scale, rng),
        };
        let shift = match self.crop {
            Crop::PadRandom { pad } => {
                let dy = (rng.next_u64() % (2 * pad as u64 + 1)) as isize - pad as isize;
                let dx = (rng.next_u64() % (2 * pad as u64 + 1)) as isize - pad as isize;
                Some((dy, dx))
            }
            _ => None,
        };
        let flip = self.hflip && rng.next_u64() & 1 == 1;
        resample(img, rect, self.size, self.size, flip, out)?;
        let plane = self.size * self.size;
        if let Some((dy, dx)) = shift {
            let n = self.size as isize;
            for channel in out.chunks_exact_mut(plane) {
                let source = channel.to_vec();
                for y in 0..n {
                    for x in 0..n {
                        let (sy, sx) = (y + dy, x + dx);
                        let inside = (0..n).contains(&sy) && (0..n).contains(&sx);
                        channel[(y * n + x) as usize] = if inside {
                            source[(sy * n + sx) as usize]
                        } else {
                            0.0
                        };
                    }
                }
            }
        }
        normalize(out, &self.mean, &self.std)?;
        Ok(())
    }
}

/// Uniform in [lo, hi).
fn uniform(rng: &mut SplitMix, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.uniform()
}

/// torchvision's `RandomResizedCrop.get_params`, with ratio 3/4..4/3.
fn random_resized(img: &Image, min_scale: f64, rng: &mut SplitMix) -> Rect {
    let (w, h) = (img.width as f64, img.height as f64);
    let area = w * h;
    let (lo, hi) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    for _ in 0..10 {
        let target = area * uniform(rng, min_scale, 1.0);
        let aspect = uniform(rng, lo, hi).exp();
        let cw = (target * aspect).sqrt().round() as usize;
        let ch = (target / aspect).sqrt().round() as usize;
        if cw > 0 && ch > 0 && cw <= img.width && ch <= img.height {
            let y = (rng.next_u64() % (img.height - ch + 1) as u64) as usize;
            let x = (rng.next_u64() % (img.width - cw + 1) as u64) as usize;
            return Rect { x, y, w: cw, h: ch };
        }
    }
    let ratio = w / h;
    let (cw, ch) = if ratio < 3.0 / 4.0 {
        (
            img.width,
            ((w / (3.0 / 4.0)).round() as usize).min(img.height),
        )
    } else if ratio > 4.0 / 3.0 {
        (
            ((h * (4.0 / 3.0)).round() as usize).min(img.width),
            img.height,
        )
    } else {
        (img.width, img.height)
    };
    Rect {
        x: (img.width - cw) / 2,
        y: (img.height - ch) / 2,
        w: cw.max(1),
        h: ch.max(1),
    }
}

/// Per-channel mean and standard deviation of the pixels (pixel/255 units) of up to `max` samples of
/// `source`, spread evenly over its indices (so a class-sorted folder contributes every class); for
/// [`Augment::with_mean_std`]. Decodes in parallel. Fails on an empty source or a channel whose pixels
/// are all equal, which could not be normalised.
pub fn estimate_mean_std(source: &dyn Source, max: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    let count = max.min(source.len());
    ensure!(
        count > 0,
        "cannot estimate pixel statistics from no samples"
    );
    let channels = source.channels();
    // per channel: sum of x, sum of x², number of pixels (x = pixel/255)
    let sums = (0..count)
        .into_par_iter()
        .map(|k| -> Result<Vec<(f64, f64, f64)>> {
            let img = source.read(k * source.len() / count)?;
            ensure!(
                img.channels == channels,
                "image has {} channels, the source {channels}",
                img.channels
            );
            let plane = img.height * img.width;
            Ok(img
                .pixels
                .chunks_exact(plane.max(1))
                .map(|p| {
                    let s: u64 = p.iter().map(|&v| v as u64).sum();
                    let q: u64 = p.iter().map(|&v| (v as u64) * (v as u64)).sum();
                    (s as f64 / 255.0, q as f64 / (255.0 * 255.0), plane as f64)
                })
                .collect())
        })
        .collect::<Result<Vec<_>>>()?;
    let (mut mean, mut std) = (Vec::new(), Vec::new());
    for c in 0..channels {
        let (s, q, n) = sums.iter().fold((0.0, 0.0, 0.0), |acc, v| {
            (acc.0 + v[c].0, acc.1 + v[c].1, acc.2 + v[c].2)
        });
        let m = s / n;
        let sd = (q / n - m * m).max(0.0).sqrt();
        if sd < 1e-6 {
            bail!("channel {c} is constant over {count} samples: its pixels cannot be normalised");
        }
        mean.push(m as f32);
        std.push(sd as f32);
    }
    Ok((mean, std))
}

#[cfg(test)]
mod tests {
    use mobile_core::model_meta::{META_FORMAT, ModelMeta};
    use mobile_core::onnx::Dtype;
    use mobile_core::preprocess::model_input;

    use super::*;

    fn meta(channels: usize, size: usize, mean: Vec<f32>, std: Vec<f32>) -> ModelMeta {
        ModelMeta {
            format: META_FORMAT,
            name: "t".into(),
            arch: String::new(),
            space: "s".into(),
            space_hash: "0".into(),
            dtype: Dtype::Fp32,
            labels: vec!["a".into(), "b".into()],
            input_shape: vec![1, channels, size, size],
            mean,
            std,
            dataset: "toy".into(),
            accuracy: None,
            prediction: None,
        }
    }

    /// The phone's preprocessing (mobile-core's `model_input`) is the host's evaluation pipeline, to the
    /// bit, on images that need both a crop and a resize (40x30 → 28, in both orientations) and on one
    /// already at the model's size.
    #[test]
    fn evaluation_equals_mobile_core_model_input() {
        for (channels, width, height, mean, std) in [
            (1, 40, 30, vec![0.2860], vec![0.3530]),
            (3, 30, 40, IMAGENET_MEAN.to_vec(), IMAGENET_STD.to_vec()),
            (1, 28, 28, vec![0.5], vec![0.5]),
        ] {
            let img = Image {
                pixels: (0..channels * width * height)
                    .map(|i| ((i * 37 + i / 7) % 256) as u8)
                    .collect(),
                channels,
                height,
                width,
            };
            let augment = Augment::eval(28, channels).with_mean_std(mean.clone(), std.clone());
            let mut host = vec![0f32; augment.output_len()];
            augment
                .apply(&img, &mut SplitMix::new(0), &mut host)
                .unwrap();
            let phone = model_input(&img, &meta(channels, 28, mean, std)).unwrap();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&host), bits(&phone), "{channels}x{height}x{width}");
            // and the crop matters: the whole 40x30 image squeezed to 28x28 differs
            if width != height {
                let squeezed = Augment {
                    crop: Crop::None,
                    ..augment
                };
                let mut other = vec![0f32; squeezed.output_len()];
                squeezed
                    .apply(&img, &mut SplitMix::new(0), &mut other)
                    .unwrap();
                assert_ne!(bits(&other), bits(&phone));
            }
        }
    }
}
