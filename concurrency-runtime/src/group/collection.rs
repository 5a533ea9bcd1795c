//! The collection form of `run_concurrently!`: any number of tasks of one function.

use std::future::{Future, poll_fn};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::mode::Mode;
use crate::error::TaskError;
use crate::placement::{Placement, TaskValue, Tasks};
use crate::policy::Attempted;
use crate::progress::{FinishOnDrop, Progress, Reporter};
use crate::sync::Woken;
use std::sync::Arc;

/// The collection form: starts every task at once (async tasks each as a tokio
/// task, like a `JoinSet`), then polls only the tasks that were woken, so that a
/// group of n tasks costs O(n) polls, and returns the outcomes in input order; for a
/// fail-fast mode, the first failure returns at once. Dropping this future drops
/// the tasks, which cancels them.
pub async fn run_all<P: Placement, M: Mode<P>>(tasks: Tasks<P>) -> Result<Vec<M::Item>, M::Error> {
    run_reporting::<P, M>(tasks, None).await
}

/// `run_concurrently!(progress(renderer); for ..)`: [`run_all`], telling `progress`
/// of each task that ends (see the `progress` module).
pub async fn run_all_with_progress<P: Placement, M: Mode<P>>(
    tasks: Tasks<P>,
    progress: impl Progress,
) -> Result<Vec<M::Item>, M::Error> {
    let reporter = Reporter::new(progress, tasks.len());
    run_reporting::<P, M>(tasks, Some(reporter)).await
}

async fn run_reporting<P: Placement, M: Mode<P>>(
    tasks: Tasks<P>,
    reporter: Option<Arc<Reporter>>,
) -> Result<Vec<M::Item>, M::Error> {
    // The report ends with the collection, however it ends.
    let _finish = FinishOnDrop(reporter.clone());
    let tasks = match P::batch(tasks, M::finish, reporter.as_ref()) {
        Ok(batch) => return batch.await,
        Err(tasks) => tasks,
    };
    let mut started: Vec<P::Detached> = Vec::with_capacity(tasks.len());
    // Each chunk's memory is freed once its tasks have started.
    started.extend(tasks.into_iter().map(TaskValue::detach_task));
    let count = started.len();
    let mut slots = Slots::<P::Detached, M::Item>::new(started);
    let shared = Woken::new(count);
    let mut remaining = count;
    // Swapped with the shared list at each poll, so neither is reallocated.
    let mut ready: Vec<u32> = Vec::with_capacity(count);
    poll_fn(|cx| {
        shared.set_group_waker(cx.waker());
        // One pass over the tasks woken so far (a task woken meanwhile wakes this
        // future again). When tokio's cooperative budget runs out, the rest of the
        // pass is put back and the group yields, as a `JoinSet` would: polling on
        // would only make every task return `Pending` and wake itself again.
        shared.take_ready(&mut ready);
        for (position, &index) in ready.iter().enumerate() {
            let index = index as usize;
            if !tokio::task::coop::has_budget_remaining() {
                shared.put_back(&ready[position..]);
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let Some(running) = slots.running(index) else {
                continue; // woken twice
            };
            let judged = shared.with_waker(index, |waker| {
                judge_when_done::<P, M, _>(running, &mut Context::from_waker(waker))
            });
            match judged {
                Poll::Pending => {}
                Poll::Ready(Ok(item)) => {
                    slots.finish(index, item);
                    remaining -= 1;
                    if let Some(reporter) = &reporter {
                        reporter.ended(1);
                    }
                }
                Poll::Ready(Err(error)) => {
                    if let Some(reporter) = &reporter {
                        reporter.ended(1);
                    }
                    return Poll::Ready(Err(error));
                }
            }
        }
        if remaining == 0 {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    })
    .await?;
    Ok(slots.into_items())
}

/// A collection's tasks while they run, and their outcomes: a task's handle until it
/// finishes (only the handle: a collection may hold a million of these), then its
/// judged outcome, written straight into the vector that the collection returns.
///
/// Task `i` has finished exactly when bit `i` of `finished` is set. Until then
/// `running[i]` holds its handle (pinned: never moved, dropped where it is); from then
/// on `items[i]` holds its outcome. One bit per task marks the state, where an
/// `Option` around each handle would cost a word.
struct Slots<D, I> {
    running: Box<[MaybeUninit<D>]>,
    finished: Box<[u64]>,
    items: Box<[MaybeUninit<I>]>,
}

impl<D, I> Slots<D, I> {
    fn new(running: Vec<D>) -> Self {
        let count = running.len();
        let running = Box::into_raw(running.into_boxed_slice()) as *mut [MaybeUninit<D>];
        Slots {
            // SAFETY: `MaybeUninit<D>` has the layout of `D`, so the allocation of a
            // boxed `[D]` is one of a boxed `[MaybeUninit<D>]` of the same length;
            // every element is initialised, as the `finished` bits (all clear) say.
            running: unsafe { Box::from_raw(running) },
            finished: vec![0; count.div_ceil(64)].into_boxed_slice(),
            items: Box::new_uninit_slice(count),
        }
    }

    fn is_finished(&self, index: usize) -> bool {
        self.finished[index / 64] & (1 << (index % 64)) != 0
    }

    /// Task `index`, if it has not finished.
    fn running(&mut self, index: usize) -> Option<Pin<&mut D>> {
        if self.is_finished(index) {
            return None;
        }
        // SAFETY: the task has not finished, so its handle is initialised; it is never
        // moved (the boxed slice is never reallocated, and a handle is only dropped
        // in place, by `finish` or `drop`), so it may be pinned.
        Some(unsafe { Pin::new_unchecked(self.running[index].assume_init_mut()) })
    }

    /// Task `index` finished with `item`: its handle is dropped and its outcome kept.
    fn finish(&mut self, index: usize, item: I) {
        if self.is_finished(index) {
            return;
        }
        self.items[index].write(item);
        self.finished[index / 64] |= 1 << (index % 64);
        // SAFETY: the handle was initialised (the task had not finished) and is dropped
        // once, in place: its bit is set now, so nothing touches it again.
        unsafe { self.running[index].assume_init_drop() };
    }

    /// Every task's outcome, in order, once every task has finished.
    fn into_items(mut self) -> Vec<I> {
        assert!(
            (0..self.items.len()).all(|index| self.is_finished(index)),
            "a collection's outcomes are taken once every task has finished"
        );
        let items = std::mem::take(&mut self.items);
        // SAFETY: every task has finished (checked above), so every item was written
        // by `finish`; `self` no longer owns them (its `items` is empty now, and `drop`
        // looks only at the items it has), so nothing drops them twice.
        unsafe { items.assume_init() }.into_vec()
    }
}

impl<D, I> Drop for Slots<D, I> {
    fn drop(&mut self) {
        for index in 0..self.running.len() {
            if !self.is_finished(index) {
                // SAFETY: an unfinished task's handle is initialised, and dropped once,
                // in place, here.
                unsafe { self.running[index].assume_init_drop() };
            } else if let Some(item) = self.items.get_mut(index) {
                // SAFETY: a finished task's item was written by `finish`, and is
                // dropped once, here (`into_items` takes the items before the drop).
                unsafe { item.assume_init_drop() };
            }
        }
    }
}

/// Polls a running task; once it is done, its outcome judged for the group: the item
/// to keep, or what stops the group.
#[inline]
fn judge_when_done<P: Placement, M: Mode<P>, R>(
    mut running: Pin<&mut R>,
    cx: &mut Context<'_>,
) -> Poll<Result<M::Item, M::Error>>
where
    R: Future<Output = Result<P::Output, TaskError>> + Attempted,
{
    let result = std::task::ready!(running.as_mut().poll(cx));
    let name = running.task_name();
    Poll::Ready(M::finish(name, result, running.take_attempts()))
}

#[cfg(test)]
mod tests {
    //! Each SAFETY argument of `Slots`, exercised (also under valgrind's memcheck: see
    //! ARCHITECTURE.md).

    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts its drops.
    struct Dropped(Arc<AtomicUsize>, u32);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counters() -> (Arc<AtomicUsize>, Arc<AtomicUsize>) {
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)))
    }

    #[test]
    fn finished_outcomes_come_back_in_order_and_each_is_dropped_once() {
        let (handles, items) = counters();
        // More than one word of `finished` bits.
        let running = (0..70).map(|n| Dropped(Arc::clone(&handles), n)).collect();
        let mut slots = Slots::<Dropped, Dropped>::new(running);
        for index in (0..70).rev() {
            assert!(slots.running(index).is_some());
            slots.finish(index, Dropped(Arc::clone(&items), index as u32 * 10));
            assert!(slots.running(index).is_none(), "no handle once finished");
        }
        assert_eq!(handles.load(Ordering::SeqCst), 70, "each handle dropped");
        // A second outcome for a finished task is dropped, the first one kept.
        slots.finish(3, Dropped(Arc::clone(&items), 99));
        assert_eq!(items.load(Ordering::SeqCst), 1);
        let outcomes = slots.into_items();
        let values: Vec<u32> = outcomes.iter().map(|item| item.1).collect();
        assert_eq!(values, (0..70).map(|n| n * 10).collect::<Vec<_>>());
        assert_eq!(items.load(Ordering::SeqCst), 1, "handed over, not dropped");
        drop(outcomes);
        assert_eq!(items.load(Ordering::SeqCst), 71);
        assert_eq!(handles.load(Ordering::SeqCst), 70, "nothing twice");
    }

    #[test]
    fn a_collection_dropped_midway_drops_what_finished_and_what_runs_once() {
        let (handles, items) = counters();
        let running = (0..4).map(|n| Dropped(Arc::clone(&handles), n)).collect();
        let mut slots = Slots::<Dropped, Dropped>::new(running);
        slots.finish(1, Dropped(Arc::clone(&items), 1));
        slots.finish(2, Dropped(Arc::clone(&items), 2));
        drop(slots);
        assert_eq!(
            handles.load(Ordering::SeqCst),
            4,
            "two finished, two running"
        );
        assert_eq!(items.load(Ordering::SeqCst), 2, "only the written outcomes");
    }
}
