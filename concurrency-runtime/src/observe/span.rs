//! A task's call (`Origin`) and each of its attempts (`Attempt`): a `tracing` span,
//! and the attempt's record in an open [`Recording`](super::Recording).

use super::Site;
#[cfg(feature = "tracing")]
use super::{clock, record};
use crate::error::TaskError;
#[cfg(feature = "tracing")]
use crate::error::TaskErrorKind;
use crate::kind::TaskKind;

/// Where and under which span a task was called: the parent of its attempts' spans,
/// and the call's number in an open recording (with the feature; nothing without
/// it). Kept only when someone observes as the task is made (a subscriber that takes
/// WARN, for the blocking detector's call site, or INFO, for the spans; an open
/// recording): a task value then boxes it with its options (`policy::Options`).
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    #[cfg(feature = "tracing")]
    call: Option<Call>,
}

/// What an observed call keeps.
#[cfg(feature = "tracing")]
#[derive(Debug, Clone)]
struct Call {
    site: &'static std::panic::Location<'static>,
    parent: Option<tracing::Span>,
    /// Its number in the recording (0: none was open).
    id: u64,
}

impl Origin {
    /// Nobody observed the call.
    pub(crate) const NONE: Origin = Origin {
        #[cfg(feature = "tracing")]
        call: None,
    };

    /// The caller's call site (through `#[track_caller]`) and current span.
    #[track_caller]
    #[inline(always)]
    pub(crate) fn here() -> Self {
        #[cfg(feature = "tracing")]
        if super::observing() {
            return observed_call(std::panic::Location::caller());
        }
        Origin::NONE
    }

    /// Where the task was called (if observed).
    #[cfg(feature = "tracing")]
    #[inline(always)]
    pub(crate) fn site(&self) -> Site {
        self.call.as_ref().map(|call| call.site)
    }

    /// The call's number in the open recording (0: not recorded).
    #[inline]
    pub(crate) fn call(&self) -> u64 {
        #[cfg(feature = "tracing")]
        {
            self.call.as_ref().map_or(0, |call| call.id)
        }
        #[cfg(not(feature = "tracing"))]
        {
            0
        }
    }
}

/// The call at `site`, observed.
#[cfg(feature = "tracing")]
#[cold]
#[inline(never)]
pub(crate) fn observed_call(site: &'static std::panic::Location<'static>) -> Origin {
    let parent = tracing::level_enabled!(tracing::Level::INFO).then(tracing::Span::current);
    let id = if record::is_open() {
        record::next_call()
    } else {
        0
    };
    Origin {
        call: Some(Call { site, parent, id }),
    }
}

/// One attempt of a task, as a `tracing` span (target `concurrency_runtime::task`,
/// name `task`): entered around every poll or run, wherever it runs, with the fields
/// `task`, `placement`, `attempt` and `call_site`, and on close `outcome`, `wait_us`
/// (from its start to its first poll or run: queued, or waiting for a thread),
/// `run_us` (from then to its end), and for a process task `worker_pid` and
/// `worker_run_us` (the body's time, measured by the worker). In an open recording,
/// the attempt, each of its polls or runs, and its worker's run are recorded.
/// Nothing without the feature; one pointer, and no clock read, when nobody wants it.
#[derive(Debug)]
pub(crate) struct Attempt {
    #[cfg(feature = "tracing")]
    inner: Option<Box<Observed>>,
}

/// An attempt that a subscriber or a recording wants.
#[cfg(feature = "tracing")]
#[derive(Debug)]
struct Observed {
    /// Disabled when no subscriber wants it.
    span: tracing::Span,
    /// The call's number in the recording (0: not recorded).
    call: u64,
    name: &'static str,
    placement: TaskKind,
    number: u32,
    site: Site,
    /// Monotonic nanoseconds (see `clock`).
    created: u64,
    started: Option<u64>,
    worker: Option<record::WorkerRun>,
    /// Its body unwound out of a poll or run.
    panicked: bool,
}

impl Attempt {
    /// No attempt observed.
    pub(crate) const NONE: Attempt = Attempt {
        #[cfg(feature = "tracing")]
        inner: None,
    };

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
            // Nobody wants it: no span, no clock.
            if origin.call.is_none()
                && !record::is_open()
                && !tracing::level_enabled!(tracing::Level::INFO)
            {
                return Attempt { inner: None };
            }
            Attempt {
                inner: observed(origin, name, placement, number),
            }
        }
    }

    /// Runs one poll or the body inside the attempt's span (recorded as a slice of
    /// the thread it ran on).
    #[inline(always)]
    pub(crate) fn run<R>(&mut self, run: impl FnOnce() -> R) -> R {
        // `run` is called in one place only, so that it is inlined once.
        #[cfg(feature = "tracing")]
        let running = self.inner.as_deref_mut().map(Observed::begin);
        let ran = run();
        #[cfg(feature = "tracing")]
        if let Some(running) = running {
            running.end();
        }
        ran
    }

    /// The worker process `pid` ran the attempt's body from `started` to `ended`
    /// (monotonic nanoseconds, as the worker read them; 0 when it did not run it).
    #[cfg(all(feature = "process", target_os = "linux"))]
    #[inline]
    pub(crate) fn ran_on_worker(&mut self, pid: u32, started: u64, ended: u64) {
        #[cfg(feature = "tracing")]
        if let Some(observed) = self.inner.as_mut() {
            observed.worker = Some(record::WorkerRun {
                pid,
                started,
                ended,
            });
        }
        #[cfg(not(feature = "tracing"))]
        let _ = (pid, started, ended);
    }

    /// Where the attempt's task was called (if observed).
    #[inline]
    pub(crate) fn site(&self) -> Site {
        #[cfg(feature = "tracing")]
        {
            self.inner.as_ref().and_then(|observed| observed.site)
        }
        #[cfg(not(feature = "tracing"))]
        {
            Site
        }
    }

    /// Whether a subscriber or a recording wants this attempt.
    #[inline(always)]
    pub(crate) fn is_observed(&self) -> bool {
        #[cfg(feature = "tracing")]
        {
            self.inner.is_some()
        }
        #[cfg(not(feature = "tracing"))]
        {
            false
        }
    }

    /// The attempt ended with `result`; its span closes.
    #[inline(always)]
    pub(crate) fn finish_with<T>(&mut self, result: &Result<T, TaskError>) {
        #[cfg(feature = "tracing")]
        if let Some(observed) = self.inner.take() {
            (*observed).finish(outcome(result), result.as_ref().err());
        }
        #[cfg(not(feature = "tracing"))]
        let _ = result;
    }

    /// The attempt ended with `outcome` (see [`outcome`]); its span closes.
    #[inline(always)]
    pub(crate) fn finish(&mut self, outcome: &'static str) {
        #[cfg(feature = "tracing")]
        if let Some(observed) = self.inner.take() {
            (*observed).finish(outcome, None);
        }
        #[cfg(not(feature = "tracing"))]
        let _ = outcome;
    }
}

/// A poll or run of an observed attempt, inside its span. Dropped by a body that
/// unwinds out of it, it notes that the attempt panicked, even if whoever caught the
/// panic drops the attempt later (tokio, for a spawned task).
#[cfg(feature = "tracing")]
struct Running<'a> {
    panicked: &'a mut bool,
    _entered: Option<tracing::span::EnteredSpan>,
    started: u64,
    /// What a recording's slice names: the call, the attempt, the placement.
    slice: Option<(u64, u32, TaskKind)>,
}

#[cfg(feature = "tracing")]
impl Running<'_> {
    /// The poll or run returned: recorded as a slice of this thread.
    #[cold]
    #[inline(never)]
    fn end(self) {
        if let Some((call, number, placement)) = self.slice {
            record::slice(call, number, placement, self.started, clock::now());
        }
    }
}

#[cfg(feature = "tracing")]
impl Drop for Running<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            *self.panicked = true;
        }
    }
}

/// The observed attempt, if a subscriber or a recording wants it.
#[cfg(feature = "tracing")]
#[cold]
fn observed(
    origin: &Origin,
    name: &'static str,
    placement: TaskKind,
    number: u32,
) -> Option<Box<Observed>> {
    let parent = origin
        .call
        .as_ref()
        .and_then(|call| call.parent.as_ref())
        .and_then(tracing::Span::id);
    let site = origin.site();
    let call_site = site.map_or_else(String::new, ToString::to_string);
    let span = tracing::info_span!(
        target: "concurrency_runtime::task",
        parent: parent,
        "task",
        task = name,
        placement = %placement,
        attempt = number,
        call_site = %call_site,
        outcome = tracing::field::Empty,
        wait_us = tracing::field::Empty,
        run_us = tracing::field::Empty,
        worker_pid = tracing::field::Empty,
        worker_run_us = tracing::field::Empty,
    );
    // A task called before the recording opened is recorded as a call of its own.
    let call = match origin.call() {
        0 if record::is_open() => record::next_call(),
        call => call,
    };
    // Kept for the blocking detector too (its call site), when a subscriber takes WARN.
    let wanted = !span.is_disabled() || call != 0 || tracing::level_enabled!(tracing::Level::WARN);
    wanted.then(|| {
        Box::new(Observed {
            span,
            call,
            name,
            placement,
            number,
            site,
            created: clock::now(),
            started: None,
            worker: None,
            panicked: false,
        })
    })
}

#[cfg(feature = "tracing")]
impl Observed {
    /// A poll or run starts: the span is entered, the clock read.
    #[cold]
    #[inline(never)]
    fn begin(&mut self) -> Running<'_> {
        let started = clock::now();
        self.started.get_or_insert(started);
        let entered = (!self.span.is_disabled()).then(|| self.span.clone().entered());
        Running {
            panicked: &mut self.panicked,
            _entered: entered,
            started,
            slice: (self.call != 0).then_some((self.call, self.number, self.placement)),
        }
    }

    #[cold]
    fn finish(mut self, outcome: &'static str, error: Option<&TaskError>) {
        let ended = clock::now();
        // A crashed worker's pid, from the crash.
        if let (None, Some(TaskErrorKind::Crashed { pid, .. })) =
            (&self.worker, error.map(TaskError::kind))
        {
            self.worker = Some(record::WorkerRun {
                pid: *pid,
                started: 0,
                ended: 0,
            });
        }
        // A worker's run lies between the request's start and its answer (one clock
        // on one machine; clamped all the same).
        if let Some(worker) = self.worker.as_mut()
            && worker.started != 0
        {
            worker.started = worker.started.clamp(self.created, ended);
            worker.ended = worker.ended.clamp(worker.started, ended);
            self.started = Some(worker.started);
        }
        let started = self.started.unwrap_or(ended);
        if !self.span.is_disabled() {
            let span = &self.span;
            span.record("outcome", outcome);
            span.record("wait_us", (started.saturating_sub(self.created)) / 1_000);
            span.record("run_us", ended.saturating_sub(started) / 1_000);
            if let Some(worker) = &self.worker {
                span.record("worker_pid", worker.pid);
                if worker.started != 0 {
                    span.record(
                        "worker_run_us",
                        worker.ended.saturating_sub(worker.started) / 1_000,
                    );
                }
            }
        }
        if self.call != 0 {
            record::attempt(record::AttemptEvent {
                call: self.call,
                name: self.name,
                placement: self.placement,
                number: self.number,
                site: self.site,
                created: self.created,
                started: self.started,
                ended,
                outcome,
                error: error.map(ToString::to_string),
                worker: self.worker,
            });
        }
    }
}

#[cfg(feature = "tracing")]
thread_local! {
    /// Why attempts dropped on this thread now end (see [`dropped_because`]).
    static DROPPING: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// Drops `attempt` (a future holding an attempt) saying why: `what` becomes the
/// outcome of an attempt it ends (a deadline that passed: "timed out").
pub(crate) fn dropped_because<T>(what: &'static str, attempt: T) {
    #[cfg(feature = "tracing")]
    {
        let before = DROPPING.replace(Some(what));
        drop(attempt);
        DROPPING.set(before);
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = what;
        drop(attempt);
    }
}

#[cfg(feature = "tracing")]
impl Drop for Attempt {
    // Dropped with every task: the common case (nothing observed) stays inline.
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(observed) = self.inner.take() {
            dropped_early(observed);
        }
    }
}

/// An observed attempt dropped before its end: by a panic of its body, or its group
/// or deadline.
#[cfg(feature = "tracing")]
#[cold]
#[inline(never)]
#[allow(clippy::boxed_local)] // moved out of the attempt as it is, not re-boxed
fn dropped_early(observed: Box<Observed>) {
    let outcome = if std::thread::panicking() || observed.panicked {
        "panicked"
    } else {
        DROPPING.get().unwrap_or("cancelled")
    };
    (*observed).finish(outcome, None);
}

/// The outcome of an attempt, as its span records it.
#[cfg(feature = "tracing")]
fn outcome<T>(result: &Result<T, TaskError>) -> &'static str {
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

#[cfg(all(test, feature = "tracing"))]
mod tests {
    use super::*;
    use crate::observe::Recording;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    #[test]
    fn an_attempt_whose_body_unwound_ends_panicked_even_when_dropped_later() {
        let recording = Recording::start();
        let origin = Origin::here();
        let mut attempt = Attempt::new(&origin, "unwinds", TaskKind::AsyncIo, 1);
        let caught = catch_unwind(AssertUnwindSafe(|| {
            attempt.run(|| panic!("the body panics"));
        }));
        assert!(caught.is_err());
        // Dropped by whoever caught the panic, after it (not while unwinding).
        drop(attempt);
        let timeline = recording.finish();
        let outcome = timeline
            .attempts()
            .iter()
            .find(|attempt| attempt.task == "unwinds")
            .map(|attempt| attempt.outcome);
        assert_eq!(outcome, Some("panicked"));
    }
}
