//! `#[io_task] fn`: blocking I/O on a thread of tokio's blocking pool.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::output::judge;
use super::{
    Bodies, Joined, Options, OutputKind, Permit, Policied, Policy, Start, Task, TaskKind, Value,
    policy, task_common,
};
use crate::cancel::CancelFlag;
use crate::error::{BoxError, TaskError};
use crate::executor::{AbortOnDrop, runtime};

/// A blocking I/O task: returned by calling an `#[io_task] fn` (without `async`).
///
/// It runs on a thread of the embedded tokio runtime's blocking pool: never on an
/// async worker thread (where it would stall other tasks) nor on rayon's pool (where
/// it would take a core from CPU work). The pool grows past the number of cores, so
/// many blocking calls wait side by side.
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
#[must_use = "a task does nothing until it is awaited, `.run()`, or passed to `run_concurrently!`"]
pub struct BlockingIoTask<F, O = Value> {
    name: &'static str,
    body: Bodies<F>,
    policy: Options,
    output: PhantomData<fn() -> O>,
}

impl<F, T, O> BlockingIoTask<F, O>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
    O: OutputKind<T>,
{
    /// Used by `#[io_task]`.
    #[doc(hidden)]
    pub fn new(name: &'static str, policy: Policy, body: F) -> Self {
        Self::with(name, policy, Bodies::once(body))
    }

    /// Used by `#[io_task(retries = N)]`: `make` builds each attempt's body.
    #[doc(hidden)]
    pub fn retrying(
        name: &'static str,
        policy: Policy,
        make: impl FnMut() -> F + Send + 'static,
    ) -> Self {
        Self::with(name, policy, Bodies::repeating(make))
    }

    fn with(name: &'static str, policy: Policy, body: Bodies<F>) -> Self {
        BlockingIoTask {
            name,
            body,
            policy: Options::new(policy),
            output: PhantomData,
        }
    }

    /// Runs the body on the current thread, with no executor: for unit tests.
    pub fn run_inline(self) -> T {
        (self.body.into_first())()
    }
}

task_common!(BlockingIoTask<F, O>);

// Not listed in errors: a value that is not a task gets `Task`\'s own message.
#[diagnostic::do_not_recommend]
impl<F, T, O> Task for BlockingIoTask<F, O>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
    O: OutputKind<T>,
{
    type Output = T;
    type Ok = O::Ok;
    type Running = Policied<BlockingRunning<T>, T>;
    const KIND: TaskKind = TaskKind::BlockingIo;
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
        policy::start(
            name,
            self.policy,
            self.body,
            judge::<O, T>(),
            move |body, permit| attempt(name, body, permit.take()),
        )
    }

    type Detached = Self::Running;

    fn detach(self) -> Self::Running {
        self.start(Start::Spawned)
    }

    fn split(output: T) -> Result<O::Ok, BoxError> {
        O::split(output)
    }
}

/// Starts one attempt of a blocking task on the blocking pool.
fn attempt<F, T>(name: &'static str, body: F, permit: Option<Permit>) -> BlockingRunning<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let cancel = CancelFlag::default();
    let flag = cancel.clone();
    let handle = runtime().spawn_blocking(move || {
        // Held until the body returns, so that `limit` counts work that outlived a
        // timeout.
        let _permit = permit;
        flag.scope(|| TaskKind::BlockingIo.enter(body))
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
#[doc(hidden)]
#[derive(Debug)]
pub struct BlockingRunning<T> {
    joined: Joined<T>,
    cancel: CancelFlag,
}

impl<T> super::Named for BlockingRunning<T> {
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
