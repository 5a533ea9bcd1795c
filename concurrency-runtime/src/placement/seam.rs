//! The seam between the groups and the executors: the [`Placement`] trait, which each
//! kind of task implements once, and [`TaskValue`], the one type of task values.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::cpu_batch::{BatchFuture, Finish};
use crate::error::{BoxError, TaskError};
use crate::kind::TaskKind;
use crate::policy::{Attempted, Options, Policy};
use crate::progress::Reporter;

pin_project_lite::pin_project! {
    /// A task value: what calling a `#[io_task]` or `#[cpu_task]` function returns. It
    /// runs nothing until it is awaited, `.run()`, `.try_run()`, or passed to
    /// [`run_concurrently!`](crate::run_concurrently); see [`Task`](crate::Task).
    ///
    /// `P` is where it runs: the aliases [`AsyncIoTask`](crate::AsyncIoTask),
    /// [`BlockingIoTask`](crate::BlockingIoTask), [`CpuTask`](crate::CpuTask) and
    /// [`ProcessTask`](crate::ProcessTask) name the four.
    #[must_use = "a task does nothing until it is awaited, `.run()`, or passed to `run_concurrently!`"]
    pub struct TaskValue<P> {
        // One pointer, to the name (a `&'static str` is two words: a collection holds
        // one task value per task).
        pub(crate) name: &'static &'static str,
        // Its options, and where and under which span it was called (feature
        // `tracing`): one pointer, `None` for a task without options that nobody
        // observes.
        pub(crate) options: Options,
        // Pinned only where a group polls an async task in place (see
        // `Placement::poll_in_place`); moved out by value everywhere else.
        #[pin]
        pub(crate) placement: P,
    }
}

impl<P> TaskValue<P> {
    /// A task named `name` without options.
    #[inline]
    #[track_caller]
    pub(crate) fn plain(name: &'static &'static str, placement: P) -> Self {
        TaskValue {
            name,
            options: Options::none(),
            placement,
        }
    }
}

impl<P: Placement> TaskValue<P> {
    /// A task named `name` with the options of `policy`.
    #[track_caller]
    pub(crate) fn with(name: &'static &'static str, policy: Policy, placement: P) -> Self {
        TaskValue {
            name,
            options: Options::new(policy, supervisor::<P>()),
            placement,
        }
    }

    /// What starts this task's supervised attempts, if it has options.
    #[inline]
    pub(crate) fn supervisor(&self) -> Option<&'static Supervisor<P>> {
        self.options.supervisor().map(|supervisor| {
            supervisor
                .downcast_ref::<Supervisor<P>>()
                // Options of a `TaskValue<P>` are only ever made with `supervisor::<P>()`.
                .expect("a task's supervisor is its own placement's")
        })
    }

    /// Starts the task: through its supervisor if it has options, else as its
    /// placement starts a task without options. (The one place that chooses: a
    /// placement's `start` is only ever reached for a task without options.)
    #[inline(always)]
    pub(crate) fn start_task(self, start: Start) -> P::Running {
        match self.supervisor() {
            Some(supervisor) => (supervisor.start)(self, start),
            None => P::start(self, start),
        }
    }

    /// Starts the task on its own (a collection's slot), as `start_task` chooses.
    #[inline(always)]
    pub(crate) fn detach_task(self) -> P::Detached {
        match self.supervisor() {
            Some(supervisor) => (supervisor.detach)(self),
            None => P::detach(self),
        }
    }

    /// Sets the deadline of each attempt (see `Task::with_timeout`).
    pub(crate) fn set_timeout(&mut self, timeout: std::time::Duration) {
        self.options.set_timeout(timeout, supervisor::<P>());
    }
}

/// What starts a task with options: its placement's supervised start, through a
/// pointer, so that only the tasks that get options compile it (a direct call in
/// `Placement::start` would compile the supervision for every task of a crate).
pub(crate) struct Supervisor<P: Placement> {
    pub(crate) start: fn(TaskValue<P>, Start) -> P::Running,
    pub(crate) detach: fn(TaskValue<P>) -> P::Detached,
}

/// The supervisor of placement `P`, for its tasks' options.
fn supervisor<P: Placement>() -> &'static (dyn Any + Send + Sync) {
    const {
        &Supervisor::<P> {
            start: P::start_supervised,
            detach: P::detach_supervised,
        }
    }
}

/// How a task starts; only async tasks distinguish the three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Poll the future inside the group's own future (like `tokio::join!`).
    Inline,
    /// As `Inline`, and the group is known to be polled inside a tokio context.
    InContext,
    /// Spawn the future as its own tokio task (like a `JoinSet`), for large groups.
    Spawned,
}

/// A collection's tasks, gathered in chunks so that starting them frees their memory
/// as it goes (a task value holds its whole future or closure).
#[derive(Debug)]
pub struct Tasks<P> {
    chunks: Vec<Vec<TaskValue<P>>>,
    len: usize,
}

/// Tasks per chunk of a collection.
const CHUNK: usize = 1024;

impl<P> Tasks<P> {
    /// Gathers the tasks an iterator yields.
    pub(crate) fn collect(tasks: impl Iterator<Item = TaskValue<P>>) -> Self {
        let mut chunks: Vec<Vec<TaskValue<P>>> = Vec::new();
        let mut len = 0;
        // A small collection's chunk is its size (an iterator that tells), not
        // `CHUNK` task values: those can be tens of kilobytes to allocate and touch.
        let first = tasks.size_hint().0.clamp(1, CHUNK);
        for task in tasks {
            match chunks.last_mut() {
                Some(chunk) if chunk.len() < CHUNK => chunk.push(task),
                _ => {
                    let mut chunk =
                        Vec::with_capacity(if chunks.is_empty() { first } else { CHUNK });
                    chunk.push(task);
                    chunks.push(chunk);
                }
            }
            len += 1;
        }
        Tasks { chunks, len }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &TaskValue<P>> {
        self.chunks.iter().flatten()
    }

    /// The tasks, each chunk freed once its tasks are taken.
    pub(crate) fn into_iter(self) -> impl Iterator<Item = TaskValue<P>> {
        self.chunks.into_iter().flatten()
    }
}

/// Where a task runs and how: implemented once per kind of task (`async_io.rs`,
/// `blocking_io.rs`, `cpu.rs`, `process.rs`, and `invalid.rs` for a rejected
/// function). Sealed: public only so that [`TaskValue`] can name it; nothing outside
/// this crate can implement or call it.
///
/// Adding a placement is a module with a type implementing this trait, a constructor
/// the macro calls, and the macro's arm for its annotation (see `ARCHITECTURE.md`).
pub trait Placement: Send + Sized + 'static {
    /// The value the task's body returns.
    type Output: Send + 'static;
    /// The success value: `Output`, or `T` of `Result<T, E>`.
    type Ok: Send + 'static;
    /// A started task.
    type Running: Future<Output = Result<Self::Output, TaskError>> + Attempted + Send + 'static;
    /// A task started on its own (a collection's slot): no larger than it needs to be,
    /// since a collection holds one per task.
    type Detached: Future<Output = Result<Self::Output, TaskError>> + Attempted + Send + 'static;

    /// Where this kind of task runs.
    const KIND: TaskKind;

    /// Starts a task without options on its executor (a task with options goes
    /// through its supervisor: see `TaskValue::start_task`, the only caller).
    fn start(task: TaskValue<Self>, start: Start) -> Self::Running;

    /// Starts a task without options on its own (an async task as its own tokio
    /// task); see `TaskValue::detach_task`.
    fn detach(task: TaskValue<Self>) -> Self::Detached;

    /// Starts a task with options: the supervision of its attempts (see
    /// [`Supervisor`]: `TaskValue::start_task` calls it through the task's options).
    fn start_supervised(task: TaskValue<Self>, start: Start) -> Self::Running;

    /// `detach` for a task with options.
    fn detach_supervised(task: TaskValue<Self>) -> Self::Detached;

    /// Whether a group polls this task in place, as part of the group's own future,
    /// rather than starting it (a plain async task, polled like `tokio::join!` polls
    /// its futures: nothing is moved or spawned).
    #[inline(always)]
    fn in_place(task: &TaskValue<Self>, start: Start) -> bool {
        let _ = (task, start);
        false
    }

    /// Polls a task that runs in place (see `in_place`), with its panic guard; `start`
    /// is what `in_place` was asked with.
    fn poll_in_place(
        task: Pin<&mut TaskValue<Self>>,
        cx: &mut Context<'_>,
        start: Start,
    ) -> Poll<Result<Self::Output, TaskError>> {
        let _ = (task, cx, start);
        unreachable!("only a task whose `in_place` is true is polled in place")
    }

    /// Runs the task to completion on the calling thread's behalf, without an
    /// executor, when the kind allows it (a process task on an idle worker); otherwise
    /// gives the task back.
    fn run_here(task: TaskValue<Self>) -> Result<Result<Self::Output, TaskError>, TaskValue<Self>> {
        Err(task)
    }

    /// Runs a whole collection of tasks of this kind as one batch, when the kind has a
    /// faster way than one task at a time (cpu tasks without options, see
    /// `cpu_batch`); `finish` judges each outcome for the group. Otherwise gives the
    /// tasks back.
    fn batch<I: Send + 'static, E: Send + 'static>(
        tasks: Tasks<Self>,
        finish: Finish<Self::Output, I, E>,
        reporter: Option<&Arc<Reporter>>,
    ) -> Result<BatchFuture<I, E>, Tasks<Self>> {
        let _ = (finish, reporter);
        Err(tasks)
    }

    /// Whether the task has a deadline: a thread that waits for it must watch the
    /// deadline, so it cannot run the task's body itself.
    #[inline]
    fn has_deadline(task: &TaskValue<Self>) -> bool {
        let _ = task;
        false
    }

    /// Splits a returned value into the success value and the task's own error.
    fn split(output: Self::Output) -> Result<Self::Ok, BoxError>;
}
