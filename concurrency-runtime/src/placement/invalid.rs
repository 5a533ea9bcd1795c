//! What a function becomes when its `#[io_task]` or `#[cpu_task]` attribute was
//! rejected: a task that never runs.
//!
//! The attribute reports its mistake and expands the function with the same
//! signature, returning `TaskValue<Invalid<R>>`, which is a task: its call sites then
//! type-check (in `run_concurrently!`, with `.run()`, `.await`), so the compile shows
//! the attribute's error and nothing else. The program never builds, so none of this
//! runs.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::seam::{Placement, Start, TaskValue};
use crate::error::{BoxError, TaskError};
use crate::kind::TaskKind;
use crate::policy::{Attempted, Named};

/// The placement of a rejected function's task (see the module docs).
#[derive(Debug)]
pub struct Invalid<R = ()> {
    output: PhantomData<fn() -> R>,
}

impl<R> TaskValue<Invalid<R>> {
    /// The body: there is none.
    pub fn run_inline(self) -> R {
        unreachable!("a function whose task attribute was rejected does not compile")
    }
}

impl<R: Send + 'static> Placement for Invalid<R> {
    type Output = R;
    type Ok = R;
    type Running = NeverRuns<R>;
    type Detached = NeverRuns<R>;
    const KIND: TaskKind = TaskKind::Cpu;

    fn start(_: TaskValue<Self>, _: Start) -> NeverRuns<R> {
        NeverRuns(PhantomData)
    }

    fn detach(_: TaskValue<Self>) -> NeverRuns<R> {
        NeverRuns(PhantomData)
    }

    fn start_supervised(_: TaskValue<Self>, _: Start) -> NeverRuns<R> {
        NeverRuns(PhantomData)
    }

    fn detach_supervised(_: TaskValue<Self>) -> NeverRuns<R> {
        NeverRuns(PhantomData)
    }

    fn split(output: R) -> Result<R, BoxError> {
        Ok(output)
    }
}

/// The started form of an [`Invalid`] task.
#[derive(Debug)]
pub struct NeverRuns<R>(PhantomData<fn() -> R>);

impl<R> Future for NeverRuns<R> {
    type Output = Result<R, TaskError>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        unreachable!("a function whose task attribute was rejected does not compile")
    }
}

impl<R> Named for NeverRuns<R> {
    fn task_name(&self) -> &'static str {
        ""
    }
}

impl<R> Attempted for NeverRuns<R> {
    fn take_attempts(self: Pin<&mut Self>) -> Vec<TaskError> {
        Vec::new()
    }

    fn task_name(&self) -> &'static str {
        ""
    }
}
