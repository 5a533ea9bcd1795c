//! The pool's parts that its drivers share: the queue, and each slot's idle worker
//! and pid.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex};

use super::handle::{Blueprint, WorkerHandle};
use super::queue::Queue;
use crate::sync::{lock, wait};

pub(crate) struct Pool {
    pub(crate) blueprint: Blueprint,
    pub(crate) queue: Queue,
    pub(crate) slots: Box<[Slot]>,
    /// Signalled when a lent worker comes back (see `run_here`).
    pub(crate) returned: Condvar,
}

pub(crate) struct Slot {
    /// The slot's worker while its driver does not use it, so that a synchronous
    /// caller can borrow it.
    pub(crate) parked: Mutex<Parked>,
    pub(crate) pid: Mutex<Option<u32>>,
    /// The id of the last request sent on this slot (see `WorkerHandle::next_id`).
    pub(crate) last_id: Arc<AtomicU64>,
}

/// Where a slot's worker is while its driver does not use it.
pub(crate) enum Parked {
    /// Idle, ready to lend.
    Worker(WorkerHandle),
    /// Borrowed by a synchronous caller; the driver waits for it back.
    Lent,
    /// With the driver, or not started (or dead): nothing to lend.
    None,
}

impl Pool {
    /// Takes the slot's worker back from the idle spot, waiting while a caller
    /// borrows it; `None` if there is none.
    pub(crate) fn take_parked(&self, slot: usize) -> Option<WorkerHandle> {
        let mut parked = lock(&self.slots[slot].parked);
        loop {
            match std::mem::replace(&mut *parked, Parked::None) {
                Parked::Worker(worker) => return Some(worker),
                Parked::None => return None,
                Parked::Lent => {
                    *parked = Parked::Lent;
                    parked = wait(&self.returned, parked);
                }
            }
        }
    }

    /// Leaves the slot's worker (if it survived) where callers can borrow it.
    pub(crate) fn park(&self, slot: usize, worker: Option<WorkerHandle>) {
        *lock(&self.slots[slot].parked) = worker.map_or(Parked::None, Parked::Worker);
        self.returned.notify_all();
    }

    pub(crate) fn set_pid(&self, slot: usize, pid: Option<u32>) {
        *lock(&self.slots[slot].pid) = pid;
    }
}
