//! Progress bars shared by the long-running commands.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `total` steps with a message slot for the current item and an ETA.
pub fn bar(total: usize, done: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_position(done as u64);
    bar
}

/// One bar per phase of an epoch (`train`, `val`; a search's `search`, `weights`, `theta`): a new bar
/// starts when the epoch or the phase changes, the previous one ends (kept on screen or cleared).
pub struct PhaseBars {
    current: Option<(usize, &'static str, ProgressBar)>,
    keep: bool,
}

impl PhaseBars {
    /// `keep`: finished bars stay on screen (a search's phases) or are cleared (training's).
    pub fn new(keep: bool) -> PhaseBars {
        PhaseBars {
            current: None,
            keep,
        }
    }

    /// The bar of `phase` of `epoch`, of `steps` steps; a fresh one if the phase changed.
    pub fn at(&mut self, epoch: usize, phase: &'static str, steps: usize) -> &ProgressBar {
        if self
            .current
            .as_ref()
            .is_none_or(|(e, ph, _)| *e != epoch || *ph != phase)
        {
            self.end();
            self.current = Some((epoch, phase, bar(steps, 0)));
        }
        &self.current.as_ref().expect("set above").2
    }

    /// Ends the current bar, if any.
    pub fn end(&mut self) {
        if let Some((_, _, b)) = self.current.take() {
            if self.keep {
                b.finish();
            } else {
                b.finish_and_clear();
            }
        }
    }
}
