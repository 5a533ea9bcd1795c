//! One task of a group: started at the group's first poll, then polled where it is,
//! and its judged outcome kept until the group ends.

use std::pin::Pin;
use std::task::{Context, Poll};

use super::mode::Mode;
use crate::placement::{Placement, Start, Starter, TaskValue};
use crate::policy::Attempted;

/// One task of a group and, once it finished, its judged outcome until taken. A
/// finished task stays where it is until the group ends (dropping it is left to
/// the group: a finished task holds nothing but its handle).
pub struct Child<P: Placement, M: Mode<P>> {
    // Structurally pinned, except for a task not started yet (see `start`).
    state: ChildState<P>,
    // `Some` once the task finished and its outcome is kept (an outcome that stops
    // the group is returned, and the group polls no more). Never pinned.
    item: Option<M::Item>,
}

impl<P: Placement, M: Mode<P>> std::fmt::Debug for Child<P, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            ChildState::Task { task, .. } => task.name,
            ChildState::Running { running } => running.task_name(),
            ChildState::Starting => "",
        };
        f.debug_struct("Child")
            .field("task", &state)
            .field("finished", &self.item.is_some())
            .finish()
    }
}

/// How a group's task runs.
enum ChildState<P: Placement> {
    /// The task value: not started yet (`in_place` is `None`), or polled in place
    /// (see `Placement::in_place`), with how it was started.
    Task {
        task: TaskValue<P>,
        in_place: Option<Start>,
    },
    /// A started task.
    Running { running: P::Running },
    /// Briefly, while the task value moves out to be started.
    Starting,
}

impl<P: Placement, M: Mode<P>> Child<P, M> {
    /// A group's task, not started yet.
    #[inline(always)]
    pub fn new(task: TaskValue<P>) -> Self {
        Child {
            state: ChildState::Task {
                task,
                in_place: None,
            },
            item: None,
        }
    }

    /// Starts the task: a thread, cpu or process task begins at once; an async task
    /// is polled in place from the group's next poll on, or spawned.
    #[inline(always)]
    pub(crate) fn start(self: Pin<&mut Self>, starter: &Starter) {
        // SAFETY: the state is moved only here, while it holds a task that was never
        // polled (`in_place` is `None`, and nothing sets it back: no pinned reference
        // to the task was ever made, so nothing can rely on its address);
        // `poll_child` pins the task only once `in_place` is set, and a running task
        // only in `Running`, which is never moved out. If `task.start` panics, the
        // task was moved into it and is dropped there, and the state stays `Starting`,
        // which owns nothing (a later poll reports it instead of touching memory).
        let this = unsafe { self.get_unchecked_mut() };
        let ChildState::Task {
            task,
            in_place: in_place @ None,
        } = &mut this.state
        else {
            return; // started already
        };
        let start = starter.start(P::KIND);
        if P::in_place(task, start) {
            *in_place = Some(start);
            return;
        }
        if let ChildState::Task { task, .. } =
            std::mem::replace(&mut this.state, ChildState::Starting)
        {
            this.state = ChildState::Running {
                running: task.start_task(start),
            };
        }
    }

    /// Polls the started task if it is still running: `Ready(Ok(()))` once it has
    /// finished and its outcome is kept, `Ready(Err(_))` if its outcome stops the
    /// group.
    #[inline(always)]
    pub(crate) fn poll_child(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), M::Error>> {
        // SAFETY: nothing is moved out of the child here, and only a task polled in
        // place or a running task is pinned: neither is ever moved (see `start`, the
        // only place that moves a task, before it is pinned).
        let this = unsafe { self.get_unchecked_mut() };
        if this.item.is_some() {
            return Poll::Ready(Ok(()));
        }
        let finished = match &mut this.state {
            ChildState::Task {
                task,
                in_place: Some(start),
            } => {
                let name = task.name;
                // SAFETY: a task polled in place stays in this pinned child until the
                // child is dropped (`start` moves only a task with `in_place` unset).
                let task = unsafe { Pin::new_unchecked(task) };
                let result = std::task::ready!(P::poll_in_place(task, cx, *start));
                M::finish(name, result, Vec::new())
            }
            ChildState::Running { running } => {
                // SAFETY: a running task is never moved out of the child.
                let mut running = unsafe { Pin::new_unchecked(running) };
                let result = std::task::ready!(running.as_mut().poll(cx));
                M::finish(running.task_name(), result, running.take_attempts())
            }
            ChildState::Task { in_place: None, .. } | ChildState::Starting => {
                unreachable!("a group polls its tasks only after starting them")
            }
        };
        Poll::Ready(finished.map(|item| this.item = Some(item)))
    }

    /// Whether the task, not started yet, has a deadline.
    #[inline(always)]
    pub(crate) fn has_deadline(&self) -> bool {
        match &self.state {
            ChildState::Task { task, .. } => P::has_deadline(task),
            _ => false,
        }
    }

    /// The task's outcome, once `poll_child` returned `Ready(Ok(()))`.
    #[inline(always)]
    pub(crate) fn take(self: Pin<&mut Self>) -> M::Item {
        // SAFETY: only the outcome, which is never pinned, is moved out.
        let this = unsafe { self.get_unchecked_mut() };
        this.item.take().unwrap_or_else(|| {
            unreachable!("a group's outcome is taken only once, after it finished")
        })
    }
}

#[cfg(test)]
mod tests {
    //! Each SAFETY argument of `Child`, exercised (also under valgrind's memcheck:
    //! see ARCHITECTURE.md).

    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::Arc;
    use std::task::Waker;

    use super::*;
    use crate::group::mode::Values;
    use crate::placement::testing::{Probe, Seen};

    fn poll(child: Pin<&mut Child<Probe, Values>>) -> Poll<Result<(), crate::TaskError>> {
        child.poll_child(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_child_may_move_until_it_is_pinned_and_its_task_never_moves_after() {
        let seen = Arc::new(Seen::default());
        let child = Child::<_, Values>::new(Probe::task(&seen, 2, true));
        // Moved before it is pinned: allowed.
        let moved = Box::new(child);
        let mut child = Box::into_pin(moved);
        let starter = Starter::here();
        child.as_mut().start(&starter);
        assert!(poll(child.as_mut()).is_pending());
        // Starting again is a no-op: the task polled in place stays where it is.
        child.as_mut().start(&starter);
        assert!(poll(child.as_mut()).is_pending());
        assert!(matches!(poll(child.as_mut()), Poll::Ready(Ok(()))));
        let addresses = seen.addresses();
        assert_eq!(addresses.len(), 3);
        assert!(addresses.iter().all(|address| *address == addresses[0]));
        assert_eq!(child.as_mut().take(), 7);
        assert_eq!(
            seen.drops(),
            0,
            "a finished task stays until the child goes"
        );
        drop(child);
        assert_eq!(seen.drops(), 1, "and is dropped once with it");
    }

    #[test]
    fn a_started_task_is_dropped_once_after_it_finished() {
        let seen = Arc::new(Seen::default());
        let mut child = Box::pin(Child::<_, Values>::new(Probe::task(&seen, 1, false)));
        child.as_mut().start(&Starter::here());
        // Moved into its start: the task value is gone, its started future runs.
        assert_eq!(seen.drops(), 1);
        assert!(poll(child.as_mut()).is_pending());
        assert!(matches!(poll(child.as_mut()), Poll::Ready(Ok(()))));
        // A finished child reports it again without touching the task.
        assert!(matches!(poll(child.as_mut()), Poll::Ready(Ok(()))));
        assert_eq!(child.as_mut().take(), 7);
        drop(child);
        assert_eq!(seen.drops(), 2);
    }

    #[test]
    fn a_start_that_panics_leaves_a_child_that_owns_nothing() {
        let seen = Arc::new(Seen::default());
        let mut child = Box::pin(Child::<_, Values>::new(Probe::panicking(&seen)));
        let started = catch_unwind(AssertUnwindSafe(|| child.as_mut().start(&Starter::here())));
        assert!(started.is_err());
        // The task was moved into `start` and dropped there, once.
        assert_eq!(seen.drops(), 1);
        // Polled again, the child says so rather than touch memory it does not own.
        let polled = catch_unwind(AssertUnwindSafe(|| poll(child.as_mut())));
        assert!(polled.is_err());
        drop(child);
        assert_eq!(seen.drops(), 1, "nothing is dropped twice");
    }
}
