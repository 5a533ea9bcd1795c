//! `#[cpu_task] fn`: CPU-bound work on rayon's pool.

use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::output::judge;
use super::{
    Bodies, Options, OutputKind, Permit, Policied, Policy, Start, Task, TaskKind, Value, policy,
    task_common,
};
use crate::cancel::{self, CancelSource};
use crate::error::{BoxError, TaskError};
use crate::executor::Helpable;
use crate::group::{Mode, Tasks};

use super::cpu_batch::{self, BatchFuture};

/// A CPU task: returned by calling a `#[cpu_task] fn`.
///
/// It runs on rayon's global work-stealing pool (one thread per core), never on a
/// tokio worker, so number-crunching cannot stall async I/O.
///
/// ```
/// use concurrency_runtime::cpu_task;
///
/// #[cpu_task]
/// fn sum_of_squares(n: u64) -> u64 {
///     (0..n).map(|i| i * i).sum()
/// }
///
/// assert_eq!(sum_of_squares(4).run(), 14); // on rayon, waits for it
/// assert_eq!(sum_of_squares(4).run_inline(), 14); // the body, on this thread
/// ```
#[must_use = "a task does nothing until it is awaited, `.run()`, or passed to `run_concurrently!`"]
pub struct CpuTask<F, O = Value> {
    name: &'static str,
    body: Bodies<F>,
    policy: Options,
    output: PhantomData<fn() -> O>,
}

impl<F, T, O> CpuTask<F, O>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
    O: OutputKind<T>,
{
    /// Used by `#[cpu_task]`.
    #[doc(hidden)]
    pub fn new(name: &'static str, policy: Policy, body: F) -> Self {
        Self::with(name, policy, Bodies::once(body))
    }

    /// Used by `#[cpu_task(retries = N)]`: `make` builds each attempt's body.
    #[doc(hidden)]
    pub fn retrying(
        name: &'static str,
        policy: Policy,
        make: impl FnMut() -> F + Send + 'static,
    ) -> Self {
        Self::with(name, policy, Bodies::repeating(make))
    }

    fn with(name: &'static str, policy: Policy, body: Bodies<F>) -> Self {
        CpuTask {
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

task_common!(CpuTask<F, O>);

// Not listed in errors: a value that is not a task gets `Task`\'s own message.
#[diagnostic::do_not_recommend]
impl<F, T, O> Task for CpuTask<F, O>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
    O: OutputKind<T>,
{
    type Output = T;
    type Ok = O::Ok;
    type Running = Policied<CpuRunning<F, T>, T>;
    const KIND: TaskKind = TaskKind::Cpu;
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
        // The thread that waits for a task with a deadline must watch the deadline,
        // not run the task's body itself.
        let helpable = self.policy.timeout().is_none();
        policy::start(
            name,
            self.policy,
            self.body,
            judge::<O, T>(),
            move |body, permit| attempt(name, body, permit.take(), helpable),
        )
    }

    type Detached = Self::Running;

    fn detach(self) -> Self::Running {
        self.start(Start::Spawned)
    }

    fn batch<M: Mode<Self>>(
        tasks: Tasks<Self>,
    ) -> Result<BatchFuture<M::Item, M::Error>, Tasks<Self>> {
        // Tasks with options are supervised one by one.
        if !tasks.iter().all(|task| task.policy.is_plain()) {
            return Err(tasks);
        }
        Ok(cpu_batch::start(
            tasks
                .into_iter()
                .map(|task| (task.name, task.body.into_first())),
            M::finish,
        ))
    }

    fn has_deadline(&self) -> bool {
        self.policy.timeout().is_some()
    }

    fn split(output: T) -> Result<O::Ok, BoxError> {
        O::split(output)
    }
}

/// Queues one attempt of a cpu task on rayon. A `helpable` attempt may also be run
/// by a rayon thread that waits for its group (see `executor::offer_help`).
fn attempt<F, T>(
    name: &'static str,
    body: F,
    permit: Option<Permit>,
    helpable: bool,
) -> CpuRunning<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // One allocation holds the body, the result, the waker and the cancellation flag.
    let job = Arc::new(CpuJob {
        parts: Mutex::new(Some((body, permit))),
        slot: Mutex::new(Slot {
            result: None,
            waker: None,
        }),
        cancelled: AtomicBool::new(false),
    });
    let queued = Arc::clone(&job);
    rayon::spawn(move || {
        queued.run_if_unclaimed();
    });
    if helpable {
        // A rayon thread that waits for this task's group may run it itself.
        crate::executor::offer_help(Arc::clone(&job) as Arc<dyn Helpable>);
    }
    CpuRunning { job, name }
}

/// A cpu task's attempt, run once by whichever comes first: the rayon job, or a
/// rayon thread that waits for the task's group.
struct CpuJob<F, T> {
    /// The body, and the permit of the task's limit, held until the body returns so
    /// that `limit` counts work that outlived a timeout.
    parts: Mutex<Option<(F, Option<Permit>)>>,
    slot: Mutex<Slot<T>>,
    /// Raised when the waiting side goes away (timeout, cancellation, drop).
    cancelled: AtomicBool,
}

/// Where the result waits for the task's future.
struct Slot<T> {
    result: Option<std::thread::Result<T>>,
    waker: Option<Waker>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<F: Send, T: Send> CancelSource for CpuJob<F, T> {
    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

impl<F, T> Helpable for CpuJob<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn run_if_unclaimed(self: Arc<Self>) -> bool {
        let Some((body, permit)) = lock(&self.parts).take() else {
            return false;
        };
        // The task's future was dropped before this job started: never run it.
        if self.cancelled.load(Ordering::Relaxed) {
            return false;
        }
        let source: Arc<dyn CancelSource> = self.clone();
        let result = catch_unwind(AssertUnwindSafe(|| {
            cancel::scope(source, || TaskKind::Cpu.enter(body))
        }));
        drop(permit);
        let waker = {
            let mut slot = lock(&self.slot);
            slot.result = Some(result);
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }
}

/// A started CPU task. Dropping it before the task finishes raises the task's
/// cancellation flag (see [`is_cancelled`](crate::is_cancelled)); a task that has
/// not started yet never starts.
#[doc(hidden)]
pub struct CpuRunning<F, T> {
    job: Arc<CpuJob<F, T>>,
    name: &'static str,
}

impl<F, T> super::Named for CpuRunning<F, T> {
    fn task_name(&self) -> &'static str {
        self.name
    }
}

impl<F, T> Future for CpuRunning<F, T> {
    type Output = Result<T, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = lock(&self.job.slot);
        match slot.result.take() {
            Some(Ok(value)) => Poll::Ready(Ok(value)),
            Some(Err(payload)) => Poll::Ready(Err(TaskError::panicked(self.name, payload))),
            None => {
                if !slot
                    .waker
                    .as_ref()
                    .is_some_and(|waker| waker.will_wake(cx.waker()))
                {
                    slot.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

impl<F, T> Drop for CpuRunning<F, T> {
    fn drop(&mut self) {
        self.job.cancelled.store(true, Ordering::Relaxed);
    }
}

impl<F, T> std::fmt::Debug for CpuRunning<F, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuRunning")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
