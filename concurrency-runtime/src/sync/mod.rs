//! Synchronisation primitives shared by the whole crate: one lock helper, the cell a
//! finished task's result waits in, and the wakers of a collection's tasks.

mod completion;
mod woken;

pub(crate) use completion::{Completion, WakerCell};
pub(crate) use woken::Woken;

use std::sync::{Condvar, Mutex, MutexGuard};

/// Locks `mutex`, ignoring poisoning: every critical section in this crate leaves its
/// data consistent at each step, so a panic elsewhere while the lock was held (a task
/// body never runs under one) leaves nothing half-done.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits on `condvar` with `guard`, ignoring poisoning (see [`lock`]).
pub(crate) fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar
        .wait(guard)
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
