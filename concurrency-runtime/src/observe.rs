//! Seeing what runs (Cargo feature `tracing`): a span per task attempt (see
//! `Attempt`, and README's "Seeing what runs"), and the blocking detector.
//!
//! Every poll of an async task passes through the library's guard; with the feature
//! on, the guard times it. A poll longer than the threshold (default 10 ms, from
//! [`set_blocking_threshold`] or the environment variable `CONCURRENCY_BLOCKING_MS`;
//! zero turns the detector off) means the task blocked its executor thread: every
//! other task on that thread waited. It is reported once per call site, as a
//! `tracing` warning (target `concurrency_runtime::blocking`) with the task's name,
//! the call site and the poll's duration, and a hint: blocking work belongs in an
//! `#[io_task] fn` (a blocking thread) or a `#[cpu_task]` (rayon). (A task made by a
//! function passed by name, as in `.map(fetch)`, has no call site of its own: it is
//! reported once per task name.) The poll is timed by the wall clock, so a thread
//! that the operating system took off its core for longer than the threshold is
//! reported too: on a loaded machine, set a threshold well above its scheduling
//! delays.
//!
//! Cost: with no `tracing` subscriber installed, two atomic loads per poll (the clock
//! is not read); with one, two reads of the monotonic clock per poll (about 55 ns a
//! poll on a small VM). With the
//! feature off, nothing of this is compiled: a task value carries no call site and a
//! poll is not timed.

use crate::error::{TaskError, TaskErrorKind};
use crate::kind::TaskKind;
#[cfg(feature = "tracing")]
use std::collections::HashSet;
#[cfg(feature = "tracing")]
use std::panic::Location;
#[cfg(feature = "tracing")]
use std::sync::Mutex;
#[cfg(feature = "tracing")]
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(feature = "tracing")]
use std::time::{Duration, Instant};

/// Where a task was called (with the feature; nothing without it).
#[cfg(feature = "tracing")]
pub(crate) type Site = &'static Location<'static>;
/// Where a task was called (with the feature; nothing without it).
#[cfg(not(feature = "tracing"))]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Site;

/// The call site of the function that called the caller (through `#[track_caller]`).
#[track_caller]
#[inline(always)]
pub(crate) fn here() -> Site {
    #[cfg(feature = "tracing")]
    {
        Location::caller()
    }
    #[cfg(not(feature = "tracing"))]
    {
        Site
    }
}

/// What the detector needs of an async task: its name and call site (nothing
/// without the feature).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Watch {
    #[cfg(feature = "tracing")]
    name: &'static str,
    #[cfg(feature = "tracing")]
    site: Site,
}

impl Watch {
    #[inline(always)]
    pub(crate) fn new(name: &'static str, site: Site) -> Self {
        #[cfg(not(feature = "tracing"))]
        let _ = (name, site);
        Watch {
            #[cfg(feature = "tracing")]
            name,
            #[cfg(feature = "tracing")]
            site,
        }
    }

    /// Runs one poll of the task, timed when the detector is on.
    #[inline(always)]
    pub(crate) fn poll<R>(self, poll: impl FnOnce() -> R) -> R {
        #[cfg(feature = "tracing")]
        {
            // No subscriber, no one to tell: not even the clock is read.
            let threshold = threshold_nanos();
            if threshold == 0 || !tracing::level_enabled!(tracing::Level::WARN) {
                return poll();
            }
            let started = Instant::now();
            let polled = poll();
            let took = started.elapsed();
            if took.as_nanos() > u128::from(threshold) {
                report(self.name, self.site, took);
            }
            polled
        }
        #[cfg(not(feature = "tracing"))]
        {
            poll()
        }
    }
}

/// Where and under which span a task was called: the parent of its attempts' spans
/// (with the feature; nothing without it). The span is kept only when a subscriber
/// that takes INFO is installed, boxed: a task value carries this, and stays small.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub(crate) site: Site,
    #[cfg(feature = "tracing")]
    parent: Option<Box<tracing::Span>>,
}

impl Origin {
    /// The caller's call site (through `#[track_caller]`) and current span.
    #[track_caller]
    #[inline(always)]
    pub(crate) fn here() -> Self {
        Origin {
            site: here(),
            #[cfg(feature = "tracing")]
            parent: tracing::level_enabled!(tracing::Level::INFO)
                .then(|| Box::new(tracing::Span::current())),
        }
    }
}

/// One attempt of a task, as a `tracing` span (target `concurrency_runtime::task`,
/// name `task`): entered around every poll or run, wherever it runs, with the fields
/// `task`, `placement`, `attempt` and `call_site`, and on close `outcome`, `wait_us`
/// (from its start to its first poll or run: queued, or waiting for a thread) and
/// `run_us` (from then to its end). Nothing without the feature; one pointer, and no
/// clock read, when no subscriber wants the span.
#[derive(Debug)]
pub(crate) struct Attempt {
    #[cfg(feature = "tracing")]
    inner: Option<Box<Traced>>,
}

/// An attempt whose span is enabled.
#[cfg(feature = "tracing")]
#[derive(Debug)]
struct Traced {
    span: tracing::Span,
    created: Instant,
    started: Option<Instant>,
}

impl Attempt {
    /// Attempt `number` (from 1) of task `name`, which runs on `placement`.
    #[inline(always)]
    pub(crate) fn new(
        origin: &Origin,
        name: &'static str,
        placement: TaskKind,
        number: u32,
    ) -> Self {
        #[cfg(not(feature = "tracing"))]
        {
            let _ = (origin, name, placement, number);
            Attempt {}
        }
        #[cfg(feature = "tracing")]
        {
            // No subscriber (or none that takes INFO): no span, no clock.
            if !tracing::level_enabled!(tracing::Level::INFO) {
                return Attempt { inner: None };
            }
            Attempt {
                inner: traced(origin, name, placement, number),
            }
        }
    }

    /// Runs one poll or the body inside the attempt's span.
    #[inline(always)]
    pub(crate) fn run<R>(&mut self, run: impl FnOnce() -> R) -> R {
        #[cfg(feature = "tracing")]
        if let Some(traced) = self.inner.as_mut() {
            if traced.started.is_none() {
                traced.started = Some(Instant::now());
            }
            return traced.span.in_scope(run);
        }
        run()
    }

    /// The attempt ended with `outcome` (see [`outcome`]); its span closes.
    #[inline(always)]
    pub(crate) fn finish(&mut self, outcome: &'static str) {
        #[cfg(feature = "tracing")]
        if let Some(traced) = self.inner.take() {
            let now = Instant::now();
            let started = traced.started.unwrap_or(now);
            let span = &traced.span;
            span.record("outcome", outcome);
            span.record(
                "wait_us",
                started.duration_since(traced.created).as_micros() as u64,
            );
            span.record("run_us", now.duration_since(started).as_micros() as u64);
        }
        #[cfg(not(feature = "tracing"))]
        let _ = outcome;
    }
}

/// The span of an attempt, if a subscriber wants it.
#[cfg(feature = "tracing")]
#[cold]
fn traced(
    origin: &Origin,
    name: &'static str,
    placement: TaskKind,
    number: u32,
) -> Option<Box<Traced>> {
    let parent = origin.parent.as_deref().and_then(tracing::Span::id);
    let span = tracing::info_span!(
        target: "concurrency_runtime::task",
        parent: parent,
        "task",
        task = name,
        placement = %placement,
        attempt = number,
        call_site = %origin.site,
        outcome = tracing::field::Empty,
        wait_us = tracing::field::Empty,
        run_us = tracing::field::Empty,
    );
    (!span.is_disabled()).then(|| {
        Box::new(Traced {
            span,
            created: Instant::now(),
            started: None,
        })
    })
}

#[cfg(feature = "tracing")]
impl Drop for Attempt {
    fn drop(&mut self) {
        if self.inner.is_some() {
            // Dropped before its end: by a panic of its body, or its group or deadline.
            let outcome = if std::thread::panicking() {
                "panicked"
            } else {
                "cancelled"
            };
            self.finish(outcome);
        }
    }
}

/// An attempt made at its first poll: for an async task polled in place, whose task
/// value has nowhere else to keep it (nothing without the feature).
#[derive(Debug, Default)]
pub(crate) struct Lazy {
    #[cfg(feature = "tracing")]
    attempt: Option<Attempt>,
}

impl Lazy {
    /// Runs one poll inside the (first) attempt's span.
    #[inline(always)]
    pub(crate) fn run<R>(
        &mut self,
        origin: &Origin,
        name: &'static str,
        placement: TaskKind,
        run: impl FnOnce() -> R,
    ) -> R {
        #[cfg(feature = "tracing")]
        {
            self.attempt
                .get_or_insert_with(|| Attempt::new(origin, name, placement, 1))
                .run(run)
        }
        #[cfg(not(feature = "tracing"))]
        {
            let _ = (origin, name, placement);
            run()
        }
    }

    #[inline(always)]
    pub(crate) fn finish(&mut self, outcome: &'static str) {
        #[cfg(feature = "tracing")]
        if let Some(attempt) = self.attempt.as_mut() {
            attempt.finish(outcome);
        }
        #[cfg(not(feature = "tracing"))]
        let _ = outcome;
    }
}

/// The outcome of an attempt, as its span records it.
pub(crate) fn outcome<T>(result: &Result<T, TaskError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(error) => match error.kind() {
            TaskErrorKind::Failed { .. } => "failed",
            TaskErrorKind::TimedOut { .. } => "timed out",
            TaskErrorKind::Panicked { .. } => "panicked",
            TaskErrorKind::Cancelled => "cancelled",
            TaskErrorKind::Crashed { .. } => "crashed",
            TaskErrorKind::Serialization { .. } => "serialization failed",
            TaskErrorKind::Worker { .. } => "worker failed",
            TaskErrorKind::Upstream { .. } => "did not run",
        },
    }
}

/// Not looked up yet (the environment is read once, at the first poll).
#[cfg(feature = "tracing")]
const UNSET: u64 = u64::MAX;

#[cfg(feature = "tracing")]
static THRESHOLD: AtomicU64 = AtomicU64::new(UNSET);

/// The default threshold.
#[cfg(feature = "tracing")]
const DEFAULT: Duration = Duration::from_millis(10);

/// Sets how long one poll of an async task may take before it is reported as
/// blocking its executor thread; `Duration::ZERO` turns the detector off. It
/// overrides `CONCURRENCY_BLOCKING_MS` (the threshold in milliseconds, read at the
/// first poll otherwise; the default is 10 ms).
///
/// ```
/// use std::time::Duration;
/// use concurrency_runtime::observe;
///
/// observe::set_blocking_threshold(Duration::from_millis(2));
/// assert_eq!(observe::blocking_threshold(), Duration::from_millis(2));
/// ```
#[cfg(feature = "tracing")]
pub fn set_blocking_threshold(threshold: Duration) {
    let nanos = u64::try_from(threshold.as_nanos()).unwrap_or(UNSET - 1);
    THRESHOLD.store(nanos.min(UNSET - 1), Ordering::Relaxed);
}

/// The current threshold of the blocking detector (zero: off); see
/// [`set_blocking_threshold`].
///
/// ```
/// use concurrency_runtime::observe;
///
/// let threshold = observe::blocking_threshold(); // 10 ms unless configured
/// assert!(threshold <= std::time::Duration::from_secs(3600));
/// ```
#[cfg(feature = "tracing")]
pub fn blocking_threshold() -> Duration {
    Duration::from_nanos(threshold_nanos())
}

#[cfg(feature = "tracing")]
#[inline(always)]
fn threshold_nanos() -> u64 {
    match THRESHOLD.load(Ordering::Relaxed) {
        UNSET => threshold_from_environment(),
        nanos => nanos,
    }
}

#[cfg(feature = "tracing")]
#[cold]
fn threshold_from_environment() -> u64 {
    let threshold = std::env::var("CONCURRENCY_BLOCKING_MS")
        .ok()
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .map_or(DEFAULT, |ms| Duration::from_secs_f64(ms / 1e3));
    let nanos = u64::try_from(threshold.as_nanos()).unwrap_or(UNSET - 1);
    // A threshold set meanwhile wins.
    match THRESHOLD.compare_exchange(UNSET, nanos, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => nanos,
        Err(set) => set,
    }
}

/// Reports a poll that blocked, once per call site.
///
/// A task made by a function passed by name (`.map(fetch)`) was called by the
/// standard library's `FnMut` glue, whose location says nothing: such a task is
/// reported once per task name instead, without a call site.
#[cfg(feature = "tracing")]
#[cold]
#[inline(never)]
fn report(name: &'static str, site: Site, took: Duration) {
    /// A call site (or, without one, a task's name), as a set's key.
    type Key = (&'static str, &'static str, u32, u32);
    static REPORTED: Mutex<Option<HashSet<Key>>> = Mutex::new(None);
    let known = !site.file().starts_with("/rustc/");
    let key = if known {
        ("", site.file(), site.line(), site.column())
    } else {
        (name, "", 0, 0)
    };
    let first = REPORTED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get_or_insert_with(HashSet::new)
        .insert(key);
    if !first {
        return;
    }
    let ms = took.as_secs_f64() * 1e3;
    let hint = "every other task on that thread waited; make blocking calls in an `#[io_task] fn` \
                (a blocking thread) or CPU work in a `#[cpu_task]` (rayon)";
    if known {
        tracing::warn!(
            target: "concurrency_runtime::blocking",
            task = name,
            call_site = %site,
            poll_ms = ms,
            "async task `{name}` (called at {site}) blocked its executor thread for {ms:.1} ms in \
             one poll: {hint}"
        );
    } else {
        tracing::warn!(
            target: "concurrency_runtime::blocking",
            task = name,
            poll_ms = ms,
            "async task `{name}` blocked its executor thread for {ms:.1} ms in one poll: {hint}"
        );
    }
}

#[cfg(all(test, feature = "tracing"))]
mod tests {
    use super::*;

    #[test]
    fn a_threshold_set_in_code_overrides_the_environment_and_zero_turns_it_off() {
        set_blocking_threshold(Duration::from_millis(3));
        assert_eq!(blocking_threshold(), Duration::from_millis(3));
        set_blocking_threshold(Duration::ZERO);
        assert_eq!(threshold_nanos(), 0);
        set_blocking_threshold(DEFAULT);
    }
}
