//! Progress of a collection: `run_concurrently!(progress(renderer); for iter)`
//! reports each task's completion to `renderer`, with the count, the total, the rate
//! and an estimate of the time left.
//!
//! A task counts when it ends (succeeds or fails), not when it starts. The renderer
//! is any [`Progress`]: a closure `Fn(Status)`, your own type, or (Cargo feature
//! `indicatif`) an `indicatif::ProgressBar`. It is called on the thread where the task
//! ended (a rayon thread, a process pool's driver, or the caller's), so it must be
//! `Send + Sync`, and cheap: it is called once per task (per read of a batch of
//! answers, for process tasks). Without `progress(..)` nothing of this runs.
//!
//! ```
//! use std::sync::Mutex;
//! use concurrency_runtime::{cpu_task, run_concurrently};
//! use concurrency_runtime::progress::Status;
//!
//! #[cpu_task]
//! fn square(n: u64) -> u64 {
//!     n * n
//! }
//!
//! let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
//! let log = std::sync::Arc::clone(&seen);
//! let squares = run_concurrently!(
//!     progress(move |status: Status| log.lock().unwrap().push(status.done));
//!     for (0..10).map(square)
//! );
//! assert_eq!(squares.len(), 10);
//! assert_eq!(seen.lock().unwrap().iter().max(), Some(&10));
//! ```

use std::time::Duration;

/// How far a collection has come.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Status {
    /// Tasks that have ended.
    pub done: usize,
    /// Tasks in the collection.
    pub total: usize,
    /// Time since the collection started.
    pub elapsed: Duration,
}

impl Status {
    /// Tasks ended per second so far.
    pub fn rate(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.done as f64 / seconds
        } else {
            0.0
        }
    }

    /// The time left at the rate so far; `None` before the first task ended.
    pub fn eta(&self) -> Option<Duration> {
        let rate = self.rate();
        (rate > 0.0)
            .then(|| Duration::from_secs_f64(self.total.saturating_sub(self.done) as f64 / rate))
    }
}

/// A renderer of a collection's progress (see the [module](self)).
pub trait Progress: Send + Sync + 'static {
    /// Some tasks ended: `status` counts them.
    fn update(&self, status: Status);

    /// The collection ended (every task, or a failure that stopped it, or it was
    /// dropped); called once, after the last `update`.
    fn finish(&self, status: Status) {
        let _ = status;
    }
}

impl<F: Fn(Status) + Send + Sync + 'static> Progress for F {
    fn update(&self, status: Status) {
        self(status)
    }
}

#[cfg(feature = "indicatif")]
impl Progress for indicatif::ProgressBar {
    fn update(&self, status: Status) {
        self.set_length(status.total as u64);
        self.set_position(status.done as u64);
    }

    fn finish(&self, status: Status) {
        self.set_position(status.done as u64);
        indicatif::ProgressBar::finish(self);
    }
}

pub(crate) use report::{FinishOnDrop, Reporter};

/// The crate's side of a report: public only so that the sealed placement trait can
/// name it; not reachable from outside the crate.
mod report {
    use super::{Progress, Status};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Instant;

    /// The count of one collection's ended tasks, and its renderer.
    pub struct Reporter {
        progress: Box<dyn Progress>,
        total: usize,
        started: Instant,
        done: AtomicUsize,
        finished: AtomicBool,
    }

    impl std::fmt::Debug for Reporter {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Reporter")
                .field("total", &self.total)
                .field("done", &self.done)
                .finish_non_exhaustive()
        }
    }

    impl Reporter {
        pub(crate) fn new(progress: impl Progress, total: usize) -> Arc<Reporter> {
            let reporter = Arc::new(Reporter {
                progress: Box::new(progress),
                total,
                started: Instant::now(),
                done: AtomicUsize::new(0),
                finished: AtomicBool::new(false),
            });
            reporter.progress.update(reporter.status(0));
            reporter
        }

        fn status(&self, done: usize) -> Status {
            Status {
                done,
                total: self.total,
                elapsed: self.started.elapsed(),
            }
        }

        /// `count` more tasks ended.
        pub(crate) fn ended(&self, count: usize) {
            let done = self.done.fetch_add(count, Ordering::Relaxed) + count;
            self.progress.update(self.status(done));
        }

        /// The collection ended (once).
        pub(crate) fn finish(&self) {
            if !self.finished.swap(true, Ordering::Relaxed) {
                let done = self.done.load(Ordering::Relaxed);
                self.progress.finish(self.status(done));
            }
        }
    }

    /// Finishes a collection's report when the collection's future ends or is dropped.
    pub(crate) struct FinishOnDrop(pub(crate) Option<Arc<Reporter>>);

    impl Drop for FinishOnDrop {
        fn drop(&mut self) {
            if let Some(reporter) = &self.0 {
                reporter.finish();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    #[test]
    fn rate_and_eta_follow_the_count_and_finish_is_said_once() {
        let status = Status {
            done: 5,
            total: 20,
            elapsed: Duration::from_secs(1),
        };
        assert_eq!(status.rate(), 5.0);
        assert_eq!(status.eta(), Some(Duration::from_secs(3)));
        let none = Status { done: 0, ..status };
        assert_eq!(none.eta(), None);

        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let finished = Arc::new(AtomicUsize::new(0));
        struct Recorder(Arc<Mutex<Vec<usize>>>, Arc<AtomicUsize>);
        impl Progress for Recorder {
            fn update(&self, status: Status) {
                self.0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(status.done);
            }
            fn finish(&self, _: Status) {
                self.1.fetch_add(1, Ordering::Relaxed);
            }
        }
        let reporter = Reporter::new(Recorder(log, Arc::clone(&finished)), 3);
        reporter.ended(1);
        reporter.ended(2);
        reporter.finish();
        reporter.finish();
        assert_eq!(*seen.lock().unwrap_or_else(|p| p.into_inner()), [0, 1, 3]);
        assert_eq!(finished.load(Ordering::Relaxed), 1);
    }
}
