//! What a function becomes when its `#[io_task]` or `#[cpu_task]` attribute was
//! rejected: a task type that never runs.
//!
//! The attribute reports its mistake and expands the function with the same
//! signature, returning [`Invalid`], which implements [`Task`]: its call sites then
//! type-check (in `run_concurrently!`, with `.run()`, `.await`), so the compile shows
//! the attribute's error and nothing else. The program never builds, so none of this
//! runs.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{Attempted, Named, Options, Start, Task, TaskKind, task_common};
use crate::error::{BoxError, TaskError};

/// The task a rejected function returns (see the module docs).
#[doc(hidden)]
#[must_use]
pub struct Invalid<R = ()> {
    name: &'static str,
    policy: Options,
    output: PhantomData<fn() -> R>,
}

impl<R> Invalid<R> {
    /// The body: there is none.
    pub fn run_inline(self) -> R {
        unreachable!("a function whose task attribute was rejected does not compile")
    }
}

task_common!(Invalid<R>);

// Not listed in errors: a value that is not a task gets `Task`\'s own message.
#[diagnostic::do_not_recommend]
impl<R: Send + 'static> Task for Invalid<R> {
    type Output = R;
    type Ok = R;
    type Running = NeverRuns<R>;
    type Itself = Self;
    type Detached = NeverRuns<R>;
    const KIND: TaskKind = TaskKind::Cpu;

    fn itself(self) -> Self {
        self
    }

    fn name(&self) -> &'static str {
        self.name
    }

    fn start(self, _: Start) -> NeverRuns<R> {
        NeverRuns(PhantomData)
    }

    fn detach(self) -> NeverRuns<R> {
        NeverRuns(PhantomData)
    }

    fn split(output: R) -> Result<R, BoxError> {
        Ok(output)
    }
}

/// The started form of an [`Invalid`] task.
#[doc(hidden)]
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
