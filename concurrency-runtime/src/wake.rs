//! Wakers for the tasks of a collection: one allocation for the whole collection
//! instead of one per task (a collection may hold a million tasks).
//!
//! Each task's waker points at its own slot inside the shared [`Woken`] record and
//! counts as a strong reference to that record; waking records the task's index and
//! wakes the collection's own waker.

use std::mem::ManuallyDrop;
use std::sync::{Arc, Mutex};
use std::task::{RawWaker, RawWakerVTable, Waker};

/// The wake-ups of a collection's tasks since its last poll.
pub(crate) struct Woken {
    ready: Mutex<Vec<usize>>,
    group: Mutex<Option<Waker>>,
    slots: Box<[Slot]>,
}

/// One task's waker data: the record it belongs to. The task's index is the slot's
/// position in the record's `slots` (one pointer per task, not two).
struct Slot {
    woken: *const Woken,
}

// SAFETY: a slot is read-only after construction; `woken` points at the `Woken` that
// owns the slot, which is `Send + Sync` (its other fields are mutexes), and that
// record is kept alive by the strong count each waker holds.
unsafe impl Send for Slot {}
// SAFETY: as above.
unsafe impl Sync for Slot {}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Woken {
    /// The record for `count` tasks, all initially woken (so each is polled once).
    pub(crate) fn new(count: usize) -> Arc<Woken> {
        Arc::new_cyclic(|weak| Woken {
            ready: Mutex::new((0..count).collect()),
            group: Mutex::new(None),
            slots: (0..count)
                .map(|_| Slot {
                    woken: weak.as_ptr(),
                })
                .collect(),
        })
    }

    /// Calls `f` with the waker of task `index`, without touching the reference
    /// count unless the task keeps a clone of it.
    pub(crate) fn with_waker<R>(self: &Arc<Self>, index: usize, f: impl FnOnce(&Waker) -> R) -> R {
        let slot: *const Slot = &self.slots[index];
        // SAFETY: the data pointer is a slot of this record, which `self` keeps alive
        // for the duration of `f`; the waker is never dropped (`ManuallyDrop`), so it
        // does not give back a reference it never took, while a clone made by the
        // task takes its own (see `clone`).
        let waker =
            ManuallyDrop::new(unsafe { Waker::from_raw(RawWaker::new(slot.cast(), &VTABLE)) });
        f(&waker)
    }

    pub(crate) fn set_group_waker(&self, waker: &Waker) {
        let mut group = lock(&self.group);
        if !group
            .as_ref()
            .is_some_and(|current| current.will_wake(waker))
        {
            *group = Some(waker.clone());
        }
    }

    pub(crate) fn put_back(&self, indices: &[usize]) {
        lock(&self.ready).extend_from_slice(indices);
    }

    /// Moves the woken indices into `into` (emptied first).
    pub(crate) fn take_ready(&self, into: &mut Vec<usize>) {
        into.clear();
        std::mem::swap(&mut *lock(&self.ready), into);
    }

    fn wake(&self, index: usize) {
        lock(&self.ready).push(index);
        let group = lock(&self.group).clone();
        if let Some(group) = group {
            group.wake();
        }
    }
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop);

/// # Safety
/// `data` is a `Slot` of a live `Woken` whose `Arc` strong count covers this waker.
unsafe fn slot<'a>(data: *const ()) -> &'a Slot {
    // SAFETY: guaranteed by the caller.
    unsafe { &*data.cast::<Slot>() }
}

unsafe fn clone(data: *const ()) -> RawWaker {
    // SAFETY: the waker being cloned is valid (see `slot`): its record is alive, and
    // the clone takes a strong reference of its own.
    unsafe { Arc::increment_strong_count(slot(data).woken) };
    RawWaker::new(data, &VTABLE)
}

unsafe fn wake(data: *const ()) {
    // SAFETY: consumes the waker: wake, then give back its reference.
    unsafe {
        wake_by_ref(data);
        drop(data);
    }
}

unsafe fn wake_by_ref(data: *const ()) {
    // SAFETY: the waker is valid, so its record is alive.
    let woken = unsafe { &*slot(data).woken };
    // SAFETY: `data` points at an element of `woken.slots` (see `with_waker`), so
    // both pointers are in the same allocation and the offset is the index.
    let index = unsafe { data.cast::<Slot>().offset_from(woken.slots.as_ptr()) };
    woken.wake(index.unsigned_abs());
}

unsafe fn drop(data: *const ()) {
    // SAFETY: a cloned waker holds one strong reference (taken in `clone`), given
    // back here exactly once.
    unsafe { Arc::decrement_strong_count(slot(data).woken) };
}
