//! Times the data side alone: one epoch of the loader over an image folder (or any `--data` spec), with
//! the training augmentation of photos at 224 px (random-resized crop, flip, normalisation), on N
//! threads, and prints images per second, so the rate a GPU needs can be set against what the cores
//! deliver (`README.md`, "Training on a GPU"):
//! `cargo run --release -p fbnet --example loader_rate -- DATA [--workers N] [--batch N] [--images N]`

use std::time::Instant;

use fbnet::data::{self, Augment, LoaderConfig};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let spec = args.first().ok_or_else(|| {
        anyhow::anyhow!("usage: loader_rate DATA [--workers N] [--batch N] [--images N]")
    })?;
    let source = data::open(spec, true, Some(3))?;
    let images = flag("--images", source.len()).min(source.len());
    let workers = flag("--workers", 1);
    let cfg = LoaderConfig {
        batch_size: flag("--batch", 64),
        workers,
        prefetch: 2 * workers.max(1),
        shuffle: true,
        drop_last: false,
        seed: 1,
        augment: Augment::train_photo(224),
    };
    let indices: Vec<usize> = (0..images).collect();
    let started = Instant::now();
    let mut loader = data::batches(source, &indices, &cfg, 0)?;
    for batch in loader.by_ref() {
        batch?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let stats = loader.stats();
    println!(
        "{}",
        serde_json::json!({
            "images": stats.images,
            "workers": workers,
            "seconds": seconds,
            "images_per_s": stats.images as f64 / seconds,
            "loader_images_per_s": stats.images_per_second,
        })
    );
    Ok(())
}
