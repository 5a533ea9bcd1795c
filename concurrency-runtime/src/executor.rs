//! The executors tasks run on, and how a synchronous caller waits for them.
//!
//! - Async I/O tasks and blocking I/O tasks use a tokio runtime that this crate
//!   builds lazily, once, on first use (multi-threaded, one worker per core, I/O and
//!   time drivers enabled). Blocking tasks go to its blocking pool, which grows past
//!   the core count (up to tokio's default of 512 threads).
//! - CPU tasks use rayon's global pool.
//!
//! A synchronous caller never builds a second runtime: it parks its own thread until
//! the group is done. On a tokio multi-threaded worker it first moves the worker's
//! other tasks elsewhere (`block_in_place`); on a rayon worker it keeps executing
//! rayon jobs while it waits, so nested groups cannot starve a saturated pool.

use std::future::Future;
use std::panic::resume_unwind;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Duration;

use tokio::runtime::{Handle, Runtime, RuntimeFlavor};
use tokio::task::JoinHandle;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The embedded tokio runtime's handle, building the runtime on first use.
pub(crate) fn runtime() -> &'static Handle {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("concurrency-io")
                .build()
                .unwrap_or_else(|error| {
                    panic!("concurrency-runtime: could not start the tokio runtime: {error}")
                })
        })
        .handle()
}

/// Runs a group to completion from synchronous code and returns its output.
///
/// A group with an async task is spawned on the embedded runtime, so its
/// orchestration runs on a worker and the caller is woken once, at the end; a
/// group of thread and cpu tasks only needs the caller to wait.
pub fn block_on_group<F>(needs_runtime: bool, group: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if !needs_runtime {
        return wait(group);
    }
    match wait(AbortOnDrop(runtime().spawn(group))) {
        Ok(output) => output,
        // A group catches its tasks' panics, so this is a bug in the group itself.
        Err(error) if error.is_panic() => resume_unwind(error.into_panic()),
        Err(_) => panic!("concurrency-runtime: the runtime shut down while a group was running"),
    }
}

/// Blocks the current thread until `future` completes.
fn wait<F: Future>(future: F) -> F::Output {
    match Handle::try_current() {
        // On a multi-threaded worker, hand the worker's other tasks to another thread
        // first so this wait does not stall them.
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| park_on(future))
        }
        _ => park_on(future),
    }
}

/// How often a waiting rayon worker looks for rayon work that arrived while it slept.
const RAYON_HELP_INTERVAL: Duration = Duration::from_micros(200);

struct Unparker {
    thread: Thread,
    woken: AtomicBool,
}

impl Wake for Unparker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

fn park_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let unparker = Arc::new(Unparker {
        thread: thread::current(),
        woken: AtomicBool::new(false),
    });
    let waker = Waker::from(Arc::clone(&unparker));
    let mut cx = Context::from_waker(&waker);
    let on_rayon = rayon::current_thread_index().is_some();
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        while !unparker.woken.swap(false, Ordering::Acquire) {
            if on_rayon {
                // Run other rayon jobs (e.g. this group's own cpu tasks) instead of
                // sleeping, or a pool whose every thread waits here would deadlock.
                match rayon::yield_now() {
                    Some(rayon::Yield::Executed) => {}
                    _ => thread::park_timeout(RAYON_HELP_INTERVAL),
                }
            } else {
                thread::park();
            }
        }
    }
}

/// A `JoinHandle` that aborts its task when dropped: a dropped group cancels its
/// async tasks and keeps queued blocking tasks from starting.
pub(crate) struct AbortOnDrop<T>(pub(crate) JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}
