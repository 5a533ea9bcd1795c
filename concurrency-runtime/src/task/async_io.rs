//! `#[io_task] async fn`: a future polled on tokio.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::runtime::Handle;

use super::{Joined, Start, Task, TaskKind, task_common};
use crate::error::TaskError;
use crate::executor::{AbortOnDrop, runtime};

/// An async I/O task: returned by calling an `#[io_task] async fn`.
///
/// Awaited, or in `run_concurrently!(async; ...)`, the future is polled as part of
/// the caller's tokio task, exactly like `tokio::join!` does, with each poll guarded
/// so a panic fails only this task. From synchronous code on a plain thread it is
/// polled on that thread inside the embedded runtime's context, like
/// `Runtime::block_on`. It is spawned as its own tokio task in the collection form
/// (`run_concurrently!(for ...)`, like a `JoinSet`) and when a synchronous caller is a
/// rayon worker or sits inside a tokio context. Either way it is polled inside a
/// tokio runtime context.
///
/// The body alone: `.run_inline()` returns the future without the guard, to
/// `.await` in a unit test:
///
/// ```
/// use concurrency_runtime::io_task;
///
/// #[io_task]
/// async fn greet(name: String) -> String {
///     tokio::task::yield_now().await;
///     format!("hello {name}")
/// }
///
/// // From synchronous code:
/// assert_eq!(greet("sync".into()).run(), "hello sync");
/// // The body alone, e.g. in a `#[tokio::test]`:
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// assert_eq!(greet("test".into()).run_inline().await, "hello test");
/// # });
/// ```
#[must_use = "a task does nothing until it is awaited, `.run()`, or passed to `run_concurrently!`"]
pub struct AsyncIoTask<F> {
    name: &'static str,
    future: F,
}

impl<F> AsyncIoTask<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    /// Used by `#[io_task]`.
    #[doc(hidden)]
    pub fn new(name: &'static str, future: F) -> Self {
        AsyncIoTask { name, future }
    }

    /// The body's future itself, without the runtime context or the panic guard
    /// that running it as a task adds: `.await` it to test the body's logic.
    pub fn run_inline(self) -> F {
        self.future
    }
}

task_common!(AsyncIoTask<F>);

impl<F> Task for AsyncIoTask<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = F::Output;
    type Running = AsyncRunning<F>;
    const KIND: TaskKind = TaskKind::AsyncIo;

    fn name(&self) -> &'static str {
        self.name
    }

    fn start(self, start: Start) -> AsyncRunning<F> {
        let inline = Guarded {
            future: self.future,
            name: self.name,
            has_context: None,
        };
        match start {
            Start::Inline => AsyncRunning::Inline { guarded: inline },
            Start::Spawned => {
                let handle = match Handle::try_current() {
                    Ok(handle) if !crate::executor::spawn_async_on_embedded() => {
                        handle.spawn(inline)
                    }
                    _ => runtime().spawn(inline),
                };
                AsyncRunning::Spawned {
                    joined: Joined {
                        handle: AbortOnDrop(handle),
                        name: self.name,
                    },
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A started async task.
    #[doc(hidden)]
    #[project = AsyncRunningProj]
    pub enum AsyncRunning<F: Future> {
        Inline { #[pin] guarded: Guarded<F> },
        Spawned { joined: Joined<Result<F::Output, TaskError>> },
    }
}

impl<F: Future> Future for AsyncRunning<F> {
    type Output = Result<F::Output, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AsyncRunningProj::Inline { guarded } => guarded.poll(cx),
            AsyncRunningProj::Spawned { joined } => Pin::new(joined)
                .poll(cx)
                .map(|result| result.and_then(|inner| inner)),
        }
    }
}

pin_project_lite::pin_project! {
    /// The task's future with a tokio context and a panic guard around each poll.
    #[doc(hidden)]
    pub struct Guarded<F> {
        #[pin]
        future: F,
        name: &'static str,
        // Whether the first poll found a tokio context (looked up once: the lookup
        // clones the handle).
        has_context: Option<bool>,
    }
}

impl<F: Future> Future for Guarded<F> {
    type Output = Result<F::Output, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut future = this.future;
        let mut poll = || {
            catch_unwind(AssertUnwindSafe(|| {
                TaskKind::AsyncIo.enter(|| future.as_mut().poll(cx))
            }))
        };
        let has_context = *this
            .has_context
            .get_or_insert_with(|| Handle::try_current().is_ok());
        let polled = if has_context {
            poll()
        } else {
            // Polled from outside tokio (e.g. by a synchronous caller or another
            // executor): enter the embedded runtime so timers and sockets work.
            let _context = runtime().enter();
            poll()
        };
        match polled {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(TaskError::panicked(this.name, payload))),
        }
    }
}
