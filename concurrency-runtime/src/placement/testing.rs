//! A placement for unit tests of the groups' `unsafe` code: it records where its task
//! is when polled in place and counts its drops.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use super::seam::{Placement, Start, TaskValue};
use crate::error::{BoxError, TaskError};
use crate::kind::TaskKind;
use crate::policy::{Attempted, Named};
use crate::sync::lock;

/// What a probe saw.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// The task's address at each poll in place.
    pub(crate) addresses: Mutex<Vec<usize>>,
    /// Drops of probe placements and of their started futures.
    pub(crate) drops: AtomicUsize,
}

impl Seen {
    pub(crate) fn drops(&self) -> usize {
        self.drops.load(Ordering::SeqCst)
    }

    pub(crate) fn addresses(&self) -> Vec<usize> {
        lock(&self.addresses).clone()
    }
}

/// A task that is ready after `polls` polls (polled in place, or started), with the
/// value `value`; or whose start panics.
#[derive(Debug)]
pub(crate) struct Probe {
    pub(crate) seen: Arc<Seen>,
    pub(crate) polls: AtomicUsize,
    pub(crate) in_place: bool,
    pub(crate) panic_on_start: bool,
    pub(crate) value: u32,
}

impl Probe {
    /// A probe's task: in place or started, ready after `polls` polls.
    pub(crate) fn task(seen: &Arc<Seen>, polls: usize, in_place: bool) -> TaskValue<Probe> {
        TaskValue::plain(
            &"probe",
            Probe {
                seen: Arc::clone(seen),
                polls: AtomicUsize::new(polls),
                in_place,
                panic_on_start: false,
                value: 7,
            },
        )
    }

    /// A probe's task whose start panics.
    pub(crate) fn panicking(seen: &Arc<Seen>) -> TaskValue<Probe> {
        let mut task = Probe::task(seen, 0, false);
        task.placement.panic_on_start = true;
        task
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.seen.drops.fetch_add(1, Ordering::SeqCst);
    }
}

/// A started probe.
#[derive(Debug)]
pub(crate) struct ProbeRunning {
    seen: Arc<Seen>,
    polls: usize,
    value: u32,
}

impl Drop for ProbeRunning {
    fn drop(&mut self) {
        self.seen.drops.fetch_add(1, Ordering::SeqCst);
    }
}

impl Future for ProbeRunning {
    type Output = Result<u32, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.polls == 0 {
            return Poll::Ready(Ok(self.value));
        }
        self.polls -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Named for ProbeRunning {
    fn task_name(&self) -> &'static str {
        "probe"
    }
}

impl Attempted for ProbeRunning {
    fn take_attempts(self: Pin<&mut Self>) -> Vec<TaskError> {
        Vec::new()
    }

    fn task_name(&self) -> &'static str {
        "probe"
    }
}

impl Placement for Probe {
    type Output = u32;
    type Ok = u32;
    type Running = ProbeRunning;
    type Detached = ProbeRunning;
    const KIND: TaskKind = TaskKind::Cpu;

    fn start(task: TaskValue<Self>, _: Start) -> ProbeRunning {
        let probe = &task.placement;
        assert!(!probe.panic_on_start, "the probe's start panics");
        ProbeRunning {
            seen: Arc::clone(&probe.seen),
            polls: probe.polls.load(Ordering::SeqCst),
            value: probe.value,
        }
    }

    fn detach(task: TaskValue<Self>) -> ProbeRunning {
        Self::start(task, Start::Spawned)
    }

    // A probe has no options.
    fn start_supervised(task: TaskValue<Self>, start: Start) -> ProbeRunning {
        Self::start(task, start)
    }

    fn detach_supervised(task: TaskValue<Self>) -> ProbeRunning {
        Self::start(task, Start::Spawned)
    }

    fn in_place(task: &TaskValue<Self>, _: Start) -> bool {
        task.placement.in_place
    }

    fn poll_in_place(
        task: Pin<&mut TaskValue<Self>>,
        cx: &mut Context<'_>,
        _: Start,
    ) -> Poll<Result<u32, TaskError>> {
        let probe = &task.placement;
        lock(&probe.seen.addresses).push(std::ptr::from_ref(&*task) as usize);
        if probe.polls.load(Ordering::SeqCst) == 0 {
            return Poll::Ready(Ok(probe.value));
        }
        probe.polls.fetch_sub(1, Ordering::SeqCst);
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn split(output: u32) -> Result<u32, BoxError> {
        Ok(output)
    }
}
