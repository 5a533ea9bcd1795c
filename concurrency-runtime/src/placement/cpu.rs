//! `#[cpu_task] fn`: CPU-bound work on rayon's pool.

use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use super::cpu_batch::{self, BatchFuture, Finish};
use super::output::{OutputKind, Value, judge};
use super::seam::{Placement, Start, TaskValue, Tasks};
use crate::cancel::{self, CancelSource};
use crate::error::{BoxError, TaskError};
use crate::kind::TaskKind;
use crate::observe::{Attempt, Origin};
use crate::policy::{self, Bodies, Named, Permit, Policied, Policy};
use crate::progress::Reporter;
use crate::runtime::{self, Helpable};
use crate::sync::{Completion, lock};

/// Where a `#[cpu_task] fn` runs: rayon's work-stealing pool (the global one, or the
/// one a caller `install`ed), never a tokio worker, so number-crunching cannot stall
/// async I/O.
pub struct Cpu<F, O = Value> {
    body: Bodies<F>,
    output: PhantomData<fn() -> O>,
}

impl<F, O> std::fmt::Debug for Cpu<F, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cpu").finish_non_exhaustive()
    }
}

impl<F, T, O> Cpu<F, O>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
    O: OutputKind<T>,
{
    /// Used by `#[cpu_task]` for a task without options.
    #[inline]
    #[track_caller]
    pub fn new(name: &'static &'static str, body: F) -> TaskValue<Self> {
        TaskValue::plain(name, Self::of(Bodies::once(body)))
    }

    /// Used by `#[cpu_task(..)]` for a task with options.
    #[track_caller]
    pub fn with_policy(name: &'static &'static str, policy: Policy, body: F) -> TaskValue<Self> {
        TaskValue::with(name, policy, Self::of(Bodies::once(body)))
    }

    /// Used by `#[cpu_task(retries = N)]`: `make` builds each attempt's body.
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
        Cpu {
            body,
            output: PhantomData,
        }
    }
}

impl<F, T, O> TaskValue<Cpu<F, O>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
    O: OutputKind<T>,
{
    /// Runs the body on the current thread, with no executor: for unit tests.
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
    pub fn run_inline(self) -> T {
        (self.placement.body.into_first())()
    }
}

impl<F, T, O> Placement for Cpu<F, O>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
    O: OutputKind<T>,
{
    type Output = T;
    type Ok = O::Ok;
    type Running = Policied<CpuRunning<F, T>, T>;
    type Detached = Self::Running;
    const KIND: TaskKind = TaskKind::Cpu;

    fn start(task: TaskValue<Self>, _: Start) -> Self::Running {
        Policied::Plain {
            attempt: attempt(
                task.name,
                task.options.origin(),
                1,
                task.placement.body.into_first(),
                None,
                true,
            ),
        }
    }

    fn detach(task: TaskValue<Self>) -> Self::Running {
        Self::start(task, Start::Spawned)
    }

    fn start_supervised(task: TaskValue<Self>, _: Start) -> Self::Running {
        let (name, origin) = (task.name, task.options.origin().clone());
        // The thread that waits for a task with a deadline must watch the deadline,
        // not run the task's body itself.
        let helpable = task.options.timeout().is_none();
        policy::start_supervised(
            name,
            origin.call(),
            task.options,
            task.placement.body,
            judge::<O, T>(),
            move |body, permit, number| {
                attempt(name, &origin, number, body, permit.take(), helpable)
            },
        )
    }

    fn detach_supervised(task: TaskValue<Self>) -> Self::Running {
        Self::start_supervised(task, Start::Spawned)
    }

    fn batch<I: Send + 'static, E: Send + 'static>(
        tasks: Tasks<Self>,
        finish: Finish<T, I, E>,
        reporter: Option<&Arc<Reporter>>,
    ) -> Result<BatchFuture<I, E>, Tasks<Self>> {
        // Tasks with options are supervised one by one.
        if !tasks.iter().all(|task| task.options.is_plain()) {
            return Err(tasks);
        }
        Ok(cpu_batch::start(
            tasks.into_iter().map(|task| {
                let attempt = Attempt::new(task.options.origin(), task.name, TaskKind::Cpu, 1);
                (*task.name, task.placement.body.into_first(), attempt)
            }),
            finish,
            reporter.cloned(),
        ))
    }

    fn has_deadline(task: &TaskValue<Self>) -> bool {
        task.options.timeout().is_some()
    }

    fn split(output: T) -> Result<O::Ok, BoxError> {
        O::split(output)
    }
}

/// Queues one attempt of a cpu task on rayon. A `helpable` attempt may also be run
/// by a rayon thread that waits for its group (see `executor::offer_help`).
fn attempt<F, T>(
    name: &'static str,
    origin: &Origin,
    number: u32,
    body: F,
    permit: Option<Permit>,
    helpable: bool,
) -> CpuRunning<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // One allocation holds the body, the result, the waker and the cancellation flag.
    let attempt = Attempt::new(origin, name, TaskKind::Cpu, number);
    let job = Arc::new(CpuJob {
        parts: Mutex::new(Some((body, permit, attempt))),
        result: Completion::default(),
        cancelled: AtomicBool::new(false),
    });
    let queued = Arc::clone(&job);
    rayon::spawn(move || {
        queued.run_if_unclaimed();
    });
    if helpable {
        // A rayon thread that waits for this task's group may run it itself.
        runtime::offer_help(Arc::clone(&job) as Arc<dyn Helpable>);
    }
    CpuRunning { job, name }
}

/// A cpu task's attempt, run once by whichever comes first: the rayon job, or a
/// rayon thread that waits for the task's group.
struct CpuJob<F, T> {
    /// The body, and the permit of the task's limit, held until the body returns so
    /// that `limit` counts work that outlived a timeout.
    parts: Mutex<Option<(F, Option<Permit>, Attempt)>>,
    result: Completion<std::thread::Result<T>>,
    /// Raised when the waiting side goes away (timeout, cancellation, drop).
    cancelled: AtomicBool,
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
        let Some((body, permit, mut attempt)) = lock(&self.parts).take() else {
            return false;
        };
        // The task's future was dropped before this job started: never run it.
        if self.cancelled.load(Ordering::Relaxed) {
            return false;
        }
        let source: Arc<dyn CancelSource> = self.clone();
        let result = attempt.run(|| {
            catch_unwind(AssertUnwindSafe(|| {
                cancel::scope(source, || TaskKind::Cpu.enter(body))
            }))
        });
        attempt.finish(if result.is_ok() { "ok" } else { "panicked" });
        drop(permit);
        self.result.complete(result);
        true
    }
}

/// A started CPU task. Dropping it before the task finishes raises the task's
/// cancellation flag (see [`is_cancelled`](crate::is_cancelled)); a task that has
/// not started yet never starts.
pub struct CpuRunning<F, T> {
    job: Arc<CpuJob<F, T>>,
    name: &'static str,
}

impl<F, T> Named for CpuRunning<F, T> {
    fn task_name(&self) -> &'static str {
        self.name
    }
}

impl<F, T> Future for CpuRunning<F, T> {
    type Output = Result<T, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let name = self.name;
        self.job
            .result
            .poll(cx)
            .map(|result| result.map_err(|payload| TaskError::panicked(name, payload)))
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
