//! Progress bars (indicatif) for the library's [`Progress`] reports.

use furcate_core::progress::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Draws one bar per stage on stderr, or nothing with `--quiet`.
#[derive(Debug)]
pub struct Bars {
    quiet: bool,
    bar: Option<ProgressBar>,
}

impl Bars {
    /// Bars unless `quiet`.
    pub fn new(quiet: bool) -> Self {
        Bars { quiet, bar: None }
    }
}

impl Progress for Bars {
    fn start(&mut self, stage: &str, total: u64) {
        if self.quiet {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{prefix:>20} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}")
                .expect("the template is valid")
                .progress_chars("=> "),
        );
        bar.set_prefix(stage.to_string());
        self.bar = Some(bar);
    }

    fn advance(&mut self, done: u64, message: Option<&str>) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            if let Some(m) = message {
                bar.set_message(m.to_string());
            }
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}
