//! From an image to a network's input: decoding, the planar [`Image`], the antialiased resize and the
//! per-channel normalisation. The host's data pipeline and the phone both call this module, so a model
//! sees on the phone exactly the pixels it was evaluated on at training time.

use std::io::Cursor;
use std::path::Path;

use image::ImageDecoder as _;

use crate::error::{Error, Result};
use crate::model_meta::ModelMeta;

/// One decoded image: `channels × height × width` bytes, planar (all of channel 0, then channel 1, …),
/// the layout of a network's input.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub pixels: Vec<u8>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl Image {
    /// Fails unless the pixels fill `channels × height × width` exactly and the image is not empty:
    /// the fields are public, so every consumer checks before indexing.
    pub fn check(&self) -> Result<()> {
        let expected = self
            .channels
            .checked_mul(self.height)
            .and_then(|n| n.checked_mul(self.width));
        if self.channels == 0
            || self.height == 0
            || self.width == 0
            || expected != Some(self.pixels.len())
        {
            return Err(Error::invalid(format!(
                "image of {}x{}x{} has {} bytes",
                self.channels,
                self.height,
                self.width,
                self.pixels.len()
            )));
        }
        Ok(())
    }

    /// The largest central square, the evaluation crop: photos of any aspect ratio are not distorted.
    pub fn center_square(&self) -> Rect {
        let s = self.width.min(self.height);
        Rect {
            x: (self.width - s) / 2,
            y: (self.height - s) / 2,
            w: s,
            h: s,
        }
    }
}

/// A window of an image, in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
}

/// Widest and tallest image decoded, pixels.
pub const MAX_IMAGE_SIDE: u32 = 8192;
/// Most memory one decode may take (8192 × 4096 RGBA).
pub const MAX_IMAGE_BYTES: u64 = 128 << 20;

/// Decodes a JPEG or PNG (recognised from its content, so a misnamed file still reads), turned upright
/// by its EXIF orientation, into planar grey
/// (`channels` 1, luma) or RGB (3). `origin` names the image in errors.
pub fn decode(bytes: &[u8], channels: usize, origin: &Path) -> Result<Image> {
    if channels != 1 && channels != 3 {
        return Err(Error::invalid(format!(
            "{}: images decode to 1 (grey) or 3 (RGB) channels, not {channels}",
            origin.display()
        )));
    }
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::bad_file(origin, format!("cannot read the image: {e}")))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_BYTES);
    reader.limits(limits);
    let cannot = |e: image::ImageError| {
        Error::bad_file(
            origin,
            format!(
                "cannot decode the image (at most {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} pixels and {} MiB decoded): {e}",
                MAX_IMAGE_BYTES >> 20
            ),
        )
    };
    let mut decoder = reader.into_decoder().map_err(cannot)?;
    // A phone's camera stores a portrait photo as landscape pixels plus an EXIF orientation; without
    // applying it the network would see the photo turned on its side.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut decoded = image::DynamicImage::from_decoder(decoder).map_err(cannot)?;
    decoded.apply_orientation(orientation);
    let (width, height) = (decoded.width() as usize, decoded.height() as usize);
    if width == 0 || height == 0 {
        return Err(Error::bad_file(
            origin,
            format!("empty image ({width}x{height})"),
        ));
    }
    let pixels = if channels == 1 {
        decoded.into_luma8().into_raw()
    } else {
        let interleaved = decoded.into_rgb8().into_raw();
        let plane = width * height;
        let mut planar = vec![0u8; 3 * plane];
        for (p, rgb) in interleaved.chunks_exact(3).enumerate() {
            planar[p] = rgb[0];
            planar[plane + p] = rgb[1];
            planar[2 * plane + p] = rgb[2];
        }
        planar
    };
    Ok(Image {
        pixels,
        channels,
        height,
        width,
    })
}

/// A model's input from `img`: the largest central square resized to the model's height × width, then
/// `(pixel/255 − mean) / std` per channel, planar. The host's evaluation pipeline
/// (`Augment::eval(size, c).with_mean_std(mean, std)`) computes the same floats with the same functions.
pub fn model_input(img: &Image, meta: &ModelMeta) -> Result<Vec<f32>> {
    img.check()?;
    let (channels, height, width) = match meta.input_shape[..] {
        [1, c, h, w] if c > 0 && h > 0 && w > 0 => (c, h, w),
        _ => {
            return Err(Error::invalid(format!(
                "model `{}` takes input {:?}, not a single [1, channels, height, width] image",
                meta.name, meta.input_shape
            )));
        }
    };
    if img.channels != channels {
        return Err(Error::invalid(format!(
            "model `{}` takes {channels}-channel images, this one has {}",
            meta.name, img.channels
        )));
    }
    let mut out = vec![0f32; channels * height * width];
    resample(img, img.center_square(), height, width, false, &mut out)?;
    normalize(&mut out, &meta.mean, &meta.std)?;
    Ok(out)
}

/// Maps planar pixel values (0..255) to `(pixel/255 − mean[c]) / std[c]` in place, one plane per
/// channel. Computed as `pixel · (1 / (255·std)) − mean/std`, the host's historical arithmetic, so the
/// floats stay bit-identical to the inputs models were trained on.
pub fn normalize(planes: &mut [f32], mean: &[f32], std: &[f32]) -> Result<()> {
    let channels = mean.len();
    if channels == 0 || std.len() != channels || planes.len() % channels != 0 {
        return Err(Error::invalid(format!(
            "cannot normalise {} floats with {} means and {} standard deviations",
            planes.len(),
            mean.len(),
            std.len()
        )));
    }
    let plane = planes.len() / channels;
    for (c, channel) in planes.chunks_exact_mut(plane.max(1)).enumerate() {
        let scale = 1.0 / (255.0 * std[c]);
        let offset = mean[c] / std[c];
        for v in channel {
            *v = *v * scale - offset;
        }
    }
    Ok(())
}

/// The source pixels and weights that make each output pixel along one axis.
struct Axis {
    /// First source index of output `o`'s taps.
    first: Vec<usize>,
    /// Output `o`'s weights are `weights[bounds[o]..bounds[o + 1]]`.
    bounds: Vec<usize>,
    weights: Vec<f32>,
}

/// Resampling of `len` source pixels from `start` to `out` pixels with a triangle (bilinear) filter,
/// widened when shrinking so every source pixel contributes (antialiasing, as PIL's bilinear resize
/// does); pixel centres at half-integers, taps clamped to the window (the edge pixel is repeated). At
/// equal sizes each output is exactly one source pixel. `flip` mirrors the output.
fn axis(start: usize, len: usize, out: usize, flip: bool) -> Axis {
    let scale = len as f64 / out as f64;
    let support = scale.max(1.0);
    let mut axis = Axis {
        first: Vec::with_capacity(out),
        bounds: vec![0],
        weights: Vec::new(),
    };
    for o in 0..out {
        let o = if flip { out - 1 - o } else { o };
        let centre = start as f64 + (o as f64 + 0.5) * scale;
        let lo = ((centre - support).floor().max(start as f64)) as usize;
        let hi = ((centre + support).ceil() as usize).min(start + len);
        let from = axis.weights.len();
        let mut first = None;
        for i in lo..hi {
            let w = 1.0 - ((i as f64 + 0.5 - centre) / support).abs();
            if w > 0.0 {
                first.get_or_insert(i);
                axis.weights.push(w as f32);
            } else if first.is_some() {
                break;
            }
        }
        let sum: f32 = axis.weights[from..].iter().sum();
        for w in &mut axis.weights[from..] {
            *w /= sum;
        }
        axis.first.push(first.unwrap_or(start));
        axis.bounds.push(axis.weights.len());
    }
    axis
}

/// Resizes the window `rect` of `img` to `height × width` into `out` (planar, `channels × height ×
/// width`), in pixel units (0..255), separably: along rows, then along columns. `flip` mirrors the
/// output left–right. Fails, rather than panicking, on an inconsistent image, a window outside it or an
/// output of the wrong length.
pub fn resample(
    img: &Image,
    rect: Rect,
    height: usize,
    width: usize,
    flip: bool,
    out: &mut [f32],
) -> Result<()> {
    img.check()?;
    let inside = rect.w > 0
        && rect.h > 0
        && rect.x.checked_add(rect.w).is_some_and(|r| r <= img.width)
        && rect.y.checked_add(rect.h).is_some_and(|b| b <= img.height);
    if !inside {
        return Err(Error::invalid(format!(
            "window {rect:?} is not inside the {}x{} image",
            img.width, img.height
        )));
    }
    let (plane_in, plane_out) = (img.height * img.width, height * width);
    if height == 0 || width == 0 || out.len() != img.channels * plane_out {
        return Err(Error::invalid(format!(
            "a {}-channel {height}x{width} resize needs {} floats, not {}",
            img.channels,
            img.channels * plane_out,
            out.len()
        )));
    }
    if rect.w == width && rect.h == height {
        // no resizing (28–32 px datasets at their own size): copy the window, the filter's exact result
        for c in 0..img.channels {
            for r in 0..height {
                let from = c * plane_in + (rect.y + r) * img.width + rect.x;
                let line = &img.pixels[from..from + width];
                let dst = &mut out[c * plane_out + r * width..c * plane_out + (r + 1) * width];
                for (o, d) in dst.iter_mut().enumerate() {
                    *d = f32::from(line[if flip { width - 1 - o } else { o }]);
                }
            }
        }
        return Ok(());
    }
    let xs = axis(rect.x, rect.w, width, flip);
    let ys = axis(rect.y, rect.h, height, false);
    let mut rows = vec![0f32; rect.h * width];
    for c in 0..img.channels {
        let src = &img.pixels[c * plane_in..(c + 1) * plane_in];
        for r in 0..rect.h {
            let line = &src[(rect.y + r) * img.width..(rect.y + r + 1) * img.width];
            for o in 0..width {
                let ws = &xs.weights[xs.bounds[o]..xs.bounds[o + 1]];
                let px = &line[xs.first[o]..xs.first[o] + ws.len()];
                rows[r * width + o] = ws.iter().zip(px).map(|(w, &p)| w * p as f32).sum();
            }
        }
        let dst = &mut out[c * plane_out..(c + 1) * plane_out];
        for o in 0..height {
            let ws = &ys.weights[ys.bounds[o]..ys.bounds[o + 1]];
            let first = ys.first[o] - rect.y;
            let line = &mut dst[o * width..(o + 1) * width];
            line.fill(0.0);
            for (k, &w) in ws.iter().enumerate() {
                let row = &rows[(first + k) * width..(first + k + 1) * width];
                for (d, &v) in line.iter_mut().zip(row) {
                    *d += w * v;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(img: &Image) -> Rect {
        Rect {
            x: 0,
            y: 0,
            w: img.width,
            h: img.height,
        }
    }

    fn ramp(w: usize, h: usize) -> Image {
        Image {
            pixels: (0..w * h).map(|i| (i % 256) as u8).collect(),
            channels: 1,
            height: h,
            width: w,
        }
    }

    /// Enlarging is bilinear with half-pixel centres: a row [0, 100] doubled is [0, 25, 75, 100], as
    /// torch.nn.functional.interpolate(mode="bilinear", align_corners=False) gives.
    #[test]
    fn enlarging_matches_bilinear_with_half_pixel_centres() {
        let img = Image {
            pixels: vec![0, 100, 0, 100],
            channels: 1,
            height: 2,
            width: 2,
        };
        let mut out = vec![0f32; 16];
        resample(&img, whole(&img), 4, 4, false, &mut out).unwrap();
        for row in out.chunks(4) {
            assert_eq!(row, &[0.0, 25.0, 75.0, 100.0]);
        }
    }

    /// Shrinking widens the triangle filter to the scale, as PIL's `resize(BILINEAR)` does (its
    /// `precompute_coeffs`): halving [10, 30, 50, 70], output 0 is centred at 1.0 with support 2, so the
    /// pixels centred at 0.5, 1.5, 2.5 weigh 3/4, 3/4, 1/4 (normalised: 3/7, 3/7, 1/7) and it is
    /// 170/7; output 1 is 390/7.
    #[test]
    fn shrinking_is_antialiased_like_pil() {
        let img = Image {
            pixels: vec![10, 30, 50, 70],
            channels: 1,
            height: 1,
            width: 4,
        };
        let mut out = vec![0f32; 4];
        resample(&img, whole(&img), 2, 2, false, &mut out).unwrap();
        // the single source row is stretched to 2 output rows
        for row in out.chunks(2) {
            assert!((row[0] - 170.0 / 7.0).abs() < 1e-4, "{row:?}");
            assert!((row[1] - 390.0 / 7.0).abs() < 1e-4, "{row:?}");
        }
    }

    #[test]
    fn equal_sizes_copy_and_flip_mirrors() {
        let img = ramp(5, 3);
        let rect = Rect {
            x: 1,
            y: 0,
            w: 3,
            h: 3,
        };
        let mut out = vec![0f32; 9];
        resample(&img, rect, 3, 3, false, &mut out).unwrap();
        assert_eq!(out, vec![1.0, 2.0, 3.0, 6.0, 7.0, 8.0, 11.0, 12.0, 13.0]);
        resample(&img, rect, 3, 3, true, &mut out).unwrap();
        assert_eq!(out, vec![3.0, 2.0, 1.0, 8.0, 7.0, 6.0, 13.0, 12.0, 11.0]);
    }

    #[test]
    fn the_center_square_is_central() {
        assert_eq!(
            ramp(40, 30).center_square(),
            Rect {
                x: 5,
                y: 0,
                w: 30,
                h: 30
            }
        );
        assert_eq!(
            ramp(3, 8).center_square(),
            Rect {
                x: 0,
                y: 2,
                w: 3,
                h: 3
            }
        );
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        let img = ramp(4, 4);
        let mut out = vec![0f32; 4];
        let outside = Rect {
            x: 2,
            y: 0,
            w: 3,
            h: 3,
        };
        assert!(resample(&img, outside, 2, 2, false, &mut out).is_err());
        assert!(resample(&img, whole(&img), 3, 3, false, &mut out).is_err());
        let short = Image {
            pixels: vec![0; 5],
            ..img.clone()
        };
        assert!(resample(&short, whole(&img), 2, 2, false, &mut out).is_err());
        assert!(normalize(&mut out, &[0.5, 0.5, 0.5], &[0.5, 0.5, 0.5]).is_err());
        assert!(normalize(&mut out, &[0.5], &[]).is_err());
        normalize(&mut out, &[0.5], &[0.5]).unwrap();
        assert!(decode(b"not an image", 1, Path::new("x.png")).is_err());
        assert!(decode(b"not an image", 2, Path::new("x.png")).is_err());
    }

    #[test]
    fn oversized_images_are_refused_and_exif_orientation_is_applied() {
        // wider than the limit: refused by the decoder's limits, with the limit named
        let wide = image::GrayImage::new(MAX_IMAGE_SIDE + 1, 1);
        let mut png = Vec::new();
        image::DynamicImage::ImageLuma8(wide)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let err = decode(&png, 1, Path::new("wide.png"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("wide.png") && err.contains("8192"), "{err}");

        // a 16x8 JPEG whose EXIF says "rotate 90° clockwise" (orientation 6) decodes as 8x16
        let img = image::GrayImage::from_fn(16, 8, |x, _| image::Luma([(x * 16) as u8]));
        let mut jpeg = Vec::new();
        image::DynamicImage::ImageLuma8(img)
            .write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        let mut exif = b"Exif\0\0II\x2a\0\x08\0\0\0\x01\0".to_vec();
        exif.extend([0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0]);
        let mut tagged = vec![0xff, 0xd8, 0xff, 0xe1];
        tagged.extend(((exif.len() + 2) as u16).to_be_bytes());
        tagged.extend(&exif);
        tagged.extend(&jpeg[2..]);
        let plain = decode(&jpeg, 1, Path::new("p.jpg")).unwrap();
        assert_eq!((plain.width, plain.height), (16, 8));
        let turned = decode(&tagged, 1, Path::new("t.jpg")).unwrap();
        assert_eq!((turned.width, turned.height), (8, 16));
        // turned clockwise: the left column (dark) is now the top row
        assert!(turned.pixels[0] < 40 && turned.pixels[turned.pixels.len() - 1] > 200);
    }

    #[test]
    fn decoding_a_png_gives_planar_rgb_and_luma() {
        // 2x1 RGB: a red and a blue pixel
        let rgb = image::RgbImage::from_raw(2, 1, vec![255, 0, 0, 0, 0, 255]).unwrap();
        let mut png = Vec::new();
        image::DynamicImage::ImageRgb8(rgb)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let img = decode(&png, 3, Path::new("t.png")).unwrap();
        assert_eq!((img.channels, img.height, img.width), (3, 1, 2));
        assert_eq!(img.pixels, vec![255, 0, 0, 0, 0, 255]);
        let grey = decode(&png, 1, Path::new("t.png")).unwrap();
        assert_eq!(grey.channels, 1);
        // luma weights red more than blue (Rec. 709: 0.2126 vs 0.0722)
        assert!(grey.pixels[0] > grey.pixels[1], "{:?}", grey.pixels);
    }
}
