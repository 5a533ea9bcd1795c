//! Task values: what calling an annotated function returns.
//!
//! Calling a `#[io_task]` or `#[cpu_task]` function runs nothing yet: it evaluates
//! the arguments and returns a task value that knows its name and its executor.
//! The task runs when it is
//!
//! - awaited (`fetch(2).await`) in async code,
//! - `.run()` in synchronous code (blocks until done), or
//! - passed to [`run_concurrently!`](crate::run_concurrently) with others.
//!
//! `.run_inline()` runs the body itself, on the current thread, with no executor:
//! that is the way to unit-test a task's logic.

mod async_io;
mod blocking_io;
mod cpu;
mod cpu_batch;
mod invalid;
mod joined;
mod output;
mod policy;
mod process;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pub use async_io::AsyncIoTask;
pub(crate) use async_io::in_tokio_context;
pub use blocking_io::BlockingIoTask;
pub use cpu::CpuTask;
pub use invalid::Invalid;
pub(crate) use joined::Joined;
pub use output::{Fallible, OutputKind, TaskErrorType, Value};
pub(crate) use policy::Named;
pub use policy::{Attempted, Limit, Policy, RetryOn};
pub(crate) use policy::{Bodies, Options, Permit, Policied};
pub use process::ProcessTask;

use crate::error::{BoxError, TaskError};
use crate::group::{Mode, Tasks};
use cpu_batch::BatchFuture;

/// Where a task runs, as chosen by its annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskKind {
    /// `#[io_task] async fn`: polled as an async task on tokio.
    AsyncIo,
    /// `#[io_task] fn`: a thread of tokio's blocking pool.
    BlockingIo,
    /// `#[cpu_task] fn`: rayon's work-stealing pool.
    Cpu,
    /// `#[cpu_task(process)] fn`: a worker process of the process pool.
    Process,
}

impl TaskKind {
    /// Whether the task is a future (and so needs a tokio runtime to be polled on).
    pub const fn is_async(self) -> bool {
        matches!(self, TaskKind::AsyncIo)
    }

    /// The kind of task whose body is running on the current thread right now, if
    /// any: handy for logging where work ran.
    ///
    /// ```
    /// use concurrency_runtime::{TaskKind, cpu_task};
    ///
    /// #[cpu_task]
    /// fn whereami() -> Option<TaskKind> {
    ///     TaskKind::current()
    /// }
    ///
    /// assert_eq!(whereami().run(), Some(TaskKind::Cpu));
    /// assert_eq!(TaskKind::current(), None);
    /// ```
    pub fn current() -> Option<TaskKind> {
        CURRENT.get()
    }

    /// Runs `f` with [`TaskKind::current`] reporting `self`.
    #[inline(always)]
    pub(crate) fn enter<R>(self, f: impl FnOnce() -> R) -> R {
        struct Restore(Option<TaskKind>);
        impl Drop for Restore {
            #[inline(always)]
            fn drop(&mut self) {
                CURRENT.set(self.0);
            }
        }
        let _restore = Restore(CURRENT.replace(Some(self)));
        f()
    }

    /// A short description of the executor, e.g. `"tokio async task"`.
    pub const fn executor(self) -> &'static str {
        match self {
            TaskKind::AsyncIo => "tokio async task",
            TaskKind::BlockingIo => "tokio blocking thread",
            TaskKind::Cpu => "rayon pool",
            TaskKind::Process => "worker process",
        }
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.executor())
    }
}

thread_local! {
    static CURRENT: std::cell::Cell<Option<TaskKind>> = const { std::cell::Cell::new(None) };
}

/// How a task is started; only async tasks distinguish the two.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Poll the future inside the group's own future (like `tokio::join!`).
    Inline,
    /// As `Inline`, and the group is known to be polled inside a tokio context.
    InContext,
    /// Spawn the future as its own tokio task (like a `JoinSet`), for large groups.
    Spawned,
}

mod sealed {
    pub trait Sealed {}
}

/// A task value: the result of calling a `#[io_task]` or `#[cpu_task]` function.
///
/// Implemented by [`AsyncIoTask`], [`BlockingIoTask`], [`CpuTask`] and [`ProcessTask`] only; use it to
/// accept any task in your own helpers.
///
/// ```
/// use concurrency_runtime::{Task, cpu_task};
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
/// assert_eq!(describe(&square(3)), "square runs on the rayon pool");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a task",
    label = "not a call of a #[io_task] or #[cpu_task] function",
    note = "calling a function annotated with #[io_task] (I/O) or #[cpu_task] (CPU-bound work) returns a task: annotate the function if it is yours, or call it from the body of such a function"
)]
pub trait Task: sealed::Sealed + Send + 'static {
    /// The value the task's body returns.
    type Output: Send + 'static;

    /// The task's value on success: `Output` itself, or `T` for a function declared
    /// to return `Result<T, E>` (whose `Err` is then a failure, see
    /// [`TaskErrorKind::Failed`](crate::TaskErrorKind::Failed)).
    type Ok: Send + 'static;

    /// The future that drives a started task.
    #[doc(hidden)]
    type Running: Future<Output = Result<Self::Output, TaskError>> + Attempted + Send + 'static;

    /// `Self` (see `as_task`, where a value that is not a task gets an unknown type
    /// instead, so that it is reported once). Bound to the same outputs, so that a
    /// generic `T: Task` or an `impl Task<Output = _>` keeps its types in a group.
    #[doc(hidden)]
    type Itself: Task<Output = Self::Output, Ok = Self::Ok>;

    /// `self`, as [`Task::Itself`].
    #[doc(hidden)]
    fn itself(self) -> Self::Itself;

    /// Where this kind of task runs.
    const KIND: TaskKind;

    /// The task's name: the `name = "..."` option, or the function's name.
    fn name(&self) -> &'static str;

    /// Where the task runs.
    fn kind(&self) -> TaskKind {
        Self::KIND
    }

    /// Starts the task on its executor.
    #[doc(hidden)]
    fn start(self, start: Start) -> Self::Running;

    /// Whether a group polls this task in place, as part of the group's own future,
    /// rather than starting it (a plain async task, polled like `tokio::join!`
    /// polls its futures: nothing is moved or spawned).
    #[doc(hidden)]
    #[inline]
    fn in_place(&self, start: Start) -> bool {
        let _ = start;
        false
    }

    /// Polls a task that runs in place (see [`Task::in_place`]), with its panic
    /// guard; `start` is what `in_place` was asked with.
    #[doc(hidden)]
    fn poll_in_place(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        start: Start,
    ) -> Poll<Result<Self::Output, TaskError>> {
        let _ = (cx, start);
        unreachable!("only a task whose `in_place` is true is polled in place")
    }

    /// A task started on its own (spawned), as the collection form keeps it: no
    /// larger than it needs to be, since a collection holds one per task.
    #[doc(hidden)]
    type Detached: Future<Output = Result<Self::Output, TaskError>> + Attempted + Send + 'static;

    /// Starts the task on its own (an async task as its own tokio task).
    #[doc(hidden)]
    fn detach(self) -> Self::Detached;

    /// Runs the task to completion on the calling thread's behalf, without an
    /// executor, when the task kind allows it (a process task on an idle worker);
    /// otherwise gives the task back.
    #[doc(hidden)]
    fn run_here(self) -> Result<Result<Self::Output, TaskError>, Self>
    where
        Self: Sized,
    {
        Err(self)
    }

    /// Runs a whole collection of tasks of this type as one batch, when the kind
    /// has a faster way than one task at a time (cpu tasks without options, see
    /// `cpu_batch`); otherwise gives the tasks back.
    #[doc(hidden)]
    fn batch<M: Mode<Self>>(
        tasks: Tasks<Self>,
    ) -> Result<BatchFuture<M::Item, M::Error>, Tasks<Self>>
    where
        Self: Sized,
    {
        Err(tasks)
    }

    /// Whether the task has a deadline: a thread that waits for it must watch the
    /// deadline, so it cannot run the task's body itself.
    #[doc(hidden)]
    #[inline]
    fn has_deadline(&self) -> bool {
        false
    }

    /// Splits a returned value into the success value and the task's own error.
    #[doc(hidden)]
    fn split(output: Self::Output) -> Result<Self::Ok, BoxError>;
}

/// The outcome of a finished task seen as success or failure: a `Result`-returning
/// task's `Err` becomes [`TaskErrorKind::Failed`](crate::TaskErrorKind::Failed),
/// carrying the failures of earlier attempts.
#[inline(always)]
pub(crate) fn settle<T: Task>(
    name: &'static str,
    result: Result<T::Output, TaskError>,
    attempts: Vec<TaskError>,
) -> Result<T::Ok, TaskError> {
    result.and_then(|output| {
        T::split(output).map_err(|error| TaskError::failed(name, error).with_attempts(attempts))
    })
}

pin_project_lite::pin_project! {
    /// The future of an awaited task (`task.await`): it resolves to the task's value,
    /// or panics, naming the task, if the task panicked.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct TaskFuture<R> {
        #[pin]
        pub(crate) running: R,
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

/// Runs one task to completion from synchronous code, returning its failure: as a
/// group of one, so that it starts inside the wait, where the group learns what the
/// calling thread may poll (a task started before the wait would be polled under a
/// `current_thread` runtime that the wait blocks).
fn try_run<T: Task>(task: T) -> Result<T::Ok, TaskError> {
    let name = task.name();
    let task = match crate::executor::blocking_section(|| task.run_here()) {
        Ok(result) => return settle::<T>(name, result, Vec::new()),
        Err(task) => task,
    };
    crate::group::run_one::<T, crate::group::FailFast>(task)
}

/// Runs one task to completion from synchronous code.
#[track_caller]
fn run<T: Task>(task: T) -> T::Output {
    let task = match crate::executor::blocking_section(|| task.run_here()) {
        Ok(result) => return crate::group::value(result),
        Err(task) => task,
    };
    crate::group::value(crate::group::run_one::<T, crate::group::Values>(task))
}

/// The parts every task type shares: its name, `run`, `IntoFuture`, `Debug`.
macro_rules! task_common {
    ($task:ident < $($param:ident),+ >) => {
        impl<$($param),+> $task<$($param),+> {
            /// Runs the task on its executor and blocks the current thread until it is done.
            ///
            /// For synchronous code: no runtime needs to be set up. In async code,
            /// `.await` the task instead.
            ///
            /// # Panics
            ///
            /// If the task panics, with a message that names the task.
            #[track_caller]
            pub fn run(self) -> <Self as crate::task::Task>::Output
            where
                Self: crate::task::Task,
            {
                crate::task::run(self)
            }

            /// Like [`run`](Self::run), but a failure comes back as a
            /// [`TaskError`](crate::TaskError) (which task, and how it failed)
            /// instead of a panic. For a function declared to return `Result<T, E>`,
            /// an `Err(e)` is a failure too
            /// ([`TaskErrorKind::Failed`](crate::TaskErrorKind::Failed)) and the
            /// success value is `T`.
            pub fn try_run(
                self,
            ) -> ::std::result::Result<<Self as crate::task::Task>::Ok, crate::TaskError>
            where
                Self: crate::task::Task,
            {
                crate::task::try_run(self)
            }

            /// The task's name: the `name = "..."` option, or the function's name.
            pub fn name(&self) -> &'static str {
                self.name
            }

            /// Overrides the task's `timeout` for this call: each attempt gets
            /// `timeout` to finish, else it fails with
            /// [`TaskErrorKind::TimedOut`](crate::TaskErrorKind::TimedOut).
            pub fn with_timeout(mut self, timeout: ::std::time::Duration) -> Self {
                self.policy.set_timeout(timeout);
                self
            }
        }

        impl<$($param),+> ::std::future::IntoFuture for $task<$($param),+>
        where
            Self: crate::task::Task,
        {
            type Output = <Self as crate::task::Task>::Output;
            type IntoFuture = crate::task::TaskFuture<<Self as crate::task::Task>::Running>;

            fn into_future(self) -> Self::IntoFuture {
                crate::task::TaskFuture {
                    running: crate::task::Task::start(self, crate::task::Start::Inline),
                }
            }
        }

        impl<$($param),+> ::std::fmt::Debug for $task<$($param),+> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($task))
                    .field("name", &self.name)
                    .finish_non_exhaustive()
            }
        }

        impl<$($param),+> crate::task::sealed::Sealed for $task<$($param),+> {}
    };
}
pub(crate) use task_common;
