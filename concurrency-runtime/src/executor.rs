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

use crate::task::TaskKind;

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
/// `kinds` lists the group's task kinds (one entry per kind is enough). Where the
/// group's own future is polled depends on them and on the caller:
///
/// - async tasks, caller not on rayon: polled on the caller's thread inside a tokio
///   runtime context (the caller's, else the embedded one), exactly like
///   `Runtime::block_on(tokio::join!(..))`, so no extra thread hop;
/// - async tasks, caller on a rayon worker: the group is spawned on the embedded
///   runtime and the rayon thread keeps running rayon jobs while it waits;
/// - only cpu tasks, caller not on rayon: the group is driven from inside rayon's
///   pool, like `rayon::join` (one job injected, one wake-up back), and its tasks are
///   pushed to that worker's local queue;
/// - otherwise the caller parks until the tasks are done.
pub fn block_on_group<F>(kinds: &[TaskKind], group: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let on_rayon = rayon::current_thread_index().is_some();
    let any_async = kinds.iter().any(|kind| kind.is_async());
    if any_async && on_rayon {
        return match wait(AbortOnDrop(runtime().spawn(group))) {
            Ok(output) => output,
            // A group catches its tasks' panics, so this is a bug in the group itself.
            Err(error) if error.is_panic() => resume_unwind(error.into_panic()),
            Err(_) => {
                panic!("concurrency-runtime: the runtime shut down while a group was running")
            }
        };
    }
    if !on_rayon && !kinds.is_empty() && kinds.iter().all(|kind| *kind == TaskKind::Cpu) {
        return blocking_section(|| rayon::scope(|_| park_on(group)));
    }
    // Async tasks need a runtime whose drivers run on other threads while this one
    // waits: a multi-threaded one, or else the embedded runtime (a current-thread
    // runtime's driver would be stuck behind this very wait). Decided before entering
    // a context, which would change what `blocking_section` sees.
    let multi_thread = matches!(Handle::try_current(), Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread);
    blocking_section(|| {
        let _context = (any_async && !multi_thread).then(|| runtime().enter());
        park_on(group)
    })
}

/// Blocks the current thread until `future` completes.
fn wait<F: Future>(future: F) -> F::Output {
    blocking_section(|| park_on(future))
}

/// Runs `f`, which blocks. On a multi-threaded tokio worker, the worker's other
/// tasks are handed to another thread first so that `f` does not stall them.
fn blocking_section<R>(f: impl FnOnce() -> R) -> R {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// How often a waiting rayon worker looks for rayon work that arrived while it slept.
const RAYON_HELP_INTERVAL: Duration = Duration::from_micros(200);

/// Idle rounds a waiting rayon worker spins before it sleeps.
const SPIN_ROUNDS: u32 = 64;

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
        let mut idle_rounds = 0u32;
        while !unparker.woken.swap(false, Ordering::Acquire) {
            if on_rayon {
                // Run other rayon jobs (e.g. this group's own cpu tasks) instead of
                // sleeping, or a pool whose every thread waits here would deadlock.
                match rayon::yield_now() {
                    Some(rayon::Yield::Executed) => idle_rounds = 0,
                    _ if idle_rounds < SPIN_ROUNDS => {
                        // A sibling about to finish wakes us sooner than a sleep would
                        // end: spin briefly first, as rayon's own latches do.
                        idle_rounds += 1;
                        std::hint::spin_loop();
                    }
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
