//! `#[cpu_task(process)]`: a task run in a worker process of the pool.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use super::{Start, Task, TaskKind, task_common};
use crate::error::{SerializationStage, TaskError};
use crate::process::registry::ProcessEntry;
use crate::process::{Job, submit};

/// A process task: returned by calling a `#[cpu_task(process)]` function.
///
/// Its arguments are serialized, sent to a worker process of the pool (a copy of
/// this program, started with exec and reused), and the body runs there; the result
/// comes back serialized. A crash of the worker (a segfault, an abort, `exit`)
/// fails only this task, with [`TaskErrorKind::Crashed`](crate::TaskErrorKind::Crashed).
///
/// ```
/// use concurrency_runtime::cpu_task;
///
/// #[cpu_task(process)]
/// fn pid_and_square(n: u64) -> (u32, u64) {
///     (std::process::id(), n * n)
/// }
///
/// let (pid, square) = pid_and_square(12).run();
/// assert_eq!(square, 144);
/// assert_ne!(pid, std::process::id()); // it really ran in another process
/// assert_eq!(pid_and_square(3).run_inline().1, 9); // the body, in this process
/// ```
///
/// `try_run` returns a failure as a value, e.g. a worker that exits mid-task:
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
#[must_use = "a task does nothing until it is awaited, `.run()`, or passed to `run_concurrently!`"]
pub struct ProcessTask<A, R> {
    name: &'static str,
    entry: &'static ProcessEntry,
    args: A,
    body: fn(A) -> R,
}

impl<A, R> ProcessTask<A, R>
where
    A: Serialize + Send + 'static,
    R: DeserializeOwned + Send + 'static,
{
    /// Used by `#[cpu_task(process)]`.
    #[doc(hidden)]
    pub fn new(
        name: &'static str,
        entry: &'static ProcessEntry,
        args: A,
        body: fn(A) -> R,
    ) -> Self {
        ProcessTask {
            name,
            entry,
            args,
            body,
        }
    }

    /// Runs the body in the current process, on the current thread, with no
    /// serialization: for unit tests.
    pub fn run_inline(self) -> R {
        (self.body)(self.args)
    }
}

task_common!(ProcessTask<A, R>);

impl<A, R> Task for ProcessTask<A, R>
where
    A: Serialize + Send + 'static,
    R: DeserializeOwned + Send + 'static,
{
    type Output = R;
    type Running = ProcessRunning<R>;
    const KIND: TaskKind = TaskKind::Process;

    fn name(&self) -> &'static str {
        self.name
    }

    fn start(self, _: Start) -> ProcessRunning<R> {
        let name = self.name;
        let args = match postcard::to_allocvec(&self.args) {
            Ok(args) => args,
            Err(error) => {
                let error = TaskError::serialization(
                    name,
                    SerializationStage::ArgumentsOut,
                    error.to_string(),
                );
                return ProcessRunning {
                    state: State::Failed(Some(error)),
                    name,
                    result: PhantomData,
                };
            }
        };
        let (reply, receiver) = oneshot::channel();
        submit(Job {
            task_id: self.entry.id,
            name,
            args,
            reply,
        });
        ProcessRunning {
            state: State::Waiting(receiver),
            name,
            result: PhantomData,
        }
    }
}

enum State {
    Waiting(oneshot::Receiver<Result<Vec<u8>, TaskError>>),
    Failed(Option<TaskError>),
}

/// A started process task. Dropping it before a worker picks the task up means the
/// task never runs.
#[doc(hidden)]
pub struct ProcessRunning<R> {
    state: State,
    name: &'static str,
    result: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> Future for ProcessRunning<R> {
    type Output = Result<R, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let name = self.name;
        match &mut self.state {
            State::Failed(error) => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| TaskError::cancelled(name)))),
            State::Waiting(receiver) => {
                Pin::new(receiver).poll(cx).map(|received| match received {
                    Ok(Ok(bytes)) => postcard::from_bytes(&bytes).map_err(|error| {
                        TaskError::serialization(
                            name,
                            SerializationStage::ResultIn,
                            error.to_string(),
                        )
                    }),
                    Ok(Err(error)) => Err(error),
                    Err(_) => Err(TaskError::cancelled(name)),
                })
            }
        }
    }
}

impl<R> std::fmt::Debug for ProcessRunning<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessRunning")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
