//! A progress bar on stderr for long sweeps, drawn only when stderr is a terminal.

use std::borrow::Cow;
use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Counts the steps of a benchmark run (one per size and transport, say) on stderr.
///
/// Results go to stdout and the bar to stderr, so `onecopy bench ... > results.json` keeps a clean
/// file and still shows progress. When stderr is not a terminal (a pipe, a CI log) nothing is
/// drawn at all.
///
/// The bar is redrawn only from [`step`](Progress::step) and friends, on the calling thread: it
/// never starts indicatif's steady-tick thread. Benchmarks fork processes while the bar is alive,
/// and a second thread holding the terminal or allocator lock at the moment of `fork` would leave
/// the child deadlocked on a lock nobody will release.
///
/// ```
/// let progress = onecopy::bench::Progress::new(2, "mechanisms");
/// progress.step("4K cma-read");
/// progress.step("4K shm-copy");
/// progress.finish();
/// ```
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar of `total_steps` steps, shown with `label` in front.
    pub fn new(total_steps: u64, label: &str) -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        // The template is a constant, so this fallback is only a guard against a future indicatif
        // rejecting it; the default bar would still count.
        let style = ProgressStyle::with_template(
            "{prefix:>12} [{bar:30}] {pos}/{len} {elapsed:>4} {wide_msg}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = ProgressBar::with_draw_target(Some(total_steps), target)
            .with_style(style)
            .with_prefix(label.to_string());
        Progress { bar }
    }

    /// Advances by one step and shows `msg` (what was just measured, or what comes next).
    pub fn step(&self, msg: impl Into<Cow<'static, str>>) {
        self.bar.set_message(msg);
        self.bar.inc(1);
    }

    /// Shows `msg` without advancing.
    pub fn set_message(&self, msg: impl Into<Cow<'static, str>>) {
        self.bar.set_message(msg);
    }

    /// Prints `line` to stderr above the bar, without tearing it (and as a plain line when the bar
    /// is hidden, so warnings still reach a log).
    pub fn note(&self, line: &str) {
        self.bar.suspend(|| eprintln!("{line}"));
    }

    /// Steps taken so far.
    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// Removes the bar from the terminal; the results printed next start on a clean line.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_steps_without_a_terminal() {
        let p = Progress::new(3, "test");
        p.step("one");
        p.step(format!("two {}", 2));
        p.set_message("three next");
        assert_eq!(p.position(), 2);
        p.finish();
    }
}
