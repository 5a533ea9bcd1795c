//! The executors tasks run on, and how a synchronous caller waits for them.
//!
//! - Async I/O tasks and blocking I/O tasks use a tokio runtime that this crate
//!   builds lazily, once, on first use (multi-threaded, one worker per core, I/O and
//!   time drivers enabled). Blocking tasks go to its blocking pool, which grows past
//!   the core count (up to tokio's default of 512 threads).
//! - CPU tasks use rayon's global pool.
//!
//! A synchronous caller never builds a second runtime: it polls the group on its own
//! thread and parks in between. On a tokio multi-threaded worker it first moves the
//! worker's other tasks elsewhere (`block_in_place`); on a rayon worker it runs its
//! own group's queued cpu tasks while it waits, so nested groups cannot starve a
//! saturated pool (see `block_on_group`).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

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
/// `kinds` lists the group's task kinds (one entry per kind is enough). The group's
/// own future is always polled on the calling thread; what differs is where its
/// tasks run:
///
/// - only cpu tasks, caller not on rayon: the group is driven from inside rayon's
///   pool, like `rayon::join` (one job injected, one wake-up back), so its tasks are
///   pushed to that worker's local queue;
/// - async tasks, caller on a plain thread: they are polled right here inside the
///   embedded runtime's context, like `Runtime::block_on(tokio::join!(..))`;
/// - async tasks, caller on a rayon worker or inside any tokio context: they are
///   spawned on the embedded runtime (see `spawn_async_on_embedded`);
/// - a waiting rayon worker runs the cpu tasks its group queued that no other
///   thread took yet, then parks.
pub fn block_on_group<F>(kinds: Kinds, group: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let on_rayon = rayon::current_thread_index().is_some();
    let Kinds {
        any_async,
        any_cpu,
        all_cpu,
    } = kinds;
    if !on_rayon && any_cpu && all_cpu {
        return blocking_section(|| rayon::scope(|_| park_on(group, true)));
    }
    // Polling async tasks here is only sound on a thread that belongs to no executor:
    // a rayon worker must not hold them, and inside a tokio context (a current-thread
    // runtime blocked by this very wait, or a worker) tokio may defer their wake-ups
    // to the scheduler this wait blocks. There they are spawned on the embedded
    // runtime instead.
    let entered = ENTERED_EMBEDDED.get();
    // Looked up once (it clones the handle): both questions below need it.
    let flavor = if entered {
        None
    } else {
        Handle::try_current()
            .ok()
            .map(|handle| handle.runtime_flavor())
    };
    let in_tokio = entered || flavor.is_some();
    let spawn_async = any_async && (on_rayon || in_tokio);
    let wait = || {
        let _spawn = spawn_async.then(|| Flag::set(&SPAWN_ASYNC));
        let _context =
            (any_async && !spawn_async).then(|| (runtime().enter(), Flag::set(&ENTERED_EMBEDDED)));
        park_on(group, on_rayon && any_cpu)
    };
    // As `blocking_section`, with the lookup above.
    if flavor == Some(RuntimeFlavor::MultiThread) {
        tokio::task::block_in_place(wait)
    } else {
        wait()
    }
}

/// What `block_on_group` needs to know of a group's task kinds.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct Kinds {
    any_async: bool,
    any_cpu: bool,
    all_cpu: bool,
}

impl Kinds {
    /// No task.
    pub const NONE: Kinds = Kinds {
        any_async: false,
        any_cpu: false,
        all_cpu: true,
    };

    /// Whether every task is a cpu task that a waiting rayon thread could run itself.
    pub(crate) const fn all_cpu(self) -> bool {
        self.all_cpu
    }

    /// These kinds, with a task that a waiting thread must watch rather than run (a
    /// cpu task with a deadline): the caller then waits off rayon's pool, so that it
    /// does not hold a rayon thread that the task could use.
    pub(crate) const fn watched(self) -> Kinds {
        Kinds {
            all_cpu: false,
            ..self
        }
    }

    /// These kinds and `kind`.
    pub const fn with(self, kind: TaskKind) -> Kinds {
        let cpu = matches!(kind, TaskKind::Cpu);
        Kinds {
            any_async: self.any_async || kind.is_async(),
            any_cpu: self.any_cpu || cpu,
            all_cpu: self.all_cpu && cpu,
        }
    }
}

thread_local! {
    /// How many `park_on` waits are in progress on this thread.
    static WAIT_DEPTH: Cell<usize> = const { Cell::new(0) };
    /// This thread's waker target for `park_on`.
    static UNPARKER: Arc<Unparker> = Arc::new(Unparker {
        thread: thread::current(),
        woken: AtomicBool::new(false),
    });
    /// Set while this thread polls a group inside the embedded runtime's context that
    /// it entered itself: the thread is then no worker of that runtime, whatever
    /// `Handle::try_current` says, and must not call `block_in_place`.
    static ENTERED_EMBEDDED: Cell<bool> = const { Cell::new(false) };
    /// Set while a synchronous caller that must not poll async tasks waits for a
    /// group: its async tasks are spawned on the embedded runtime.
    static SPAWN_ASYNC: Cell<bool> = const { Cell::new(false) };
    /// The cpu tasks started by the group a rayon worker is waiting for, which it may
    /// run itself (see `offer_help`).
    static HELP_SCOPE: RefCell<Option<Vec<Arc<dyn Helpable>>>> = const { RefCell::new(None) };
}

/// Whether this thread polls a group inside the embedded runtime's context that it
/// entered itself (a synchronous caller's wait).
pub(crate) fn entered_embedded() -> bool {
    ENTERED_EMBEDDED.get()
}

/// Whether async tasks started now must be spawned on the embedded runtime.
pub(crate) fn spawn_async_on_embedded() -> bool {
    SPAWN_ASYNC.get()
}

/// Sets a thread-local flag until dropped, then restores its previous value.
struct Flag(&'static std::thread::LocalKey<Cell<bool>>, bool);

impl Flag {
    fn set(key: &'static std::thread::LocalKey<Cell<bool>>) -> Self {
        Flag(key, key.replace(true))
    }
}

impl Drop for Flag {
    fn drop(&mut self) {
        self.0.set(self.1);
    }
}

/// A queued cpu task (or batch of cpu tasks) that a waiting thread may run in place.
pub(crate) trait Helpable: Send + Sync {
    /// Runs the task (a batch: the tasks no thread claimed yet) unless it already
    /// started elsewhere; `true` if anything ran here.
    fn run_if_unclaimed(self: Arc<Self>) -> bool;
}

/// Offers a just-started cpu task or batch to the rayon worker that waits for its
/// group, if it was started by such a worker. Like `rayon::join`, the waiting thread then
/// runs its own group's tasks rather than sleeping; unlike `rayon::yield_now`, it
/// never runs unrelated jobs, so nested waits cannot pile up on its stack.
pub(crate) fn offer_help(job: Arc<dyn Helpable>) {
    HELP_SCOPE.with(|scope| {
        if let Some(jobs) = scope.borrow_mut().as_mut() {
            jobs.push(job);
        }
    });
}

/// Opens a help scope for one wait, restoring the enclosing one afterwards.
struct HelpScope(Option<Vec<Arc<dyn Helpable>>>);

impl HelpScope {
    fn open() -> Self {
        HelpScope(HELP_SCOPE.replace(Some(Vec::new())))
    }

    fn next(&self) -> Option<Arc<dyn Helpable>> {
        HELP_SCOPE.with(|scope| scope.borrow_mut().as_mut().and_then(Vec::pop))
    }
}

impl Drop for HelpScope {
    fn drop(&mut self) {
        HELP_SCOPE.set(self.0.take());
    }
}

/// Runs `f`, which blocks. On a multi-threaded tokio worker, the worker's other
/// tasks are handed to another thread first so that `f` does not stall them.
pub(crate) fn blocking_section<R>(f: impl FnOnce() -> R) -> R {
    if ENTERED_EMBEDDED.get() {
        return f();
    }
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Spin iterations a helping rayon thread makes before it sleeps (tens of µs).
const SPIN_LIMIT: u32 = 4096;

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

/// Ends one wait of `park_on`. A nested wait may have taken a wake-up meant for the
/// wait around it: it leaves one behind, so the enclosing wait polls again rather
/// than sleeps.
struct Nested<'a> {
    unparker: &'a Unparker,
    depth: usize,
}

impl Drop for Nested<'_> {
    fn drop(&mut self) {
        WAIT_DEPTH.set(self.depth);
        if self.depth > 0 {
            self.unparker.woken.store(true, Ordering::Release);
        }
    }
}

/// Polls `future` on this thread until it completes, parking in between. With
/// `help`, the thread first runs the cpu tasks its group started that no other
/// rayon thread has picked up yet (so a pool whose every thread waits on a nested
/// group still makes progress).
fn park_on<F: Future>(future: F, help: bool) -> F::Output {
    // Outside tokio's cooperative budget: inside another runtime's context an
    // exhausted budget would defer our wake-up to the scheduler this wait blocks.
    let mut future = pin!(tokio::task::unconstrained(future));
    // One per thread, reused by every wait on it, nested waits included (a task run
    // here that waits for its own group).
    // (A wait during thread-local teardown, e.g. in another thread-local's `Drop`,
    // gets one of its own.)
    let unparker = UNPARKER.try_with(Arc::clone).unwrap_or_else(|_| {
        Arc::new(Unparker {
            thread: thread::current(),
            woken: AtomicBool::new(false),
        })
    });
    let depth = WAIT_DEPTH.replace(WAIT_DEPTH.get() + 1);
    let _nested = Nested {
        unparker: &unparker,
        depth,
    };
    if depth == 0 {
        unparker.woken.store(false, Ordering::Relaxed); // stale wake-ups of earlier waits
    }
    let waker = Waker::from(Arc::clone(&unparker));
    let mut cx = Context::from_waker(&waker);
    let scope = help.then(HelpScope::open);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        let mut spins = 0u32;
        while !unparker.woken.swap(false, Ordering::Acquire) {
            match scope.as_ref().and_then(HelpScope::next) {
                Some(job) => {
                    job.run_if_unclaimed();
                }
                // A rayon thread waits for siblings that other rayon threads took:
                // they are usually short, so spin briefly before sleeping, as
                // rayon's own latches do (a sleep and wake-up across CPUs costs far
                // more than a short task).
                None if scope.is_some() && spins < SPIN_LIMIT => {
                    spins += 1;
                    if spins.is_multiple_of(64) {
                        thread::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                }
                None => thread::park(),
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
