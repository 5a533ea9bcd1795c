//! A collection of cpu tasks (`run_concurrently!(for ...)`) run as one batch.
//!
//! Started one by one, each cpu task costs a rayon job and a shared record (two
//! allocations), a lock and a wake-up. A batch holds every task's body and result
//! slot in two arrays instead; a few rayon jobs (one per pool thread), and the
//! rayon thread that waits for the batch if there is one, claim the tasks one by one
//! by index from a shared counter (one at a time, so that an idle thread can always
//! take the next task: a thread never holds tasks it has not started). The waiting
//! side is woken once: when the last task is done, or at the first failure that
//! stops the group.
//!
//! What stays as for a single task: each body runs on rayon, in input order of
//! claims, inside its own panic guard, with [`TaskKind::current`] reporting a cpu
//! task; a failure in a fail-fast group stops the tasks that have not started and
//! raises [`is_cancelled`](crate::is_cancelled) for the running ones; dropping the
//! group does the same. Tasks with options (timeout, retries, limit) keep the one by
//! one path, which knows how to supervise them.

use std::cell::UnsafeCell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use crate::cancel::{self, CancelSource};
use crate::error::TaskError;
use crate::kind::TaskKind;
use crate::observe::Attempt;
use crate::progress::Reporter;
use crate::runtime::{self, Helpable};
use crate::sync::{WakerCell, lock};

/// How a finished task is judged for its group (the group mode's `finish`).
#[allow(unreachable_pub)] // named by the sealed `Placement::batch`
pub type Finish<T, I, E> = fn(&'static str, Result<T, TaskError>, Vec<TaskError>) -> Result<I, E>;

/// The future of a batch: the items in input order, or the failure that stopped it.
#[allow(unreachable_pub)] // named by the sealed `Placement::batch`
pub type BatchFuture<I, E> = Pin<Box<dyn Future<Output = Result<Vec<I>, E>> + Send>>;

/// A slot that only the thread that claimed its index touches (see `Batch`).
type Claimed<T> = UnsafeCell<Option<T>>;

/// A task of a batch: its name, its body, and its attempt's span (feature `tracing`).
type Body<F> = (&'static str, F, Attempt);

/// Starts the batch of `tasks` (name and body each) on rayon.
pub(crate) fn start<F, T, I, E>(
    tasks: impl Iterator<Item = (&'static str, F, Attempt)>,
    finish: Finish<T, I, E>,
    reporter: Option<Arc<Reporter>>,
) -> BatchFuture<I, E>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
    I: Send + 'static,
    E: Send + 'static,
{
    let bodies: Box<[Claimed<Body<F>>]> = tasks.map(|task| UnsafeCell::new(Some(task))).collect();
    let count = bodies.len();
    let threads = rayon::current_num_threads().max(1);
    let batch = Arc::new(Batch {
        bodies,
        results: (0..count).map(|_| UnsafeCell::new(None)).collect(),
        finish,
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        failure: Mutex::new(None),
        waker: WakerCell::default(),
        reporter,
    });
    for _ in 0..threads.min(count) {
        let batch = Arc::clone(&batch);
        rayon::spawn(move || {
            batch.work();
        });
    }
    if count > 0 {
        // A rayon thread that waits for this group works on the batch too.
        runtime::offer_help(Arc::clone(&batch) as Arc<dyn Helpable>);
    }
    Box::pin(Waiting { batch })
}

struct Batch<F, T, I, E> {
    /// Each task's name, body and attempt span, taken by the thread that claims the
    /// task.
    bodies: Box<[Claimed<Body<F>>]>,
    /// Each task's judged value, written by the thread that ran it.
    results: Box<[Claimed<I>]>,
    finish: Finish<T, I, E>,
    /// The next unclaimed index.
    next: AtomicUsize,
    /// How many tasks have run to their end (each thread adds its own when it stops
    /// claiming).
    done: AtomicUsize,
    /// Raised by a failure that stops the group, or when the group is dropped.
    stop: AtomicBool,
    /// The first failure that stopped the group.
    failure: Mutex<Option<E>>,
    waker: WakerCell,
    /// `progress(..)`: told of each task that ends.
    reporter: Option<Arc<Reporter>>,
}

// SAFETY: `bodies[i]` and `results[i]` are touched by one thread at a time: the
// thread that claimed index `i` (the counter `next` hands each index out once) takes
// the body and writes the result, then, when it stops claiming, publishes its
// results with one release increment of `done`; the waiting side reads the results
// only after an acquire load of `done` that sees every task done. The other fields are atomics and mutexes. The bodies
// (`F: Send`) and items (`I: Send`) only move between threads, never shared.
unsafe impl<F: Send, T, I: Send, E: Send> Sync for Batch<F, T, I, E> {}

impl<F, T, I, E> Batch<F, T, I, E>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
    I: Send + 'static,
    E: Send + 'static,
{
    /// Claims and runs tasks until none is left or the batch is stopped; `true` if
    /// this thread ran any.
    fn work(self: &Arc<Self>) -> bool {
        let source: Arc<dyn CancelSource> = Arc::clone(self) as Arc<dyn CancelSource>;
        cancel::scope(source, || TaskKind::Cpu.enter(|| self.claim_and_run()))
    }

    fn claim_and_run(&self) -> bool {
        let count = self.bodies.len();
        let mut ran = false;
        // One task per claim: a claimed task that has not started could not be taken
        // by an idle thread, so claiming several would let one slow task hold back
        // the ones behind it (or a task that waits for a later sibling, forever).
        let mut finished = 0;
        while !self.stop.load(Ordering::Relaxed) {
            let index = self.next.fetch_add(1, Ordering::Relaxed);
            if index >= count {
                break;
            }
            finished += usize::from(self.run(index));
            ran = true;
        }
        // Published once per thread rather than per task (a counter every thread
        // bumps per task would bounce between the cores): the results this thread
        // wrote become visible with this release.
        if finished > 0 && self.done.fetch_add(finished, Ordering::AcqRel) + finished == count {
            self.wake();
        }
        ran
    }

    /// Runs the task at `index`, which this thread claimed; `true` if it gave an
    /// item (written to its slot, to be published by the caller).
    fn run(&self, index: usize) -> bool {
        // SAFETY: this thread claimed `index` (see the `Sync` impl): no other thread
        // touches this body.
        let Some((name, body, mut attempt)) = (unsafe { (*self.bodies[index].get()).take() })
        else {
            return false;
        };
        let outcome = attempt
            .run(|| catch_unwind(AssertUnwindSafe(body)))
            .map_err(|payload| TaskError::panicked(name, payload));
        attempt.finish_with(&outcome);
        if let Some(reporter) = &self.reporter {
            reporter.ended(1);
        }
        match (self.finish)(name, outcome, Vec::new()) {
            Ok(item) => {
                // SAFETY: as above, for this task's result slot; it is read only after
                // the increment of `done` that publishes it (`claim_and_run`).
                unsafe { *self.results[index].get() = Some(item) };
                true
            }
            Err(error) => {
                lock(&self.failure).get_or_insert(error);
                self.stop.store(true, Ordering::Relaxed);
                self.wake();
                false
            }
        }
    }

    fn wake(&self) {
        self.waker.wake_last();
    }
}

impl<F: Send, T, I: Send, E: Send> CancelSource for Batch<F, T, I, E> {
    fn is_cancelled(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

impl<F, T, I, E> Helpable for Batch<F, T, I, E>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
    I: Send + 'static,
    E: Send + 'static,
{
    fn run_if_unclaimed(self: Arc<Self>) -> bool {
        self.work()
    }
}

/// The waiting side of a batch. Dropping it stops the batch.
struct Waiting<F, T, I, E> {
    batch: Arc<Batch<F, T, I, E>>,
}

impl<F, T, I, E> Future for Waiting<F, T, I, E>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
    I: Send + 'static,
    E: Send + 'static,
{
    type Output = Result<Vec<I>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let batch = &self.batch;
        // Registered before looking, so a task that ends meanwhile wakes us.
        batch.waker.register(cx.waker());
        if let Some(error) = lock(&batch.failure).take() {
            return Poll::Ready(Err(error));
        }
        if batch.done.load(Ordering::Acquire) < batch.bodies.len() {
            return Poll::Pending;
        }
        let items = batch
            .results
            .iter()
            .map(|slot| {
                // SAFETY: every task is done (the acquire load above saw the release
                // increment of each), and no thread touches a result slot after that.
                let item = unsafe { (*slot.get()).take() };
                item.unwrap_or_else(|| {
                    unreachable!("a batch's tasks are all done, each gave an item")
                })
            })
            .collect();
        Poll::Ready(Ok(items))
    }
}

impl<F, T, I, E> Drop for Waiting<F, T, I, E> {
    fn drop(&mut self) {
        // Tasks not started yet never start; running ones see `is_cancelled()`.
        self.batch.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    //! Each SAFETY argument of the batch, exercised (also under valgrind's memcheck:
    //! see ARCHITECTURE.md).

    use super::*;
    use std::convert::Infallible;
    use std::sync::atomic::AtomicUsize;
    use std::task::Waker;

    /// Counts its drops.
    struct Dropped(Arc<AtomicUsize>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn keep(
        _: &'static str,
        result: Result<usize, TaskError>,
        _: Vec<TaskError>,
    ) -> Result<usize, Infallible> {
        Ok(result.unwrap_or(usize::MAX))
    }

    fn fail_on_panic(
        _: &'static str,
        result: Result<usize, TaskError>,
        _: Vec<TaskError>,
    ) -> Result<usize, TaskError> {
        result
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        loop {
            if let Poll::Ready(output) = future
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
            {
                return output;
            }
            std::thread::yield_now();
        }
    }

    fn attempt() -> Attempt {
        Attempt::new(
            &crate::observe::Origin::here(),
            "t",
            crate::kind::TaskKind::Cpu,
            1,
        )
    }

    #[test]
    fn every_result_written_on_any_thread_comes_back_in_order() {
        let drops = Arc::new(AtomicUsize::new(0));
        let tasks = (0..2000).map(|index| {
            let guard = Dropped(Arc::clone(&drops));
            (
                "t",
                move || {
                    let _guard = guard;
                    index * 2
                },
                attempt(),
            )
        });
        let items = block_on(start(tasks, keep, None)).expect("infallible");
        assert_eq!(items, (0..2000).map(|index| index * 2).collect::<Vec<_>>());
        assert_eq!(
            drops.load(Ordering::SeqCst),
            2000,
            "each body ran and was dropped once"
        );
    }

    #[test]
    fn a_stopped_or_dropped_batch_drops_the_bodies_it_never_ran() {
        let drops = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(std::sync::Barrier::new(2));
        let first = {
            let release = Arc::clone(&release);
            let guard = Dropped(Arc::clone(&drops));
            Box::new(move || -> usize {
                let _guard = guard;
                release.wait();
                panic!("stops the batch")
            }) as Box<dyn FnOnce() -> usize + Send>
        };
        let rest = (0..100).map(|_| {
            let guard = Dropped(Arc::clone(&drops));
            Box::new(move || -> usize {
                let _guard = guard;
                1
            }) as Box<dyn FnOnce() -> usize + Send>
        });
        // One rayon thread: the failing task runs first and holds it at the barrier.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool");
        let waiting = pool.install(|| {
            start(
                std::iter::once(("t", first, attempt()))
                    .chain(rest.map(|body| ("t", body, attempt()))),
                fail_on_panic,
                None,
            )
        });
        release.wait();
        assert!(block_on(waiting).is_err(), "the panic stopped the batch");
        // The batch is freed when its last job ends; every body, run or not, is
        // dropped exactly once by then.
        drop(pool);
        let started = std::time::Instant::now();
        while drops.load(Ordering::SeqCst) < 101
            && started.elapsed() < std::time::Duration::from_secs(30)
        {
            std::thread::yield_now();
        }
        assert_eq!(drops.load(Ordering::SeqCst), 101);
    }
}
