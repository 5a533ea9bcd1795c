//! The collection form of `run_concurrently!`: any number of tasks of one function.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll};

use super::mode::Mode;
use crate::error::TaskError;
use crate::placement::{Placement, Tasks};
use crate::policy::Attempted;
use crate::sync::Woken;

/// The collection form: starts every task at once (async tasks each as a tokio
/// task, like a `JoinSet`), then polls only the tasks that were woken, so that a
/// group of n tasks costs O(n) polls, and returns the outcomes in input order; for a
/// fail-fast mode, the first failure returns at once. Dropping this future drops
/// the tasks, which cancels them.
pub async fn run_all<P: Placement, M: Mode<P>>(tasks: Tasks<P>) -> Result<Vec<M::Item>, M::Error> {
    let tasks = match P::batch(tasks, M::finish) {
        Ok(batch) => return batch.await,
        Err(tasks) => tasks,
    };
    let mut started: Vec<SlotOf<P, M>> = Vec::with_capacity(tasks.len());
    // Each chunk's memory is freed once its tasks have started.
    started.extend(tasks.into_iter().map(|task| Slot::Running {
        running: P::detach(task),
    }));
    let mut children: Pin<Box<[SlotOf<P, M>]>> = Box::into_pin(started.into_boxed_slice());
    let count = children.len();
    let shared = Woken::new(count);
    let mut remaining = count;
    // Swapped with the shared list at each poll, so neither is reallocated.
    let mut ready: Vec<usize> = Vec::with_capacity(count);
    poll_fn(|cx| {
        shared.set_group_waker(cx.waker());
        // One pass over the tasks woken so far (a task woken meanwhile wakes this
        // future again). When tokio's cooperative budget runs out, the rest of the
        // pass is put back and the group yields, as a `JoinSet` would: polling on
        // would only make every task return `Pending` and wake itself again.
        shared.take_ready(&mut ready);
        for (position, &index) in ready.iter().enumerate() {
            if !tokio::task::coop::has_budget_remaining() {
                shared.put_back(&ready[position..]);
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let mut child = child_at(children.as_mut(), index);
            if matches!(*child, Slot::Done { .. }) {
                continue; // woken twice
            }
            let polled = shared.with_waker(index, |waker| {
                poll_slot::<P, M>(child.as_mut(), &mut Context::from_waker(waker))
            });
            match polled {
                Poll::Pending => {}
                Poll::Ready(Ok(())) => remaining -= 1,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            }
        }
        if remaining == 0 {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    })
    .await?;
    Ok((0..count)
        .map(|index| {
            let item = match child_at(children.as_mut(), index).project() {
                SlotProj::Done { item } => item.take(),
                SlotProj::Running { .. } => None,
            };
            // Every task finished (`remaining` reached 0), and each is taken once.
            item.unwrap_or_else(|| unreachable!("a collection's outcome is taken once, at the end"))
        })
        .collect())
}

pin_project_lite::pin_project! {
    /// One task of a collection: running, then its judged outcome until taken. Only
    /// the task's own handle while it runs (its name comes from there): a collection
    /// may hold a million of these.
    #[project = SlotProj]
    enum Slot<D, I> {
        Running { #[pin] running: D },
        Done { item: Option<I> },
    }
}

/// The collection slot of placement `P` in mode `M`.
type SlotOf<P, M> = Slot<<P as Placement>::Detached, <M as Mode<P>>::Item>;

/// Polls a collection's task if it is still running (see [`Child::poll_child`]).
#[inline]
fn poll_slot<P: Placement, M: Mode<P>>(
    mut slot: Pin<&mut SlotOf<P, M>>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), M::Error>> {
    let (item, outcome) = match slot.as_mut().project() {
        SlotProj::Running { running } => match judge_when_done::<P, M, _>(running, cx) {
            Poll::Ready(judged) => judged,
            Poll::Pending => return Poll::Pending,
        },
        SlotProj::Done { .. } => return Poll::Ready(Ok(())),
    };
    slot.set(Slot::Done { item });
    Poll::Ready(outcome)
}

/// Polls a running task; once it is done, judges its outcome for the group: the
/// item to keep (if any) and whether the group goes on.
#[inline]
fn judge_when_done<P: Placement, M: Mode<P>, R>(
    mut running: Pin<&mut R>,
    cx: &mut Context<'_>,
) -> Poll<Judged<M::Item, M::Error>>
where
    R: Future<Output = Result<P::Output, TaskError>> + Attempted,
{
    let result = std::task::ready!(running.as_mut().poll(cx));
    let name = running.task_name();
    Poll::Ready(judged(M::finish(name, result, running.take_attempts())))
}

/// A judged outcome: the item to keep (if any) and whether the group goes on.
type Judged<I, E> = (Option<I>, Result<(), E>);

/// A judged outcome as the item to keep (if any) and whether the group goes on.
#[inline]
fn judged<I, E>(finished: Result<I, E>) -> Judged<I, E> {
    match finished {
        Ok(item) => (Some(item), Ok(())),
        Err(error) => (None, Err(error)),
    }
}

/// One element of a pinned slice, pinned.
fn child_at<C>(children: Pin<&mut [C]>, index: usize) -> Pin<&mut C> {
    // SAFETY: the elements of a pinned slice are pinned too: the boxed slice is never
    // reallocated or moved out of, and each element is only ever replaced in place
    // through `Pin::set` (which drops the old value where it is).
    unsafe { children.map_unchecked_mut(|slice| &mut slice[index]) }
}
