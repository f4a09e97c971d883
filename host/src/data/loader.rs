//! Batches for the trainer: reading, decoding and augmenting run on background threads, ahead of the
//! training step, through bounded channels, so the step does not wait on I/O and memory stays bounded.
//!
//! Deterministic by construction: the order of an epoch is a shuffle seeded by (seed, epoch), and sample
//! `p` of that order is augmented with a generator seeded by (seed, epoch, p). Which thread does the
//! work never enters, so any number of workers, and any run, gives the same batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use mobile_core::rng::SplitMix;
use serde::{Deserialize, Serialize};

use super::{Augment, Source};

/// How to batch one pass over a set of samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoaderConfig {
    /// Samples per batch (the last batch may be smaller unless `drop_last`).
    pub batch_size: usize,
    /// Threads that read and augment, each building whole batches; 0 builds each batch on the caller's
    /// thread when it is asked for (no background work, for tests and debugging).
    pub workers: usize,
    /// Finished batches that may wait for the consumer, in total over the workers (rounded up to a
    /// multiple of `workers`); each worker also holds the batch it is building.
    pub prefetch: usize,
    /// Visit the samples in a new random order every epoch (training); otherwise in the given order.
    pub shuffle: bool,
    /// Leave out a last, smaller batch (keeps batch-norm statistics and step sizes uniform).
    pub drop_last: bool,
    /// Seeds the order of every epoch and every sample's augmentation.
    pub seed: u64,
    pub augment: Augment,
}

/// One batch: `shape` is `[n, channels, size, size]` of `images` (planar f32, normalised).
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub images: Vec<f32>,
    /// Class of each image.
    pub labels: Vec<u32>,
    /// Index in the source of each image (to trace a sample back to its file).
    pub indices: Vec<usize>,
    pub shape: [usize; 4],
}

/// Number of batches of `batch_size` in `n` samples.
pub fn batch_count(n: usize, batch_size: usize, drop_last: bool) -> usize {
    match batch_size {
        0 => 0,
        b if drop_last => n / b,
        b => n.div_ceil(b),
    }
}

/// A seed for the sub-stream `stream` of `seed`: distinct streams give unrelated generators (SplitMix
/// mixes the combined state), and for one `seed` distinct streams never collide.
fn derive(seed: u64, stream: u64) -> u64 {
    let mut rng = SplitMix::new(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
    rng.next_u64();
    rng.next_u64()
}

/// The order in which an epoch visits `indices`: shuffled with (seed, epoch) when `shuffle`, else as
/// given.
pub fn epoch_order(indices: &[usize], shuffle: bool, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order = indices.to_vec();
    if shuffle {
        SplitMix::new(derive(derive(seed, epoch), u64::MAX)).shuffle(&mut order);
    }
    order
}

/// What every worker shares: the source, the epoch's order and how to turn samples into batches.
struct Job {
    source: Arc<dyn Source>,
    order: Vec<usize>,
    batch_size: usize,
    augment: Augment,
    epoch_seed: u64,
    stop: AtomicBool,
    /// Nanoseconds spent building batches and images built, over all threads.
    busy_ns: AtomicU64,
    built: AtomicU64,
}

impl Job {
    /// [`Job::build`], timed for [`Loader::stats`].
    fn batch(&self, b: usize) -> Result<Batch> {
        let t = Instant::now();
        let batch = self.build(b);
        self.busy_ns
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        if let Ok(batch) = &batch {
            self.built
                .fetch_add(batch.labels.len() as u64, Ordering::Relaxed);
        }
        batch
    }

    /// Batch `b` of the epoch, built sample by sample; gives up early once the loader is dropped.
    fn build(&self, b: usize) -> Result<Batch> {
        let positions = b * self.batch_size..((b + 1) * self.batch_size).min(self.order.len());
        let n = positions.len();
        let (c, s) = (self.augment.channels(), self.augment.size);
        let per = self.augment.output_len();
        let mut batch = Batch {
            images: vec![0.0; n * per],
            labels: Vec::with_capacity(n),
            indices: Vec::with_capacity(n),
            shape: [n, c, s, s],
        };
        for (k, p) in positions.enumerate() {
            if self.stop.load(Ordering::Relaxed) {
                bail!("loader stopped");
            }
            let i = self.order[p];
            let img = self.source.read(i)?;
            let mut rng = SplitMix::new(derive(self.epoch_seed, p as u64));
            self.augment
                .apply(&img, &mut rng, &mut batch.images[k * per..(k + 1) * per])?;
            batch.labels.push(self.source.label(i));
            batch.indices.push(i);
        }
        Ok(batch)
    }
}

/// The batches of one epoch, in order; an iterator of `Result`, since reading a sample can fail (the
/// error names the file; later batches still come). Dropping it stops and joins its threads.
pub struct Loader {
    job: Arc<Job>,
    /// The first batch this loader delivers.
    first: usize,
    next: usize,
    count: usize,
    /// Batch `b` arrives on `receivers[(b - first) % receivers.len()]`; empty when batches are built
    /// inline.
    receivers: Vec<Receiver<Result<Batch>>>,
    threads: Vec<JoinHandle<()>>,
    /// Time the consumer spent in `next` (waiting for a worker, or building inline).
    waited: Duration,
}

/// How a loader kept up with its consumer, so far in its epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoaderStats {
    /// Seconds the consumer waited for batches: the time a training step stood idle for data.
    pub waited_s: f64,
    /// Images per second the loader's threads can build together (images built over the threads' busy
    /// time, times the number of threads): what the data side could feed a step that never waited.
    pub images_per_second: f64,
    /// Images built so far (also those still waiting in the channels).
    pub images: u64,
    /// Threads building batches (0: built on the consumer's thread).
    pub workers: usize,
}

/// One epoch of batches of the samples `indices` of `source`, in the order [`epoch_order`] gives. Starts
/// `cfg.workers` threads that build batches ahead of the consumer. Fails at once, before any thread
/// starts, on a zero batch size, an index out of range, or an augmentation for other channels than the
/// source's.
pub fn batches(
    source: Arc<dyn Source>,
    indices: &[usize],
    cfg: &LoaderConfig,
    epoch: u64,
) -> Result<Loader> {
    batches_from(source, indices, cfg, epoch, 0)
}

/// The batches of an epoch from batch `first` on, exactly as [`batches`] would deliver them after
/// `first` batches: a consumer that stopped part-way through an epoch (the search's θ batches, which
/// cycle their split across the weights' epochs) resumes it without building the batches it had.
pub fn batches_from(
    source: Arc<dyn Source>,
    indices: &[usize],
    cfg: &LoaderConfig,
    epoch: u64,
    first: usize,
) -> Result<Loader> {
    ensure!(cfg.batch_size > 0, "batch size must be positive");
    if let Some(&i) = indices.iter().find(|&&i| i >= source.len()) {
        bail!(
            "sample index {i} is out of range for a source of {} samples",
            source.len()
        );
    }
    cfg.augment.check(source.channels())?;
    let count = batch_count(indices.len(), cfg.batch_size, cfg.drop_last);
    let job = Arc::new(Job {
        source,
        order: epoch_order(indices, cfg.shuffle, cfg.seed, epoch),
        batch_size: cfg.batch_size,
        augment: cfg.augment.clone(),
        epoch_seed: derive(cfg.seed, epoch),
        stop: AtomicBool::new(false),
        busy_ns: AtomicU64::new(0),
        built: AtomicU64::new(0),
    });
    let first = first.min(count);
    let mut loader = Loader {
        job,
        first,
        next: first,
        count,
        receivers: Vec::new(),
        threads: Vec::new(),
        waited: Duration::ZERO,
    };
    let workers = cfg.workers.min(count - first);
    let capacity = cfg.prefetch.div_ceil(workers.max(1));
    for w in 0..workers {
        let (tx, rx) = sync_channel(capacity);
        let job = Arc::clone(&loader.job);
        let thread = std::thread::Builder::new()
            .name(format!("fbnet-loader-{w}"))
            .spawn(move || work(&job, first + w, workers, count, tx))
            .context("cannot start a loader thread")?;
        loader.receivers.push(rx);
        loader.threads.push(thread);
    }
    Ok(loader)
}

/// A worker builds batches `start`, `start + workers`, … and hands them over in order; it ends when its
/// batches are done or the loader is gone.
fn work(job: &Job, start: usize, workers: usize, count: usize, tx: SyncSender<Result<Batch>>) {
    for b in (start..count).step_by(workers) {
        if job.stop.load(Ordering::Relaxed) {
            return;
        }
        if tx.send(job.batch(b)).is_err() {
            return;
        }
    }
}

impl Loader {
    /// Batches this epoch still has to deliver.
    pub fn remaining(&self) -> usize {
        self.count - self.next
    }

    /// How the data side kept up so far.
    pub fn stats(&self) -> LoaderStats {
        let busy = self.job.busy_ns.load(Ordering::Relaxed) as f64 * 1e-9;
        let workers = self.receivers.len().max(1);
        let built = self.job.built.load(Ordering::Relaxed) as f64;
        LoaderStats {
            waited_s: self.waited.as_secs_f64(),
            images_per_second: if busy > 0.0 {
                built * workers as f64 / busy
            } else {
                0.0
            },
            images: built as u64,
            workers: self.receivers.len(),
        }
    }
}

impl Iterator for Loader {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.next >= self.count {
            return None;
        }
        let t = Instant::now();
        let item = self.take();
        self.waited += t.elapsed();
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining(), Some(self.remaining()))
    }
}

impl Loader {
    /// The next batch (there is one): built here without workers, else from its worker's channel.
    fn take(&mut self) -> Result<Batch> {
        let b = self.next;
        self.next += 1;
        if self.receivers.is_empty() {
            return self.job.batch(b);
        }
        let w = (b - self.first) % self.receivers.len();
        match self.receivers[w].recv() {
            Ok(item) => item,
            Err(_) => {
                // the worker is gone without its batch: it panicked; nothing more will come in order
                self.next = self.count;
                Err(anyhow!(
                    "loader thread {w} stopped without delivering batch {b}"
                ))
            }
        }
    }
}

impl ExactSizeIterator for Loader {}

impl Drop for Loader {
    /// Tells the workers to stop, disconnects their channels (a worker blocked on a full one wakes with
    /// an error) and waits for them, so no thread outlives the loader.
    fn drop(&mut self) {
        self.job.stop.store(true, Ordering::Relaxed);
        self.receivers.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
