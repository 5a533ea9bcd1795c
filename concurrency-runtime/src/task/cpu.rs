//! `#[cpu_task] fn`: CPU-bound work on rayon's pool.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::{Start, Task, TaskKind, task_common};
use crate::error::TaskError;
use crate::executor::Helpable;

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
pub struct CpuTask<F> {
    name: &'static str,
    body: F,
}

impl<F, T> CpuTask<F>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    /// Used by `#[cpu_task]`.
    #[doc(hidden)]
    pub fn new(name: &'static str, body: F) -> Self {
        CpuTask { name, body }
    }

    /// Runs the body on the current thread, with no executor: for unit tests.
    pub fn run_inline(self) -> T {
        (self.body)()
    }
}

task_common!(CpuTask<F>);

impl<F, T> Task for CpuTask<F>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    type Output = T;
    type Running = CpuRunning<T>;
    const KIND: TaskKind = TaskKind::Cpu;

    fn name(&self) -> &'static str {
        self.name
    }

    fn start(self, _: Start) -> CpuRunning<T> {
        let (sender, receiver) = oneshot::channel();
        let job = Arc::new(CpuJob {
            parts: Mutex::new(Some((self.body, sender))),
        });
        let queued = Arc::clone(&job);
        rayon::spawn(move || {
            queued.run_if_unclaimed();
        });
        // A rayon thread that waits for this task's group may run it itself.
        crate::executor::offer_help(job);
        CpuRunning {
            receiver,
            name: self.name,
        }
    }
}

/// A cpu task's body and result channel, run once by whichever comes first: the
/// rayon job, or a rayon thread that waits for the task's group.
struct CpuJob<F, T> {
    parts: Mutex<Option<(F, oneshot::Sender<std::thread::Result<T>>)>>,
}

impl<F, T> Helpable for CpuJob<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    fn run_if_unclaimed(&self) -> bool {
        let parts = self
            .parts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let Some((body, sender)) = parts else {
            return false;
        };
        // The group was dropped before this job started: never run it.
        if sender.is_closed() {
            return false;
        }
        let _ = sender.send(catch_unwind(AssertUnwindSafe(|| TaskKind::Cpu.enter(body))));
        true
    }
}

/// A started CPU task.
#[doc(hidden)]
pub struct CpuRunning<T> {
    receiver: oneshot::Receiver<std::thread::Result<T>>,
    name: &'static str,
}

impl<T> Future for CpuRunning<T> {
    type Output = Result<T, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let name = self.name;
        Pin::new(&mut self.receiver)
            .poll(cx)
            .map(|received| match received {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(payload)) => Err(TaskError::panicked(name, payload)),
                Err(_) => Err(TaskError::cancelled(name)),
            })
    }
}

impl<T> std::fmt::Debug for CpuRunning<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuRunning")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
