//! How a synchronous caller waits for a group.
//!
//! A synchronous caller never builds a second runtime: it polls the group on its own
//! thread and parks in between. On a tokio multi-threaded worker it first moves the
//! worker's other tasks elsewhere (`block_in_place`); on a rayon worker it runs its
//! own group's queued cpu tasks while it waits, so nested groups cannot starve a
//! saturated pool (see `block_on_group`).

use std::cell::Cell;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::thread::{self, Thread};

use super::help::HelpScope;
use super::{Context, ENTERED_EMBEDDED, Flag, SPAWN_ASYNC, runtime};
use crate::kind::TaskKind;

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
    F: Future + Send,
    F::Output: Send,
{
    // The wait itself is compiled once, not once per call site: it polls the group
    // behind a `dyn Future` that leaves the output here.
    let mut output = None;
    {
        let group = pin!(async {
            output = Some(group.await);
        });
        wait_on(kinds, group);
    }
    output.unwrap_or_else(|| unreachable!("a group's wait returns once the group is done"))
}

/// `block_on_group`, for any group.
fn wait_on(kinds: Kinds, group: Pin<&mut (dyn Future<Output = ()> + Send + '_)>) {
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
    let context = Context::current();
    let spawn_async = any_async && (on_rayon || context.has_tokio());
    let wait = || {
        let _spawn = spawn_async.then(|| Flag::set(&SPAWN_ASYNC));
        let _context =
            (any_async && !spawn_async).then(|| (runtime().enter(), Flag::set(&ENTERED_EMBEDDED)));
        park_on(group, on_rayon && any_cpu)
    };
    within_blocking_section(context, wait)
}

/// What `block_on_group` needs to know of a group's task kinds.
#[derive(Debug, Clone, Copy)]
pub struct Kinds {
    any_async: bool,
    any_cpu: bool,
    all_cpu: bool,
}

impl Kinds {
    /// No task.
    pub(crate) const NONE: Kinds = Kinds {
        any_async: false,
        any_cpu: false,
        all_cpu: true,
    };

    /// Any kind of task (a form whose tasks are not known before it runs: `dag`).
    pub const ANY: Kinds = Kinds {
        any_async: true,
        any_cpu: true,
        all_cpu: false,
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
    pub(crate) const fn with(self, kind: TaskKind) -> Kinds {
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
}

/// Runs `f`, which blocks. On a multi-threaded tokio worker, the worker's other
/// tasks are handed to another thread first so that `f` does not stall them.
pub(crate) fn blocking_section<R>(f: impl FnOnce() -> R) -> R {
    within_blocking_section(Context::current(), f)
}

/// As `blocking_section`, in the context looked up already.
fn within_blocking_section<R>(context: Context, f: impl FnOnce() -> R) -> R {
    match context {
        Context::Tokio { multi_thread: true } => tokio::task::block_in_place(f),
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
    let mut cx = TaskContext::from_waker(&waker);
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
