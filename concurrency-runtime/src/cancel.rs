//! Cooperative cancellation for blocking and cpu tasks.
//!
//! A thread cannot be stopped from outside. When a blocking or cpu task times out,
//! or its group or future is dropped, its flag is raised and the body, if it looks,
//! can stop early: see [`is_cancelled`].

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Something a running task body can ask whether it was cancelled.
pub(crate) trait CancelSource: Send + Sync {
    fn is_cancelled(&self) -> bool;
}

impl CancelSource for AtomicBool {
    fn is_cancelled(&self) -> bool {
        self.load(Ordering::Relaxed)
    }
}

/// The cancellation flag of one blocking task attempt (a cpu task's job carries
/// its own).
#[derive(Clone, Default, Debug)]
pub(crate) struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    /// Raises the flag: the task's body sees [`is_cancelled`] return `true`.
    pub(crate) fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Runs a task's body with this flag as the one [`is_cancelled`] reads.
    pub(crate) fn scope<R>(&self, body: impl FnOnce() -> R) -> R {
        scope(self.0.clone(), body)
    }
}

/// Runs a task's body with `source` as what [`is_cancelled`] reads.
pub(crate) fn scope<R>(source: Arc<dyn CancelSource>, body: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<dyn CancelSource>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|current| *current.borrow_mut() = self.0.take());
        }
    }
    let previous = CURRENT.with(|current| current.borrow_mut().replace(source));
    let _restore = Restore(previous);
    body()
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<dyn CancelSource>>> = const { RefCell::new(None) };
}

/// Whether the blocking or cpu task running on this thread has been cancelled: it
/// timed out, or its group failed fast, or whoever waited for it went away. Nobody
/// waits for its result any more, so a long-running body should check this now and
/// then and return early.
///
/// Always `false` outside a blocking or cpu task body (async tasks are cancelled by
/// dropping them; process tasks by killing their worker).
///
/// ```
/// use concurrency_runtime::{cpu_task, is_cancelled};
///
/// #[cpu_task(timeout = "50ms")]
/// fn count_until_cancelled() -> u64 {
///     let mut n = 0;
///     while !is_cancelled() {
///         n += 1;
///         std::hint::black_box(n);
///     }
///     n
/// }
///
/// let error = count_until_cancelled().try_run().unwrap_err();
/// assert!(error.is_timeout()); // and the loop stops soon after
/// assert!(!is_cancelled()); // not inside a task here
/// ```
pub fn is_cancelled() -> bool {
    CURRENT.with(|current| {
        current
            .borrow()
            .as_ref()
            .is_some_and(|source| source.is_cancelled())
    })
}
