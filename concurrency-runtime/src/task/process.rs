//! `#[cpu_task(process)]`: a task run in a worker process of the pool.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use super::output::judge;
use super::{
    Bodies, Options, OutputKind, Policied, Policy, Start, Task, TaskKind, Value, policy,
    task_common,
};
use crate::error::{BoxError, SerializationStage, TaskError};
use crate::process::registry::ProcessEntry;
use crate::process::{Job, JobControl, submit};

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
pub struct ProcessTask<A, R, O = Value> {
    name: &'static str,
    entry: &'static ProcessEntry,
    args: A,
    body: fn(A) -> R,
    policy: Options,
    output: PhantomData<fn() -> O>,
}

impl<A, R, O> ProcessTask<A, R, O>
where
    A: Serialize + Send + 'static,
    R: DeserializeOwned + Send + 'static,
    O: OutputKind<R>,
{
    /// Used by `#[cpu_task(process)]`.
    #[doc(hidden)]
    pub fn new(
        name: &'static str,
        policy: Policy,
        entry: &'static ProcessEntry,
        args: A,
        body: fn(A) -> R,
    ) -> Self {
        ProcessTask {
            name,
            entry,
            args,
            body,
            policy: Options::new(policy),
            output: PhantomData,
        }
    }

    /// Runs the body in the current process, on the current thread, with no
    /// serialization: for unit tests.
    pub fn run_inline(self) -> R {
        (self.body)(self.args)
    }
}

task_common!(ProcessTask<A, R, O>);

impl<A, R, O> Task for ProcessTask<A, R, O>
where
    A: Serialize + Send + 'static,
    R: DeserializeOwned + Send + 'static,
    O: OutputKind<R>,
{
    type Output = R;
    type Ok = O::Ok;
    type Running = Policied<ProcessRunning<R>, R>;
    const KIND: TaskKind = TaskKind::Process;
    type Itself = Self;

    #[inline(always)]
    fn itself(self) -> Self {
        self
    }

    fn name(&self) -> &'static str {
        self.name
    }

    fn start(self, _: Start) -> Self::Running {
        let name = self.name;
        let task_id = self.entry.id;
        let args = match postcard::to_allocvec(&self.args) {
            Ok(args) => args,
            Err(error) => {
                let error = TaskError::serialization(
                    name,
                    SerializationStage::ArgumentsOut,
                    error.to_string(),
                );
                return Policied::Plain {
                    attempt: ProcessRunning::failed(name, error),
                };
            }
        };
        // Every attempt sends the same serialized arguments.
        let bodies = if self.policy.retries() > 0 {
            Bodies::repeating(move || args.clone())
        } else {
            Bodies::once(args)
        };
        policy::start(
            name,
            self.policy,
            bodies,
            judge::<O, R>(),
            move |args, _permit| attempt(name, task_id, args),
        )
    }

    type Detached = Self::Running;

    fn detach(self) -> Self::Running {
        self.start(Start::Spawned)
    }

    fn run_here(self) -> Result<Result<R, TaskError>, Self> {
        // Only a task without options: the caller could not stop it at a deadline.
        if !self.policy.is_plain() {
            return Err(self);
        }
        let name = self.name;
        let args = match postcard::to_allocvec(&self.args) {
            Ok(args) => args,
            Err(_) => return Err(self), // reported by the regular path
        };
        match crate::process::run_here(self.entry.id, name, &args) {
            None => Err(self),
            Some(answer) => Ok(answer.and_then(|bytes| {
                postcard::from_bytes(&bytes).map_err(|error| {
                    TaskError::serialization(name, SerializationStage::ResultIn, error.to_string())
                })
            })),
        }
    }

    fn split(output: R) -> Result<O::Ok, BoxError> {
        O::split(output)
    }
}

/// Sends one attempt of a process task to the pool.
fn attempt<R>(name: &'static str, task_id: &'static str, args: Vec<u8>) -> ProcessRunning<R> {
    let (reply, receiver) = oneshot::channel();
    let control = Arc::new(JobControl::default());
    submit(Job {
        task_id,
        name,
        args,
        reply,
        control: Arc::clone(&control),
    });
    ProcessRunning {
        state: State::Waiting(receiver, control),
        name,
        result: PhantomData,
    }
}

enum State {
    Waiting(
        oneshot::Receiver<Result<Vec<u8>, TaskError>>,
        Arc<JobControl>,
    ),
    Failed(Option<TaskError>),
    Done,
}

/// A started process task. Dropping it before it finishes cancels it: a task no
/// worker has picked up never runs; a running task's worker is killed (and replaced).
#[doc(hidden)]
pub struct ProcessRunning<R> {
    state: State,
    name: &'static str,
    result: PhantomData<fn() -> R>,
}

impl<R> super::Named for ProcessRunning<R> {
    fn task_name(&self) -> &'static str {
        self.name
    }
}

impl<R> ProcessRunning<R> {
    fn failed(name: &'static str, error: TaskError) -> Self {
        ProcessRunning {
            state: State::Failed(Some(error)),
            name,
            result: PhantomData,
        }
    }
}

impl<R> Drop for ProcessRunning<R> {
    fn drop(&mut self) {
        if let State::Waiting(_, control) = &self.state {
            control.cancel();
        }
    }
}

impl<R: DeserializeOwned> Future for ProcessRunning<R> {
    type Output = Result<R, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let name = self.name;
        match &mut self.state {
            State::Failed(error) => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| TaskError::cancelled(name)))),
            State::Done => Poll::Ready(Err(TaskError::cancelled(name))),
            State::Waiting(receiver, _) => {
                let received = match Pin::new(receiver).poll(cx) {
                    Poll::Ready(received) => received,
                    Poll::Pending => return Poll::Pending,
                };
                self.state = State::Done;
                Poll::Ready(match received {
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
