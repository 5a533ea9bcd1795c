//! Seeing what runs (Cargo feature `tracing`; README's "Seeing what runs"): a
//! `tracing` span per task attempt, a recording of a run written as a Chrome trace
//! file and an HTML report ([`Recording`]), and the blocking detector.
//!
//! **Spans.** Each attempt of a task is a span named `task` (target
//! `concurrency_runtime::task`, level INFO), entered around every poll or run, with
//! the fields `task`, `placement`, `attempt`, `call_site`, and on close `outcome`,
//! `wait_us`, `run_us`, and for a process task `worker_pid` and `worker_run_us`. Its
//! parent is the span current where the task was called.
//!
//! **A recording.** [`Recording::start`] opens one, [`Recording::finish`] closes it
//! and gives a [`Timeline`]: [`Timeline::write_chrome_trace`] (for Perfetto or
//! `chrome://tracing`: a track per thread and per worker process, an async track per
//! task call) and [`Timeline::write_html_report`] (a self-contained page: the timeline
//! as SVG and a table per function with p50/p99 of wait and run time).
//!
//! **The blocking detector.** Every poll of an async task passes through the
//! library's guard; with the feature on, the guard times the polls of a task made
//! while a subscriber that takes WARN is installed (install it at the start of
//! `main`). A poll longer than the
//! threshold (default 10 ms, from [`set_blocking_threshold`] or the environment
//! variable `CONCURRENCY_BLOCKING_MS`; zero turns the detector off) means the task
//! blocked its executor thread: every other task on that thread waited. It is
//! reported once per call site, as a `tracing` warning (target
//! `concurrency_runtime::blocking`) with the task's name, the call site and the poll's
//! duration, and a hint: blocking work belongs in an `#[io_task] fn` (a blocking
//! thread) or a `#[cpu_task]` (rayon); a recording marks such polls too. (A task
//! made by a function passed by name, as in `.map(fetch)`, has no call site of its
//! own: it is reported once per task name.) The poll is timed by the wall clock, so a
//! thread that the operating system took off its core for longer than the threshold
//! is reported too: on a loaded machine, set a threshold well above its scheduling
//! delays.
//!
//! Cost: with no subscriber installed and no recording open, no span is made and no
//! clock read; see README for the figures. With the feature off, nothing of this is
//! compiled: a task value carries no call site and a poll is not timed.

#[cfg(feature = "tracing")]
use std::panic::Location;

#[cfg(feature = "tracing")]
mod chrome;
#[cfg(feature = "tracing")]
mod clock;
mod detector;
#[cfg(feature = "tracing")]
mod record;
#[cfg(feature = "tracing")]
mod report;
mod span;

pub(crate) use detector::Watch;
#[cfg(feature = "tracing")]
pub use detector::{blocking_threshold, set_blocking_threshold};
#[cfg(feature = "tracing")]
pub use record::{AttemptRecord, FunctionStats, Recording, Timeline, WorkerRun};
#[cfg(feature = "tracing")]
pub(crate) use span::observed_call;
pub(crate) use span::{Attempt, Origin, dropped_because};

/// Where a task was called, if anyone observed when it was made (with the feature;
/// nothing without it).
#[cfg(feature = "tracing")]
pub(crate) type Site = Option<&'static Location<'static>>;
/// Where a task was called (with the feature; nothing without it).
#[cfg(not(feature = "tracing"))]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Site;

/// Whether anyone may observe a task now: a recording is open, or a subscriber takes
/// WARN (the blocking detector) or more (spans). Two relaxed loads.
#[cfg(feature = "tracing")]
#[inline(always)]
pub(crate) fn observing() -> bool {
    record::is_open() || tracing::level_enabled!(tracing::Level::WARN)
}

/// Monotonic nanoseconds when a recording is open and `call` is recorded (0
/// otherwise): the start of a wait that [`waited`] records.
#[inline]
pub(crate) fn wait_starts(call: u64) -> u64 {
    #[cfg(feature = "tracing")]
    if call != 0 && record::is_open() {
        return clock::now();
    }
    let _ = call;
    0
}

/// `call` waited for its limit (or, `backoff`, before a retry) since `start` (from
/// [`wait_starts`]; nothing is recorded for 0).
#[inline]
pub(crate) fn waited(call: u64, backoff: bool, start: u64) {
    #[cfg(feature = "tracing")]
    if start != 0 {
        let what = if backoff {
            record::Waited::Backoff
        } else {
            record::Waited::Limit
        };
        record::waited(call, what, start);
    }
    let _ = (call, backoff, start);
}

/// The supervision's verdict on attempt `number` of `call`, which the attempt itself
/// could not see (its deadline passed).
#[inline]
pub(crate) fn mark(call: u64, number: u32, what: &'static str) {
    #[cfg(feature = "tracing")]
    record::mark(call, number, what);
    let _ = (call, number, what);
}

/// Monotonic nanoseconds for a worker process's timings of a task (0 without the
/// feature: nobody reads them).
#[cfg(all(feature = "process", target_os = "linux"))]
#[inline]
pub(crate) fn worker_clock() -> u64 {
    #[cfg(feature = "tracing")]
    {
        clock::now()
    }
    #[cfg(not(feature = "tracing"))]
    {
        0
    }
}

#[cfg(all(test, feature = "tracing"))]
mod tests {
    /// README cannot compile its recording example (it needs this feature): it is
    /// `Timeline`'s doctest, and must stay the same text.
    #[test]
    fn the_readme_s_recording_example_is_this_module_s_doctest() {
        let readme = include_str!("../../../README.md");
        let fence = "```rust,ignore\nuse concurrency_runtime::observe::Recording;";
        let start =
            readme.find(fence).expect("README's recording example") + "```rust,ignore\n".len();
        let length = readme[start..].find("```\n").expect("the example's end");
        let example = &readme[start..start + length];
        let module: String = include_str!("record.rs")
            .lines()
            .filter_map(|line| line.strip_prefix("/// ").or((line == "///").then_some("")))
            .map(|line| format!("{line}\n"))
            .collect();
        assert!(
            module.contains(example),
            "README's recording example differs from Timeline's doctest:\n{example}"
        );
    }
}
