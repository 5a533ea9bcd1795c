//! Wakers for the tasks of a collection: one allocation for the whole collection
//! instead of one per task (a collection may hold a million tasks).
//!
//! Each task's waker points at its own slot inside the shared [`Woken`] record and
//! counts as a strong reference to that record; waking records the task's index and
//! wakes the collection's own waker.

use std::mem::ManuallyDrop;
use std::sync::{Arc, Mutex};
use std::task::{RawWaker, RawWakerVTable, Waker};

use super::{WakerCell, lock};

/// The wake-ups of a collection's tasks since its last poll.
pub(crate) struct Woken {
    /// Indices as `u32`: half the memory of a `usize` list, for collections of up to
    /// 2^32 - 1 tasks (see `Woken::new`).
    ready: Mutex<Vec<u32>>,
    group: WakerCell,
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

impl Woken {
    /// The record for `count` tasks, all initially woken (so each is polled once).
    ///
    /// # Panics
    ///
    /// If `count` does not fit in a `u32` (a collection of more than 4 billion tasks:
    /// 100 GiB of task slots), like `Vec` at a capacity overflow.
    pub(crate) fn new(count: usize) -> Arc<Woken> {
        let Ok(last) = u32::try_from(count) else {
            panic!(
                "a collection of {count} tasks: at most {} are supported",
                u32::MAX
            );
        };
        Arc::new_cyclic(|weak| Woken {
            ready: Mutex::new((0..last).collect()),
            group: WakerCell::default(),
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
        self.group.register(waker);
    }

    pub(crate) fn put_back(&self, indices: &[u32]) {
        lock(&self.ready).extend_from_slice(indices);
    }

    /// Moves the woken indices into `into` (emptied first).
    pub(crate) fn take_ready(&self, into: &mut Vec<u32>) {
        into.clear();
        std::mem::swap(&mut *lock(&self.ready), into);
    }

    fn wake(&self, index: usize) {
        // `new` made sure every index fits.
        lock(&self.ready).push(index as u32);
        self.group.wake();
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

#[cfg(test)]
mod tests {
    //! Each SAFETY argument of the wakers, exercised (also under valgrind's memcheck:
    //! see ARCHITECTURE.md).

    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    #[derive(Default)]
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_waker_names_its_task_and_wakes_the_group() {
        let woken = Woken::new(4);
        let group = Arc::new(Count::default());
        woken.set_group_waker(&Waker::from(Arc::clone(&group)));
        let mut ready = Vec::new();
        woken.take_ready(&mut ready);
        assert_eq!(ready, [0, 1, 2, 3], "every task is polled once at first");
        woken.with_waker(2, Waker::wake_by_ref);
        // A clone, woken by value: the vtable's `wake`, which gives its reference back.
        #[allow(clippy::waker_clone_wake)]
        woken.with_waker(0, |waker| waker.clone().wake());
        woken.take_ready(&mut ready);
        assert_eq!(ready, [2, 0]);
        assert_eq!(group.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_borrowed_waker_takes_no_reference_and_a_clone_takes_one() {
        let woken = Woken::new(2);
        assert_eq!(Arc::strong_count(&woken), 1);
        let clone = woken.with_waker(1, |waker| {
            assert_eq!(Arc::strong_count(&woken), 1, "borrowing adds nothing");
            waker.clone()
        });
        assert_eq!(Arc::strong_count(&woken), 2);
        std::mem::drop(clone);
        assert_eq!(Arc::strong_count(&woken), 1);
    }

    #[test]
    fn wakers_outlive_their_group() {
        // A task keeps its waker after the collection is gone (a timer or a channel
        // that fires later): the waker keeps the record alive, so waking reads live
        // memory, and the last one frees it.
        let woken = Woken::new(3);
        let group = Arc::new(Count::default());
        woken.set_group_waker(&Waker::from(Arc::clone(&group)));
        let kept: Vec<Waker> = (0..3)
            .map(|index| woken.with_waker(index, Waker::clone))
            .collect();
        let weak = Arc::downgrade(&woken);
        std::mem::drop(woken);
        assert!(weak.upgrade().is_some(), "the wakers keep the record");
        for (index, waker) in kept.into_iter().enumerate() {
            if index == 1 {
                std::mem::drop(waker);
            } else {
                waker.wake();
            }
        }
        assert_eq!(group.0.load(Ordering::SeqCst), 2);
        assert!(weak.upgrade().is_none(), "the last waker freed it");
    }
}
