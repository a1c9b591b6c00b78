//! A progress bar on stderr for long simulations: simulated seconds done of
//! the run's duration. It appears only once the run has taken a few seconds
//! of wall-clock time (a short run would only flicker) and only when stderr
//! is a terminal, so pipes, files and tests see no trace of it.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Wall-clock time before the bar shows.
const SHOW_AFTER: Duration = Duration::from_secs(3);

/// The bar, if the run is long enough to deserve one.
pub(super) struct Progress {
    total: Duration,
    started: Instant,
    /// Whether a bar may ever show (stderr is a terminal).
    allowed: bool,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar for a run of `total` simulated time, not shown yet.
    pub(super) fn new(total: Duration) -> Self {
        Self {
            total,
            started: Instant::now(),
            allowed: std::io::stderr().is_terminal(),
            bar: None,
        }
    }

    /// The run has reached `simulated`.
    pub(super) fn reached(&mut self, simulated: Duration) {
        if self.bar.is_none() && self.allowed && self.started.elapsed() >= SHOW_AFTER {
            self.bar = Some(self.bar());
        }
        if let Some(bar) = &self.bar {
            bar.set_position(simulated.as_secs());
        }
    }

    fn bar(&self) -> ProgressBar {
        // Shown late: its clock starts with the run, not with the bar.
        let bar =
            ProgressBar::with_draw_target(Some(self.total.as_secs()), ProgressDrawTarget::stderr())
                .with_elapsed(self.started.elapsed());
        let style = ProgressStyle::with_template(
            "{spinner} simulated {pos}/{len} s [{bar:30}] {elapsed} elapsed, about {eta} left",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        // The samples of a large scope may be a minute apart: keep the
        // spinner and the elapsed time moving in between.
        bar.enable_steady_tick(Duration::from_millis(250));
        bar
    }

    /// Runs `print` with the bar out of the way, so that what it writes to
    /// the same terminal is not drawn over.
    pub(super) fn suspend<R>(&self, print: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    /// Removes the bar.
    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// Whether the bar is on screen.
    pub(super) fn shown(&self) -> bool {
        self.bar.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_shows_without_a_terminal_or_in_a_short_run() {
        let mut p = Progress::new(Duration::from_secs(600));
        p.allowed = false;
        p.started -= 2 * SHOW_AFTER;
        p.reached(Duration::from_secs(10));
        assert!(!p.shown(), "stderr is no terminal");
        let mut p = Progress::new(Duration::from_secs(600));
        p.allowed = true;
        p.reached(Duration::from_secs(10));
        assert!(!p.shown(), "the run has just started");
        p.started -= 2 * SHOW_AFTER;
        p.reached(Duration::from_secs(20));
        assert!(p.shown(), "a long run on a terminal");
        p.finish();
    }
}
