//! `#[cpu_task(process)]`: a task run in a worker process of the pool.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::sync::Arc;

use super::output::{OutputKind, Value, judge};
use super::seam::{Placement, Start, TaskValue};
use crate::error::{BoxError, SerializationStage, TaskError};
use crate::kind::TaskKind;
use crate::policy::{self, Bodies, Named, Policied, Policy};
use crate::process::parent::{Job, Outcome, Ticket, submit};
use crate::process::registry::ProcessEntry;
use crate::process::{protocol, wire};

/// Where a `#[cpu_task(process)]` function runs: a worker process of the pool. Its
/// arguments are encoded, sent to the worker (a copy of this program, started with
/// exec and reused), and the body runs there; the result comes back encoded.
pub struct Process<A, R, O = Value> {
    entry: &'static ProcessEntry,
    args: A,
    body: fn(A) -> R,
    encode_args: EncodeArgs<A>,
    decode_result: DecodeResult<R>,
    output: PhantomData<fn() -> O>,
}

impl<A, R, O> std::fmt::Debug for Process<A, R, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process").finish_non_exhaustive()
    }
}

/// How a task's arguments are encoded (made by `#[cpu_task(process)]`, where the
/// argument types are checked).
type EncodeArgs<A> = fn(&A, &mut Vec<u8>, usize) -> Result<(), wire::Error>;

/// How a task's result is decoded.
type DecodeResult<R> = fn(&[u8]) -> Result<R, wire::Error>;

/// A process task's body and how its arguments and result are encoded (made by
/// `#[cpu_task(process)]`).
pub(crate) type ProcessParts<A, R> = (fn(A) -> R, EncodeArgs<A>, DecodeResult<R>);

impl<A, R, O> Process<A, R, O>
where
    A: Send + 'static,
    R: Send + 'static,
    O: OutputKind<R>,
{
    /// Used by `#[cpu_task(process)]`.
    pub fn new(
        name: &'static str,
        policy: Policy,
        entry: &'static ProcessEntry,
        args: A,
        (body, encode_args, decode_result): ProcessParts<A, R>,
    ) -> TaskValue<Self> {
        TaskValue::with(
            name,
            policy,
            Process {
                entry,
                args,
                body,
                encode_args,
                decode_result,
                output: PhantomData,
            },
        )
    }
}

impl<A, R, O> TaskValue<Process<A, R, O>>
where
    A: Send + 'static,
    R: Send + 'static,
    O: OutputKind<R>,
{
    /// Runs the body in the current process, on the current thread, with no
    /// serialization: for unit tests.
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
    pub fn run_inline(self) -> R {
        (self.placement.body)(self.placement.args)
    }
}

impl<A, R, O> Process<A, R, O> {
    /// The request frame of this task: its encoded arguments, refused as soon as they
    /// pass the pool's frame limit.
    fn request(&self, name: &'static str) -> Result<Vec<u8>, TaskError> {
        let max = crate::process::parent::max_frame_bytes();
        protocol::request(self.entry.id, max, |out, limit| {
            (self.encode_args)(&self.args, out, limit)
        })
        .map_err(|error| match error {
            wire::Error::TooLarge { .. } => TaskError::protocol(
                name,
                format!("the arguments' frame exceeds the maximum frame size of {max} bytes"),
            ),
            error => {
                TaskError::serialization(name, SerializationStage::ArgumentsOut, error.to_string())
            }
        })
    }
}

impl<A, R, O> Placement for Process<A, R, O>
where
    A: Send + 'static,
    R: Send + 'static,
    O: OutputKind<R>,
{
    type Output = R;
    type Ok = O::Ok;
    type Running = Policied<ProcessRunning<R>, R>;
    type Detached = Self::Running;
    const KIND: TaskKind = TaskKind::Process;

    fn start(task: TaskValue<Self>, _: Start) -> Self::Running {
        let name = task.name;
        let decode = task.placement.decode_result;
        let frame = match task.placement.request(name) {
            Ok(frame) => frame,
            Err(error) => {
                return Policied::Plain {
                    attempt: ProcessRunning::failed(name, decode, error),
                };
            }
        };
        // Every attempt sends the same request.
        let bodies = if task.options.retries() > 0 {
            Bodies::repeating(move || frame.clone())
        } else {
            Bodies::once(frame)
        };
        policy::start(
            name,
            task.options,
            bodies,
            judge::<O, R>(),
            move |frame, _permit| attempt(name, frame, decode),
        )
    }

    fn detach(task: TaskValue<Self>) -> Self::Running {
        Self::start(task, Start::Spawned)
    }

    fn run_here(task: TaskValue<Self>) -> Result<Result<R, TaskError>, TaskValue<Self>> {
        // Only a task without options: the caller could not stop it at a deadline.
        if !task.options.is_plain() {
            return Err(task);
        }
        let mut frame = match task.placement.request(task.name) {
            Ok(frame) => frame,
            Err(error) => return Ok(Err(error)),
        };
        match crate::process::parent::run_here(task.name, &mut frame) {
            None => Err(task),
            Some(outcome) => Ok(decoded(task.name, task.placement.decode_result, outcome)),
        }
    }

    fn split(output: R) -> Result<O::Ok, BoxError> {
        O::split(output)
    }
}

/// A task's result from its worker's answer.
fn decoded<R>(
    name: &'static str,
    decode: DecodeResult<R>,
    outcome: Outcome,
) -> Result<R, TaskError> {
    outcome.and_then(|bytes| {
        decode(&bytes).map_err(|error| {
            TaskError::serialization(name, SerializationStage::ResultIn, error.to_string())
        })
    })
}

/// Sends one attempt of a process task to the pool.
fn attempt<R>(name: &'static str, frame: Vec<u8>, decode: DecodeResult<R>) -> ProcessRunning<R> {
    let ticket = Arc::new(Ticket::default());
    submit(Job {
        name,
        frame,
        ticket: Arc::clone(&ticket),
    });
    ProcessRunning {
        state: State::Waiting(ticket),
        name,
        decode,
    }
}

enum State {
    Waiting(Arc<Ticket>),
    Failed(Option<TaskError>),
    Done,
}

/// A started process task. Dropping it before it finishes cancels it: a task no
/// worker has picked up never runs; a running task's worker is killed (and replaced).
pub struct ProcessRunning<R> {
    state: State,
    name: &'static str,
    decode: DecodeResult<R>,
}

impl<R> Named for ProcessRunning<R> {
    fn task_name(&self) -> &'static str {
        self.name
    }
}

impl<R> ProcessRunning<R> {
    fn failed(name: &'static str, decode: DecodeResult<R>, error: TaskError) -> Self {
        ProcessRunning {
            state: State::Failed(Some(error)),
            name,
            decode,
        }
    }
}

impl<R> Drop for ProcessRunning<R> {
    fn drop(&mut self) {
        if let State::Waiting(ticket) = &self.state {
            ticket.cancel();
        }
    }
}

impl<R> Future for ProcessRunning<R> {
    type Output = Result<R, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let name = self.name;
        match &mut self.state {
            State::Failed(error) => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| TaskError::cancelled(name)))),
            State::Done => Poll::Ready(Err(TaskError::cancelled(name))),
            State::Waiting(ticket) => {
                let outcome = std::task::ready!(ticket.poll_outcome(cx));
                self.state = State::Done;
                Poll::Ready(decoded(name, self.decode, outcome))
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
