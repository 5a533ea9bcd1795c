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
/// it). Both are kept only when wanted (a subscriber that takes INFO, a recording),
/// boxed: a task value carries this, and stays small.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub(crate) site: Site,
    #[cfg(feature = "tracing")]
    call: Option<Box<Call>>,
}

/// What an observed call keeps.
#[cfg(feature = "tracing")]
#[derive(Debug, Clone)]
struct Call {
    parent: Option<tracing::Span>,
    /// Its number in the recording (0: none was open).
    id: u64,
}

impl Origin {
    /// The caller's call site (through `#[track_caller]`) and current span.
    #[track_caller]
    #[inline(always)]
    pub(crate) fn here() -> Self {
        Origin {
            site: super::here(),
            #[cfg(feature = "tracing")]
            call: if record::is_open() || tracing::level_enabled!(tracing::Level::INFO) {
                observed_call()
            } else {
                None
            },
        }
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

#[cfg(feature = "tracing")]
#[cold]
fn observed_call() -> Option<Box<Call>> {
    let parent = tracing::level_enabled!(tracing::Level::INFO).then(tracing::Span::current);
    let id = if record::is_open() {
        record::next_call()
    } else {
        0
    };
    (parent.is_some() || id != 0).then(|| Box::new(Call { parent, id }))
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
        #[cfg(feature = "tracing")]
        if let Some(observed) = self.inner.as_mut() {
            return observed.run(run);
        }
        run()
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
        worker_pid = tracing::field::Empty,
        worker_run_us = tracing::field::Empty,
    );
    // A task called before the recording opened is recorded as a call of its own.
    let call = match origin.call() {
        0 if record::is_open() => record::next_call(),
        call => call,
    };
    (!span.is_disabled() || call != 0).then(|| {
        Box::new(Observed {
            span,
            call,
            name,
            placement,
            number,
            site: origin.site,
            created: clock::now(),
            started: None,
            worker: None,
            panicked: false,
        })
    })
}

#[cfg(feature = "tracing")]
impl Observed {
    #[inline]
    fn run<R>(&mut self, run: impl FnOnce() -> R) -> R {
        /// Notes a body that unwinds out of its poll or run: the attempt panicked, even
        /// if whoever caught the panic drops it later (tokio, for a spawned task).
        struct Unwinding<'a>(&'a mut bool);
        impl Drop for Unwinding<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    *self.0 = true;
                }
            }
        }
        let started = clock::now();
        self.started.get_or_insert(started);
        let unwinding = Unwinding(&mut self.panicked);
        let ran = if self.span.is_disabled() {
            run()
        } else {
            self.span.in_scope(run)
        };
        drop(unwinding);
        if self.call != 0 {
            record::slice(
                self.call,
                self.number,
                self.placement,
                started,
                clock::now(),
            );
        }
        ran
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
    fn drop(&mut self) {
        if let Some(observed) = self.inner.take() {
            // Dropped before its end: by a panic of its body, or its group or deadline.
            let outcome = if std::thread::panicking() || observed.panicked {
                "panicked"
            } else {
                DROPPING.get().unwrap_or("cancelled")
            };
            (*observed).finish(outcome, None);
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

    /// The attempt ended with `result`.
    #[inline(always)]
    pub(crate) fn finish_with<T>(&mut self, result: &Result<T, TaskError>) {
        #[cfg(feature = "tracing")]
        if let Some(attempt) = self.attempt.as_mut() {
            attempt.finish_with(result);
        }
        #[cfg(not(feature = "tracing"))]
        let _ = result;
    }
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
