//! What the search and training runs share: their folder's files (a configuration, one metrics line per
//! epoch, checkpoints installed atomically), the running tallies of a phase, and the two ways a run stops
//! early (cancelled, or a loss that is not a number) without losing its last checkpoint.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use candle_core::{D, DType, Tensor};
use serde::Serialize;
use serde::de::DeserializeOwned;

use mobile_core::files::{rename_durable, sync_folder, write_atomic};

/// A run folder and the names of the files every run keeps there.
#[derive(Clone, Debug)]
pub struct RunDir(pub PathBuf);

impl RunDir {
    pub fn config(&self) -> PathBuf {
        self.0.join("config.json")
    }
    pub fn metrics(&self) -> PathBuf {
        self.0.join("metrics.jsonl")
    }
    pub fn checkpoint(&self) -> PathBuf {
        self.0.join("checkpoint")
    }
    pub fn result(&self) -> PathBuf {
        self.0.join("result.json")
    }

    /// The configuration the run was started with; `what` (`search`, `training`) names the kind of run
    /// in errors.
    pub fn load_config<C: DeserializeOwned>(&self, what: &str) -> Result<C> {
        let text = fs::read_to_string(self.config())
            .with_context(|| format!("{}: not a {what} run folder", self.0.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not a {what} configuration", self.config().display()))
    }

    /// The configuration a resumed run continues with: the folder's own, refusing a `cfg` that is not
    /// the same run's (`same` compares the two, e.g. with their paths made absolute).
    pub fn resumed<C: DeserializeOwned>(
        &self,
        cfg: &C,
        what: &str,
        same: impl Fn(&C, &C) -> bool,
    ) -> Result<C> {
        let stored = self.load_config::<C>(what)?;
        anyhow::ensure!(
            same(&stored, cfg),
            "{}: the run was started with another configuration; resume it with the same one",
            self.config().display()
        );
        Ok(stored)
    }

    /// Starts a new run: refuses a folder that already holds one, then writes the configuration and an
    /// empty metrics file.
    pub fn create<C: Serialize>(&self, cfg: &C, what: &str) -> Result<()> {
        if self.result().exists() || self.checkpoint().exists() {
            bail!(
                "{} already holds a {what} run: pass --resume to continue it, or choose another --out",
                self.0.display()
            );
        }
        fs::create_dir_all(&self.0)
            .with_context(|| format!("{}: cannot create", self.0.display()))?;
        write_atomic(
            &self.config(),
            serde_json::to_string_pretty(cfg)?.as_bytes(),
        )?;
        Ok(write_atomic(&self.metrics(), b"")?)
    }

    /// Whether there is a checkpoint to resume from (complete, or the previous one kept while a new one
    /// was being installed).
    pub fn has_checkpoint(&self) -> bool {
        let dir = self.checkpoint();
        dir.exists() || dir.with_extension("old").exists()
    }

    /// Ends an epoch: its metrics line first, then `save` installs the checkpoint. A kill between the
    /// two reruns the epoch on resume, and [`truncate_metrics`] keeps its later line; the other order
    /// could lose the line for good.
    pub fn end_epoch(
        &self,
        metrics: &impl Serialize,
        save: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        append_line(&self.metrics(), &serde_json::to_string(metrics)?)?;
        save()
    }
}

/// Writes a checkpoint folder: `fill` writes into a fresh folder, whose files are then flushed to disk
/// and which is renamed over `dir`, so a kill or a power loss at any moment leaves either the previous or
/// the new checkpoint complete.
pub fn write_checkpoint(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = dir.with_extension("tmp");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("{}: cannot remove", tmp.display()))?;
    }
    fs::create_dir_all(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
    fill(&tmp)?;
    for entry in fs::read_dir(&tmp).with_context(|| format!("{}: cannot list", tmp.display()))? {
        let path = entry?.path();
        fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("{}: cannot sync", path.display()))?;
    }
    sync_folder(&tmp)?;
    let old = dir.with_extension("old");
    if dir.exists() {
        rename_durable(dir, &old)?;
    }
    rename_durable(&tmp, dir)?;
    if old.exists() {
        fs::remove_dir_all(&old).with_context(|| format!("{}: cannot remove", old.display()))?;
    }
    Ok(())
}

/// The folder to read a checkpoint from: `dir`, or the previous checkpoint if a kill came between
/// moving it aside and installing the new one.
pub fn checkpoint_to_read(dir: &Path) -> PathBuf {
    if dir.exists() {
        dir.to_path_buf()
    } else {
        dir.with_extension("old")
    }
}

/// Reads a checkpoint's `meta.json`.
pub fn read_meta<M: DeserializeOwned>(dir: &Path, what: &str) -> Result<M> {
    let file = dir.join("meta.json");
    let text = fs::read_to_string(&file)
        .with_context(|| format!("{}: no checkpoint to resume from", file.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a {what} checkpoint", file.display()))
}

/// Appends one line and syncs it: a metrics line written is never lost to a crash.
pub fn append_line(path: &Path, line: &str) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("{}: cannot append", path.display()))?;
    writeln!(f, "{line}").with_context(|| format!("{}: cannot append", path.display()))?;
    f.sync_data()
        .with_context(|| format!("{}: cannot sync", path.display()))
}

/// Keeps the metrics lines of the epochs the checkpoint covers (`epoch` field 1..=`epochs`). A line is
/// appended before its epoch's checkpoint is installed, so a kill between the two leaves one line more
/// than the checkpoint covers; that epoch runs again on resume and writes its line again. A metrics file
/// that cannot be read, or a line that is not an epoch record, is an error: it is never replaced by an
/// empty file.
pub fn truncate_metrics(path: &Path, epochs: usize) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Epoch {
        epoch: usize,
    }
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && epochs == 0 => String::new(),
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "{}: cannot read the metrics of the {epochs} checkpointed epochs",
                    path.display()
                )
            });
        }
    };
    // Epoch → line; a repeated epoch (rerun after a kill) keeps its later line.
    let mut lines = std::collections::BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let record: Epoch = serde_json::from_str(line).with_context(|| {
            format!("{}: line {} is not an epoch record", path.display(), i + 1)
        })?;
        if (1..=epochs).contains(&record.epoch) {
            lines.insert(record.epoch, line);
        }
    }
    if lines.len() < epochs {
        // Only a run folder of an earlier release, which checkpointed before appending, can lack one.
        let missing: Vec<String> = (1..=epochs)
            .filter(|e| !lines.contains_key(e))
            .map(|e| e.to_string())
            .collect();
        eprintln!(
            "warning: {}: no metrics line for epoch {} (lost before this release's fix); resuming without it",
            path.display(),
            missing.join(", ")
        );
    }
    let kept: String = lines.values().map(|l| format!("{l}\n")).collect();
    Ok(write_atomic(path, kept.as_bytes())?)
}

/// Reads a run's metrics, one record per line.
pub fn read_metrics<M: DeserializeOwned>(run: &RunDir) -> Result<Vec<M>> {
    let path = run.metrics();
    let text =
        fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| {
                format!("{}: line {} is not an epoch record", path.display(), i + 1)
            })
        })
        .collect()
}

/// Running cross-entropy and accuracy of one phase of an epoch.
#[derive(Default)]
pub struct Tally {
    ce_sum: f64,
    pub correct: usize,
    pub seen: usize,
}

impl Tally {
    pub fn add(&mut self, ce: f64, correct: usize, n: usize) {
        self.ce_sum += ce * n as f64;
        self.correct += correct;
        self.seen += n;
    }
    pub fn ce(&self) -> f64 {
        self.ce_sum / self.seen.max(1) as f64
    }
    pub fn acc(&self) -> f64 {
        self.correct as f64 / self.seen.max(1) as f64
    }
}

/// A batch moved into tensors on `device`: images `[n, c, h, w]` and labels `[n]`.
pub fn batch_tensors(
    b: crate::data::Batch,
    device: &candle_core::Device,
) -> Result<(Tensor, Tensor)> {
    let [n, c, h, w] = b.shape;
    Ok((
        Tensor::from_vec(b.images, (n, c, h, w), device)?,
        Tensor::from_vec(b.labels, n, device)?,
    ))
}

/// The number of rows of `logits` whose largest entry is at the label.
pub fn correct(logits: &Tensor, labels: &Tensor) -> Result<usize> {
    Ok(logits
        .argmax(D::Minus1)?
        .eq(labels)?
        .to_dtype(DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()? as usize)
}

/// Cross-entropy and the number of correct predictions of a batch.
pub fn ce_and_correct(logits: &Tensor, labels: &Tensor) -> Result<(Tensor, usize)> {
    let ce = candle_nn::loss::cross_entropy(logits, labels)?;
    Ok((ce, correct(logits, labels)?))
}

/// Stops the run when `cancel` is set, naming the checkpoint that remains.
pub fn stop_if_cancelled(cancel: &AtomicBool, epoch: usize, run: &RunDir) -> Result<()> {
    if cancel.load(Ordering::Relaxed) {
        bail!(
            "cancelled; the checkpoint of epoch {epoch} remains in {}",
            run.checkpoint().display()
        );
    }
    Ok(())
}

/// `v`, or an error that stops the run and says how to go on from its last checkpoint.
pub fn finite(v: f64, what: &str, epoch: usize, step: usize, run: &RunDir) -> Result<f64> {
    if !v.is_finite() {
        bail!(
            "epoch {} step {step}: the {what} is {v}, not a finite number; the run stopped. The checkpoint \
             in {} holds the last good epoch: resume with a lower --lr",
            epoch + 1,
            run.checkpoint().display()
        );
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_the_checkpointed_epochs_by_their_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        // Epoch 2 ran twice (killed after its line, before its checkpoint), then epoch 3's line was
        // written before a kill: the checkpoint covers 2 epochs.
        let text = "{\"epoch\":1,\"x\":1}\n{\"epoch\":2,\"x\":2}\n{\"epoch\":2,\"x\":3}\n{\"epoch\":3,\"x\":4}\n";
        fs::write(&path, text).unwrap();
        truncate_metrics(&path, 2).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "{\"epoch\":1,\"x\":1}\n{\"epoch\":2,\"x\":3}\n"
        );
    }

    #[test]
    fn truncation_never_turns_a_bad_file_into_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.jsonl");
        let err = truncate_metrics(&missing, 1).unwrap_err();
        assert!(format!("{err:#}").contains("missing.jsonl"), "{err:#}");
        assert!(!missing.exists());
        truncate_metrics(&missing, 0).unwrap();
        let bad = dir.path().join("bad.jsonl");
        fs::write(&bad, "{\"epoch\":1}\nnot json\n").unwrap();
        let err = truncate_metrics(&bad, 1).unwrap_err();
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
        assert_eq!(
            fs::read_to_string(&bad).unwrap(),
            "{\"epoch\":1}\nnot json\n"
        );
    }
}
