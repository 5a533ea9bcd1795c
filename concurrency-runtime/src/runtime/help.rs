//! A rayon thread that waits for its own group runs the group's queued cpu tasks
//! rather than sleeping (like `rayon::join`), and never unrelated jobs.

use std::cell::RefCell;
use std::sync::Arc;

/// A queued cpu task (or batch of cpu tasks) that a waiting thread may run in place.
pub(crate) trait Helpable: Send + Sync {
    /// Runs the task (a batch: the tasks no thread claimed yet) unless it already
    /// started elsewhere; `true` if anything ran here.
    fn run_if_unclaimed(self: Arc<Self>) -> bool;
}

thread_local! {
    /// The cpu tasks started by the group a rayon worker is waiting for, which it may
    /// run itself (see `offer_help`).
    static HELP_SCOPE: RefCell<Option<Vec<Arc<dyn Helpable>>>> = const { RefCell::new(None) };
}

/// Offers a just-started cpu task or batch to the rayon worker that waits for its
/// group, if it was started by such a worker. Like `rayon::join`, the waiting thread
/// then runs its own group's tasks rather than sleeping; unlike `rayon::yield_now`, it
/// never runs unrelated jobs, so nested waits cannot pile up on its stack.
pub(crate) fn offer_help(job: Arc<dyn Helpable>) {
    HELP_SCOPE.with(|scope| {
        if let Some(jobs) = scope.borrow_mut().as_mut() {
            jobs.push(job);
        }
    });
}

/// The help scope of one wait, restoring the enclosing one when dropped.
pub(super) struct HelpScope(Option<Vec<Arc<dyn Helpable>>>);

impl HelpScope {
    pub(super) fn open() -> Self {
        HelpScope(HELP_SCOPE.replace(Some(Vec::new())))
    }

    /// The next task offered to this wait.
    pub(super) fn next(&self) -> Option<Arc<dyn Helpable>> {
        HELP_SCOPE.with(|scope| scope.borrow_mut().as_mut().and_then(Vec::pop))
    }
}

impl Drop for HelpScope {
    fn drop(&mut self) {
        HELP_SCOPE.set(self.0.take());
    }
}
