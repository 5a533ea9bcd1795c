//! `#[cpu_task(process)]`: a task run in a worker process of the pool.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::cpu_batch::{BatchFuture, Finish};
use super::output::{OutputKind, Value, judge};
use super::process_batch::{self, DecodeResult, KnownEntry, Request, decoded, ran_on_worker};
use super::seam::{Placement, Start, TaskValue, Tasks};
use crate::error::{BoxError, SerializationStage, TaskError};
use crate::kind::TaskKind;
use crate::observe::{Attempt, Origin};
use crate::policy::{self, Bodies, Named, Policied, Policy};
use crate::process::parent::{Answer, Control, Job, Ran, Sink};
use crate::process::registry::{self, ProcessEntry};
use crate::process::submit;
use crate::process::{protocol, wire};
use crate::progress::Reporter;
use crate::sync::Completion;

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

/// A process task's body and how its arguments and result are encoded (made by
/// `#[cpu_task(process)]`).
pub(crate) type ProcessParts<A, R> = (fn(A) -> R, EncodeArgs<A>, DecodeResult<R>);

impl<A, R, O> Process<A, R, O>
where
    A: Send + 'static,
    R: Send + 'static,
    O: OutputKind<R>,
{
    /// Used by `#[cpu_task(process)]` for a task without options.
    #[inline]
    #[track_caller]
    pub fn new(
        name: &'static &'static str,
        entry: &'static ProcessEntry,
        args: A,
        parts: ProcessParts<A, R>,
    ) -> TaskValue<Self> {
        TaskValue::plain(name, Self::of(entry, args, parts))
    }

    /// Used by `#[cpu_task(process, ..)]` for a task with options.
    #[track_caller]
    pub fn with_policy(
        name: &'static &'static str,
        policy: Policy,
        entry: &'static ProcessEntry,
        args: A,
        parts: ProcessParts<A, R>,
    ) -> TaskValue<Self> {
        TaskValue::with(name, policy, Self::of(entry, args, parts))
    }

    #[inline]
    fn of(
        entry: &'static ProcessEntry,
        args: A,
        (body, encode_args, decode_result): ProcessParts<A, R>,
    ) -> Self {
        Process {
            entry,
            args,
            body,
            encode_args,
            decode_result,
            output: PhantomData,
        }
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
    /// Appends the body of this task's request to `out`: its encoded arguments,
    /// refused as soon as the frame would pass the pool's limit of `max_frame` bytes.
    pub(crate) fn encode_request(
        &self,
        name: &'static str,
        out: &mut Vec<u8>,
        max_frame: u64,
    ) -> Result<(), TaskError> {
        self.encode_request_numbered(name, out, max_frame, &mut None)
    }

    /// As `encode_request`; `known` remembers the registry number of the last entry
    /// looked up, for a collection whose tasks are mostly of one function.
    pub(crate) fn encode_request_numbered(
        &self,
        name: &'static str,
        out: &mut Vec<u8>,
        max_frame: u64,
        known: &mut KnownEntry,
    ) -> Result<(), TaskError> {
        let number = match *known {
            Some((entry, number)) if std::ptr::eq(entry, self.entry) => Some(number),
            _ => registry::index_of(self.entry),
        };
        let Some(task) = number else {
            return Err(TaskError::protocol(
                name,
                format!(
                    "`{}` is not in the registry of process tasks",
                    self.entry.id
                ),
            ));
        };
        *known = Some((self.entry, task));
        protocol::request_body(out, task, max_frame, |out, limit| {
            (self.encode_args)(&self.args, out, limit)
        })
        .map_err(|error| match error {
            wire::Error::TooLarge { .. } => TaskError::protocol(
                name,
                format!("the arguments' frame exceeds the maximum frame size of {max_frame} bytes"),
            ),
            error => {
                TaskError::serialization(name, SerializationStage::ArgumentsOut, error.to_string())
            }
        })
    }

    /// The body of this task's request.
    fn request(&self, name: &'static str) -> Result<Vec<u8>, TaskError> {
        let mut body = Vec::new();
        let max_frame = crate::process::parent::max_frame_bytes();
        self.encode_request(name, &mut body, max_frame)?;
        Ok(body)
    }
}

impl<A, R, O> Request for TaskValue<Process<A, R, O>> {
    fn name(&self) -> &'static str {
        self.name
    }

    #[cfg(feature = "tracing")]
    fn attempt(&self) -> Attempt {
        Attempt::new(self.options.origin(), self.name, TaskKind::Process, 1)
    }

    fn encode(
        &self,
        out: &mut Vec<u8>,
        max_frame: u64,
        known: &mut KnownEntry,
    ) -> Result<(), TaskError> {
        self.placement
            .encode_request_numbered(self.name, out, max_frame, known)
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
        Policied::Plain {
            attempt: match task.placement.request(name) {
                Ok(frame) => attempt(name, task.options.origin(), 1, frame, decode),
                Err(error) => ProcessRunning::failed(name, error),
            },
        }
    }

    fn detach(task: TaskValue<Self>) -> Self::Running {
        Self::start(task, Start::Spawned)
    }

    fn start_supervised(task: TaskValue<Self>, _: Start) -> Self::Running {
        let origin = task.options.origin().clone();
        let name = task.name;
        let decode = task.placement.decode_result;
        let frame = match task.placement.request(name) {
            Ok(frame) => frame,
            Err(error) => {
                return Policied::Plain {
                    attempt: ProcessRunning::failed(name, error),
                };
            }
        };
        // Every attempt sends the same request.
        let bodies = if task.options.retries() > 0 {
            Bodies::repeating(move || frame.clone())
        } else {
            Bodies::once(frame)
        };
        policy::start_supervised(
            name,
            origin.call(),
            task.options,
            bodies,
            judge::<O, R>(),
            move |frame, _permit, number| attempt(name, &origin, number, frame, decode),
        )
    }

    fn detach_supervised(task: TaskValue<Self>) -> Self::Running {
        Self::start_supervised(task, Start::Spawned)
    }

    fn run_here(task: TaskValue<Self>) -> Result<Result<R, TaskError>, TaskValue<Self>> {
        // Only a task without options: the caller could not stop it at a deadline.
        if !task.options.is_plain() {
            return Err(task);
        }
        let body = match task.placement.request(task.name) {
            Ok(body) => body,
            Err(error) => return Ok(Err(error)),
        };
        let (name, decode) = (task.name, task.placement.decode_result);
        // The attempt's span starts once an idle worker was found for it.
        let mut attempt = None;
        let origin = task.options.origin();
        let outcome = crate::process::run_here(
            name,
            &body,
            || attempt = Some(Attempt::new(origin, name, TaskKind::Process, 1)),
            |answer, ran| (answer.and_then(|bytes| decoded(name, decode, bytes)), ran),
        );
        match outcome {
            Some((outcome, ran)) => {
                if let Some(attempt) = attempt.as_mut() {
                    ran_on_worker(attempt, ran);
                    attempt.finish_with(&outcome);
                }
                Ok(outcome)
            }
            // No idle worker, or the worker died before it had the request: the task
            // goes through the queue.
            None => {
                if let Some(attempt) = attempt.as_mut() {
                    attempt.finish("not run");
                }
                Err(task)
            }
        }
    }

    fn batch<I: Send + 'static, E: Send + 'static>(
        tasks: Tasks<Self>,
        finish: Finish<R, I, E>,
        reporter: Option<&Arc<Reporter>>,
    ) -> Result<BatchFuture<I, E>, Tasks<Self>> {
        // Tasks with options are supervised one by one.
        if !tasks.iter().all(|task| task.options.is_plain()) {
            return Err(tasks);
        }
        let count = tasks.len();
        let Some(decode) = tasks.iter().next().map(|task| task.placement.decode_result) else {
            return Ok(Box::pin(std::future::ready(Ok(Vec::new()))));
        };
        Ok(process_batch::start(
            count,
            tasks.into_iter(),
            decode,
            finish,
            reporter.cloned(),
        ))
    }

    fn split(output: R) -> Result<O::Ok, BoxError> {
        O::split(output)
    }
}

/// One process task's place in the pool: its request, its cancellation, and where
/// its outcome goes.
struct Ticket<R> {
    name: &'static str,
    body: Vec<u8>,
    control: Control,
    decode: DecodeResult<R>,
    outcome: Completion<(Result<R, TaskError>, Ran)>,
}

impl<R: Send> Sink for Ticket<R> {
    fn name(&self, _: usize) -> &'static str {
        self.name
    }

    fn body(&self, _: usize) -> &[u8] {
        &self.body
    }

    fn control(&self, _: usize) -> &Control {
        &self.control
    }

    fn deliver(&self, _: usize, answer: Answer<'_>, ran: Ran) {
        let outcome = match answer {
            Answer::Ok(bytes) => decoded(self.name, self.decode, bytes),
            Answer::Err(error) => Err(error),
        };
        self.outcome.put((outcome, ran));
    }

    fn settle(&self, _: usize) -> Option<Waker> {
        self.outcome.take_waker()
    }
}

/// Sends one attempt of a process task to the pool.
fn attempt<R: Send + 'static>(
    name: &'static str,
    origin: &Origin,
    number: u32,
    body: Vec<u8>,
    decode: DecodeResult<R>,
) -> ProcessRunning<R> {
    let ticket = Arc::new(Ticket {
        name,
        body,
        control: Control::default(),
        decode,
        outcome: Completion::default(),
    });
    submit(std::iter::once(Job {
        sink: Arc::clone(&ticket) as Arc<dyn Sink>,
        index: 0,
    }));
    ProcessRunning {
        state: State::Waiting(ticket),
        name,
        attempt: Attempt::new(origin, name, TaskKind::Process, number),
    }
}

enum State<R> {
    Waiting(Arc<Ticket<R>>),
    Failed(Option<TaskError>),
    Done,
}

/// A started process task. Dropping it before it finishes cancels it: a task no
/// worker has picked up never runs; a running task's worker is killed (and replaced).
pub struct ProcessRunning<R> {
    state: State<R>,
    name: &'static str,
    // The attempt's span, from the caller's side (feature `tracing`; nothing
    // otherwise).
    attempt: Attempt,
}

impl<R> Named for ProcessRunning<R> {
    fn task_name(&self) -> &'static str {
        self.name
    }
}

impl<R> ProcessRunning<R> {
    fn failed(name: &'static str, error: TaskError) -> Self {
        ProcessRunning {
            state: State::Failed(Some(error)),
            name,
            attempt: Attempt::new(&Origin::here(), name, TaskKind::Process, 1),
        }
    }
}

impl<R> Drop for ProcessRunning<R> {
    fn drop(&mut self) {
        if let State::Waiting(ticket) = &self.state {
            ticket.control.cancel();
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
                let (outcome, ran) = std::task::ready!(ticket.outcome.poll(cx));
                self.state = State::Done;
                ran_on_worker(&mut self.attempt, ran);
                self.attempt.finish_with(&outcome);
                Poll::Ready(outcome)
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
