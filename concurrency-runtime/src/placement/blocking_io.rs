//! `#[io_task] fn`: blocking I/O on a thread of tokio's blocking pool.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::joined::{AbortOnDrop, Joined};
use super::output::{OutputKind, Value, judge};
use super::seam::{Placement, Start, TaskValue};
use crate::cancel::CancelFlag;
use crate::error::{BoxError, TaskError};
use crate::kind::TaskKind;
use crate::observe::{Attempt, Origin};
use crate::policy::{self, Bodies, Named, Permit, Policied, Policy};
use crate::runtime::runtime;

/// Where an `#[io_task] fn` (without `async`) runs: a thread of the embedded tokio
/// runtime's blocking pool, never an async worker thread (where it would stall other
/// tasks) nor rayon's pool (where it would take a core from CPU work). The pool grows
/// past the number of cores, so many blocking calls wait side by side.
pub struct BlockingIo<F, O = Value> {
    body: Bodies<F>,
    output: PhantomData<fn() -> O>,
}

impl<F, O> std::fmt::Debug for BlockingIo<F, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingIo").finish_non_exhaustive()
    }
}

impl<F, T, O> BlockingIo<F, O>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
    O: OutputKind<T>,
{
    /// Used by `#[io_task]` for a task without options.
    #[inline]
    #[track_caller]
    pub fn new(name: &'static &'static str, body: F) -> TaskValue<Self> {
        TaskValue::plain(name, Self::of(Bodies::once(body)))
    }

    /// Used by `#[io_task(..)]` for a task with options.
    #[track_caller]
    pub fn with_policy(name: &'static &'static str, policy: Policy, body: F) -> TaskValue<Self> {
        TaskValue::with(name, policy, Self::of(Bodies::once(body)))
    }

    /// Used by `#[io_task(retries = N)]`: `make` builds each attempt's body.
    #[track_caller]
    pub fn retrying(
        name: &'static &'static str,
        policy: Policy,
        make: impl FnMut() -> F + Send + 'static,
    ) -> TaskValue<Self> {
        TaskValue::with(name, policy, Self::of(Bodies::repeating(make)))
    }

    #[inline]
    fn of(body: Bodies<F>) -> Self {
        BlockingIo {
            body,
            output: PhantomData,
        }
    }
}

impl<F, T, O> TaskValue<BlockingIo<F, O>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
    O: OutputKind<T>,
{
    /// Runs the body on the current thread, with no executor: for unit tests.
    ///
    /// ```
    /// use concurrency_runtime::io_task;
    ///
    /// #[io_task]
    /// fn read_len(path: String) -> usize {
    ///     std::fs::read(&path).map(|bytes| bytes.len()).unwrap_or(0)
    /// }
    ///
    /// let on_pool = read_len("Cargo.toml".into()).run();
    /// let here = read_len("Cargo.toml".into()).run_inline(); // the body, on this thread
    /// assert_eq!(on_pool, here);
    /// ```
    pub fn run_inline(self) -> T {
        (self.placement.body.into_first())()
    }
}

impl<F, T, O> Placement for BlockingIo<F, O>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
    O: OutputKind<T>,
{
    type Output = T;
    type Ok = O::Ok;
    type Running = Policied<BlockingRunning<T>, T>;
    type Detached = Self::Running;
    const KIND: TaskKind = TaskKind::BlockingIo;

    fn start(task: TaskValue<Self>, _: Start) -> Self::Running {
        Policied::Plain {
            attempt: attempt(
                task.name,
                task.options.origin(),
                1,
                task.placement.body.into_first(),
                None,
            ),
        }
    }

    fn detach(task: TaskValue<Self>) -> Self::Running {
        Self::start(task, Start::Spawned)
    }

    fn start_supervised(task: TaskValue<Self>, _: Start) -> Self::Running {
        let (name, origin) = (task.name, task.options.origin().clone());
        policy::start_supervised(
            name,
            origin.call(),
            task.options,
            task.placement.body,
            judge::<O, T>(),
            move |body, permit, number| attempt(name, &origin, number, body, permit.take()),
        )
    }

    fn detach_supervised(task: TaskValue<Self>) -> Self::Running {
        Self::start_supervised(task, Start::Spawned)
    }

    fn split(output: T) -> Result<O::Ok, BoxError> {
        O::split(output)
    }
}

/// Starts one attempt of a blocking task on the blocking pool.
fn attempt<F, T>(
    name: &'static &'static str,
    origin: &Origin,
    number: u32,
    body: F,
    permit: Option<Permit>,
) -> BlockingRunning<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let cancel = CancelFlag::default();
    let flag = cancel.clone();
    let mut attempt = Attempt::new(origin, name, TaskKind::BlockingIo, number);
    let handle = runtime().spawn_blocking(move || {
        // Held until the body returns, so that `limit` counts work that outlived a
        // timeout.
        let _permit = permit;
        // (A panic unwinds through here: the attempt, dropped, says it panicked.)
        let value = attempt.run(|| flag.scope(|| TaskKind::BlockingIo.enter(body)));
        attempt.finish("ok");
        value
    });
    BlockingRunning {
        joined: Joined {
            handle: AbortOnDrop(handle),
            name,
        },
        cancel,
    }
}

/// A started blocking task. Dropping it before the task finishes raises the task's
/// cancellation flag (see [`is_cancelled`](crate::is_cancelled)); a task that has
/// not started yet never starts.
#[derive(Debug)]
pub struct BlockingRunning<T> {
    joined: Joined<T>,
    cancel: CancelFlag,
}

impl<T> Named for BlockingRunning<T> {
    fn task_name(&self) -> &'static str {
        self.joined.name
    }
}

impl<T> Future for BlockingRunning<T> {
    type Output = Result<T, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.joined).poll(cx)
    }
}

impl<T> Drop for BlockingRunning<T> {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
