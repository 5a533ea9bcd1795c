//! Task values, as users see them: the [`Task`] trait and what a task value offers.
//!
//! Calling a `#[io_task]` or `#[cpu_task]` function runs nothing yet: it evaluates
//! the arguments and returns a [`TaskValue`] that knows its name and its executor.
//! The task runs when it is
//!
//! - awaited (`fetch(2).await`) in async code,
//! - `.run()` or `.try_run()` in synchronous code (blocks until done), or
//! - passed to [`run_concurrently!`](crate::run_concurrently) with others.
//!
//! `.run_inline()` runs the body itself, on the current thread, with no executor:
//! that is the way to unit-test a task's logic.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::error::TaskError;
use crate::group::{self, FailFast, Values};
use crate::kind::TaskKind;
use crate::placement::{AsyncIo, BlockingIo, Cpu, Placement, Start, TaskValue, Value};
use crate::runtime::blocking_section;

/// A task value: the result of calling a `#[io_task]` or `#[cpu_task]` function.
///
/// Implemented by [`TaskValue`] only (this crate's annotations make them); use it to
/// accept any task in your own helpers, and `impl Task<Output = T>` to return one. A
/// task is awaited (`task.await`, also as `T: Task` in generic code): `Output` is the
/// value its body returns.
///
/// ```
/// use concurrency_runtime::{Task, cpu_task, run_concurrently};
///
/// #[cpu_task]
/// fn square(n: u64) -> u64 {
///     n * n
/// }
///
/// fn describe(task: &impl Task) -> String {
///     format!("{} runs on the {}", task.name(), task.kind())
/// }
///
/// fn squared_twice(n: u64) -> impl Task<Output = u64> {
///     square(n * n)
/// }
///
/// assert_eq!(describe(&square(3)), "square runs on the rayon pool");
/// assert_eq!(squared_twice(2).run(), 16);
/// assert_eq!(run_concurrently!(squared_twice(3), square(1)), (81, 1));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a task",
    label = "not a call of a #[io_task] or #[cpu_task] function",
    note = "calling a function annotated with #[io_task] (I/O) or #[cpu_task] (CPU-bound work) returns a task: annotate the function if it is yours, or call it from the body of such a function"
)]
pub trait Task:
    IntoFuture<Output: Send + 'static>
    + sealed::Sealed<
        Placement: Placement<Output = <Self as IntoFuture>::Output, Ok = <Self as Task>::Ok>,
    > + Send
    + 'static
{
    /// The task's value on success: `Output` itself, or `T` for a function declared
    /// to return `Result<T, E>` (whose `Err` is then a failure, see
    /// [`TaskErrorKind::Failed`](crate::TaskErrorKind::Failed)). `Output`, the value
    /// the body returns, is what awaiting the task gives (`IntoFuture::Output`).
    type Ok: Send + 'static;

    /// The task's name: the `name = "..."` option, or the function's name.
    fn name(&self) -> &'static str;

    /// Where the task runs.
    fn kind(&self) -> TaskKind;

    /// Runs the task on its executor and blocks the current thread until it is done
    /// (see [`TaskValue::run`]).
    fn run(self) -> <Self as IntoFuture>::Output;

    /// Like [`run`](Task::run), but a failure comes back as a [`TaskError`] instead of
    /// a panic (see [`TaskValue::try_run`]).
    fn try_run(self) -> Result<Self::Ok, TaskError>;
}

/// The machinery behind [`Task`]: the placement of the task, for this crate's groups.
/// Not nameable outside this crate, so `Task` cannot be implemented there.
pub(crate) mod sealed {
    use crate::placement::{Placement, TaskValue};

    /// Gives a task value's placement to this crate's groups. (`Task` binds the
    /// placement's outputs to its own, so that a group's outcome keeps the types of an
    /// `impl Task<Output = T>`.)
    pub trait Sealed {
        /// Where the task runs.
        type Placement: Placement;
        /// The task value itself.
        fn into_value(self) -> TaskValue<Self::Placement>;
    }
}

impl<P: Placement> sealed::Sealed for TaskValue<P> {
    type Placement = P;

    #[inline(always)]
    fn into_value(self) -> TaskValue<P> {
        self
    }
}

// Not listed in errors: a value that is not a task gets `Task`'s own message.
#[diagnostic::do_not_recommend]
impl<P: Placement> Task for TaskValue<P> {
    type Ok = P::Ok;

    fn name(&self) -> &'static str {
        self.name
    }

    fn kind(&self) -> TaskKind {
        P::KIND
    }

    #[track_caller]
    fn run(self) -> P::Output {
        TaskValue::run(self)
    }

    fn try_run(self) -> Result<P::Ok, TaskError> {
        TaskValue::try_run(self)
    }
}

impl<P: Placement> TaskValue<P> {
    /// Runs the task on its executor and blocks the current thread until it is done.
    ///
    /// For synchronous code: no runtime needs to be set up. In async code, `.await`
    /// the task instead.
    ///
    /// # Panics
    ///
    /// If the task fails (panics, times out, crashes...), with a message that names
    /// the task.
    #[track_caller]
    pub fn run(self) -> P::Output {
        let task = match blocking_section(|| P::run_here(self)) {
            Ok(result) => return group::value(result),
            Err(task) => task,
        };
        group::value(group::run_one::<P, Values>(task))
    }

    /// Like [`run`](Self::run), but a failure comes back as a
    /// [`TaskError`] (which task, and how it failed) instead of a panic. For a
    /// function declared to return `Result<T, E>`, an `Err(e)` is a failure too
    /// ([`TaskErrorKind::Failed`](crate::TaskErrorKind::Failed)) and the success
    /// value is `T`.
    pub fn try_run(self) -> Result<P::Ok, TaskError> {
        // As a group of one, so that it starts inside the wait, where the group learns
        // what the calling thread may poll (a task started before the wait would be
        // polled under a `current_thread` runtime that the wait blocks).
        let name = self.name;
        let task = match blocking_section(|| P::run_here(self)) {
            Ok(result) => return group::settle::<P>(name, result, Vec::new()),
            Err(task) => task,
        };
        group::run_one::<P, FailFast>(task)
    }

    /// The task's name: the `name = "..."` option, or the function's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Where the task runs.
    pub fn kind(&self) -> TaskKind {
        P::KIND
    }

    /// Overrides the task's `timeout` for this call: each attempt gets `timeout` to
    /// finish, else it fails with
    /// [`TaskErrorKind::TimedOut`](crate::TaskErrorKind::TimedOut).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.set_timeout(timeout);
        self
    }
}

impl<P: Placement> IntoFuture for TaskValue<P> {
    type Output = P::Output;
    type IntoFuture = TaskFuture<P::Running>;

    fn into_future(self) -> Self::IntoFuture {
        TaskFuture {
            running: self.start_task(Start::Inline),
        }
    }
}

impl<P> fmt::Debug for TaskValue<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskValue")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

pin_project_lite::pin_project! {
    /// The future of an awaited task (`task.await`): it resolves to the task's value,
    /// or panics, naming the task, if the task failed.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct TaskFuture<R> {
        #[pin]
        running: R,
    }
}

impl<R, T> Future for TaskFuture<R>
where
    R: Future<Output = Result<T, TaskError>>,
{
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.project().running.poll(cx) {
            Poll::Ready(Ok(value)) => Poll::Ready(value),
            Poll::Ready(Err(error)) => panic!("{error}"),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<R> fmt::Debug for TaskFuture<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskFuture").finish_non_exhaustive()
    }
}

/// An async I/O task: what calling an `#[io_task] async fn` returns.
///
/// Awaited, or in `run_concurrently!(async; ...)`, its future is polled as part of
/// the caller's tokio task, like `tokio::join!` polls its futures, each poll guarded
/// so that a panic fails only this task. From synchronous code it is polled on the
/// calling thread inside the embedded runtime's context, like `Runtime::block_on`,
/// or spawned where the caller must not poll it (a rayon worker, a thread inside a
/// tokio context); in the collection form it is spawned as its own tokio task.
///
/// ```
/// use concurrency_runtime::io_task;
///
/// #[io_task]
/// async fn greet(name: String) -> String {
///     tokio::task::yield_now().await;
///     format!("hello {name}")
/// }
///
/// assert_eq!(greet("sync".into()).run(), "hello sync");
/// ```
pub type AsyncIoTask<F, O = Value> = TaskValue<AsyncIo<F, O>>;

/// A blocking I/O task: what calling an `#[io_task] fn` (without `async`) returns. It
/// runs on a thread of the embedded tokio runtime's blocking pool: never on an async
/// worker thread (where it would stall other tasks) nor on rayon's pool (where it
/// would take a core from CPU work). The pool grows past the number of cores, so many
/// blocking calls wait side by side.
///
/// ```
/// use concurrency_runtime::io_task;
///
/// #[io_task]
/// fn read_len(path: String) -> usize {
///     std::fs::read(&path).map(|bytes| bytes.len()).unwrap_or(0)
/// }
///
/// assert_eq!(read_len("Cargo.toml".into()).run(), read_len("Cargo.toml".into()).run_inline());
/// ```
pub type BlockingIoTask<F, O = Value> = TaskValue<BlockingIo<F, O>>;

/// A CPU task: what calling a `#[cpu_task] fn` returns. It runs on rayon's
/// work-stealing pool (one thread per core), never on a tokio worker, so
/// number-crunching cannot stall async I/O.
///
/// ```
/// use concurrency_runtime::cpu_task;
///
/// #[cpu_task]
/// fn sum_of_squares(n: u64) -> u64 {
///     (0..n).map(|i| i * i).sum()
/// }
///
/// assert_eq!(sum_of_squares(4).run(), 14);
/// ```
pub type CpuTask<F, O = Value> = TaskValue<Cpu<F, O>>;

/// A process task: what calling a `#[cpu_task(process)]` function returns.
///
/// Its arguments are serialized, sent to a worker process of the pool (a copy of
/// this program, started with exec and reused), and the body runs there; the result
/// comes back serialized. A crash of the worker (a segfault, an abort, `exit`) fails
/// only this task, with [`TaskErrorKind::Crashed`](crate::TaskErrorKind::Crashed).
///
/// ```
/// use concurrency_runtime::{TaskErrorKind, cpu_task};
///
/// #[cpu_task(process)]
/// fn exits(code: i32) -> u32 {
///     std::process::exit(code)
/// }
///
/// let error = exits(3).try_run().unwrap_err();
/// assert_eq!(error.task(), "exits");
/// assert!(matches!(error.kind(), TaskErrorKind::Crashed { exit_code: Some(3), .. }));
/// ```
#[cfg(all(feature = "process", target_os = "linux"))]
pub type ProcessTask<A, R, O = Value> = TaskValue<crate::placement::Process<A, R, O>>;
