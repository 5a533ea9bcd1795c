//! Synchronisation helpers shared by the whole crate.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, ignoring poisoning: every critical section in this crate leaves its
/// data consistent at each step, so a panic elsewhere while the lock was held (a task
/// body never runs under one) leaves nothing half-done.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
