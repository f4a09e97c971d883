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
