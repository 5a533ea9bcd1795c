//! Each annotation runs its task on the executor it names, and tasks of a group run
//! at the same time (proved with barriers, not timing).

mod support;

use std::future::IntoFuture;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Barrier};

use concurrency_runtime::{TaskKind, cpu_task, io_task, run_concurrently};
use support::{watchdog, whole_rayon_pool};

/// What a task saw of the thread it ran on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    tokio_context: bool,
    rayon_index: Option<usize>,
    /// `Handle::block_on` panics on a tokio async worker thread and works elsewhere.
    async_worker: bool,
    kind: Option<TaskKind>,
}

fn seen() -> Seen {
    let handle = tokio::runtime::Handle::try_current();
    let async_worker = match &handle {
        Ok(handle) => catch_unwind(AssertUnwindSafe(|| handle.block_on(async {}))).is_err(),
        Err(_) => false,
    };
    Seen {
        tokio_context: handle.is_ok(),
        rayon_index: rayon::current_thread_index(),
        async_worker,
        kind: TaskKind::current(),
    }
}

#[io_task]
async fn async_probe() -> Seen {
    Seen {
        tokio_context: tokio::runtime::Handle::try_current().is_ok(),
        rayon_index: rayon::current_thread_index(),
        // Inside a spawned tokio task (a `block_on` future is not one).
        async_worker: tokio::task::try_id().is_some(),
        kind: TaskKind::current(),
    }
}

#[io_task]
fn blocking_probe() -> Seen {
    seen()
}

#[cpu_task]
fn cpu_probe() -> Seen {
    seen()
}

#[test]
fn async_io_task_runs_in_a_tokio_task() {
    // From synchronous code the future is polled like `Runtime::block_on` polls it:
    // on the calling thread, inside the runtime's context.
    let seen = watchdog(|| async_probe().run());
    assert!(seen.tokio_context, "{seen:?}");
    assert_eq!(seen.rayon_index, None);
    assert_eq!(seen.kind, Some(TaskKind::AsyncIo));
    // Awaited inside a tokio task, it is polled as part of that task.
    let seen = watchdog(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("runtime");
        runtime.block_on(async {
            tokio::spawn(async { async_probe().await })
                .await
                .expect("no panic")
        })
    });
    assert!(seen.tokio_context && seen.async_worker, "{seen:?}");
    assert_eq!(seen.kind, Some(TaskKind::AsyncIo));
}

#[test]
fn blocking_io_task_runs_on_a_blocking_thread() {
    let seen = watchdog(|| blocking_probe().run());
    assert!(
        seen.tokio_context,
        "blocking threads belong to the tokio runtime: {seen:?}"
    );
    assert!(
        !seen.async_worker,
        "must not run on an async worker: {seen:?}"
    );
    assert_eq!(seen.rayon_index, None, "must not run on rayon: {seen:?}");
    assert_eq!(seen.kind, Some(TaskKind::BlockingIo));
}

#[test]
fn cpu_task_runs_on_rayon() {
    let seen = watchdog(|| cpu_probe().run());
    assert!(seen.rayon_index.is_some(), "{seen:?}");
    assert!(
        !seen.tokio_context,
        "must not run on a tokio thread: {seen:?}"
    );
    assert_eq!(seen.kind, Some(TaskKind::Cpu));
}

#[test]
fn cpu_tasks_of_a_collection_run_on_rayon_from_sync_and_async_callers() {
    let from_sync = watchdog(|| run_concurrently!(for (0..100).map(|_| cpu_probe())));
    let from_async = watchdog(|| {
        tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(async { run_concurrently!(async; for (0..100).map(|_| cpu_probe())).await })
    });
    for seen in from_sync.iter().chain(&from_async) {
        assert!(seen.rayon_index.is_some(), "{seen:?}");
        assert!(
            !seen.tokio_context,
            "must not run on a tokio thread: {seen:?}"
        );
        assert_eq!(seen.kind, Some(TaskKind::Cpu));
    }
}

#[test]
fn placement_holds_inside_a_mixed_group_and_under_a_user_runtime() {
    let (a, b, c) = watchdog(|| run_concurrently!(async_probe(), blocking_probe(), cpu_probe()));
    assert_eq!(a.kind, Some(TaskKind::AsyncIo));
    assert!(a.tokio_context && a.rayon_index.is_none());
    assert!(!b.async_worker && b.rayon_index.is_none());
    assert!(c.rayon_index.is_some() && !c.tokio_context);

    let (a, b, c) = watchdog(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            run_concurrently!(async; async_probe(), blocking_probe(), cpu_probe()).await
        })
    });
    assert!(a.tokio_context && a.kind == Some(TaskKind::AsyncIo));
    assert!(!b.async_worker && b.rayon_index.is_none());
    assert!(c.rayon_index.is_some() && !c.tokio_context);
}

/// A minimal executor that is not tokio: polls `future` on this thread, parking
/// until woken.
fn block_on_plain_thread<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

#[io_task]
async fn sleep_then_probe() -> Seen {
    // Needs a tokio timer: panics outside a runtime's context.
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    async_probe().await
}

#[test]
fn an_async_group_polled_by_another_executor_runs_its_tasks_inside_tokio() {
    // The group's async tasks are polled in place, by the executor that polls the
    // group (here not tokio): each poll enters the embedded runtime's context, so
    // tokio's timers work, and the tasks report themselves as async tasks.
    let (a, b, c) = watchdog(|| {
        block_on_plain_thread(
            run_concurrently!(async; sleep_then_probe(), async_probe(), cpu_probe()),
        )
    });
    for seen in [&a, &b] {
        assert!(seen.tokio_context && seen.rayon_index.is_none(), "{seen:?}");
        assert_eq!(seen.kind, Some(TaskKind::AsyncIo));
    }
    assert!(
        c.rayon_index.is_some() && c.kind == Some(TaskKind::Cpu),
        "{c:?}"
    );
    // Awaited alone, likewise.
    let alone = watchdog(|| block_on_plain_thread(sleep_then_probe().into_future()));
    assert!(
        alone.tokio_context && alone.kind == Some(TaskKind::AsyncIo),
        "{alone:?}"
    );
}

#[io_task]
fn meet_blocking(barrier: Arc<Barrier>) -> bool {
    barrier.wait();
    rayon::current_thread_index().is_none()
}

#[test]
fn blocking_tasks_run_side_by_side_past_the_core_count() {
    // 16 tasks that can only finish together: they would deadlock if run one by
    // one or on a pool capped at the core count.
    const N: usize = 16;
    let results = watchdog(|| {
        let barrier = Arc::new(Barrier::new(N));
        run_concurrently!(for (0..N).map(|_| meet_blocking(Arc::clone(&barrier))))
    });
    assert_eq!(results, vec![true; N]);
}

#[io_task]
async fn meet_async(barrier: Arc<tokio::sync::Barrier>) -> usize {
    barrier.wait().await;
    1
}

#[test]
fn async_tasks_run_concurrently() {
    let total = watchdog(|| {
        let barrier = Arc::new(tokio::sync::Barrier::new(3));
        let (a, b, c) = run_concurrently!(
            meet_async(Arc::clone(&barrier)),
            meet_async(Arc::clone(&barrier)),
            meet_async(Arc::clone(&barrier)),
        );
        let barrier = Arc::new(tokio::sync::Barrier::new(200));
        let all = run_concurrently!(for (0..200).map(|_| meet_async(Arc::clone(&barrier))));
        a + b + c + all.iter().sum::<usize>()
    });
    assert_eq!(total, 203);
}

#[cpu_task]
fn meet_cpu(barrier: Arc<Barrier>) -> Option<usize> {
    barrier.wait();
    rayon::current_thread_index()
}

#[test]
fn cpu_tasks_run_in_parallel_up_to_rayons_thread_count() {
    let _pool = whole_rayon_pool();
    let threads = rayon::current_num_threads();
    let indices = watchdog(move || {
        let barrier = Arc::new(Barrier::new(threads));
        run_concurrently!(for (0..threads).map(|_| meet_cpu(Arc::clone(&barrier))))
    });
    let mut indices: Vec<usize> = indices.into_iter().map(|i| i.expect("on rayon")).collect();
    indices.sort_unstable();
    indices.dedup();
    assert_eq!(indices.len(), threads, "each task on its own rayon thread");
}

#[cpu_task(timeout = "20s")]
fn meet_cpu_timed(meeting: Arc<support::Meeting>) -> Option<usize> {
    // Gives up after a while, so that a failure does not hold the pool's threads.
    meeting
        .wait(std::time::Duration::from_secs(10))
        .then(rayon::current_thread_index)
        .flatten()
}

#[test]
fn a_timed_cpu_task_occupies_one_rayon_thread() {
    // Two timed tasks on a pool of two meet at a barrier: each must have a rayon thread
    // of its own while the caller waits off the pool (a caller that waited on a rayon
    // thread left one thread for both, and the first task timed out at the barrier).
    let _pool = whole_rayon_pool();
    let threads = rayon::current_num_threads();
    let (a, b) = watchdog(move || {
        let meeting = Arc::new(support::Meeting::new(2));
        let (a, b) = run_concurrently!(
            meet_cpu_timed(Arc::clone(&meeting)),
            meet_cpu_timed(Arc::clone(&meeting))
        );
        (a, b)
    });
    assert!(threads >= 2, "this test needs two rayon threads");
    assert_ne!(a.expect("met on rayon"), b.expect("met on rayon"));
}

#[test]
fn timed_cpu_tasks_of_a_caller_on_rayon_use_every_other_thread() {
    // Inside a pool of five, the caller waits on one of its threads; four timed tasks
    // meeting at a barrier need the other four at once.
    let indices = watchdog(|| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(5)
            .build()
            .expect("pool");
        pool.install(|| {
            let meeting = Arc::new(support::Meeting::new(4));
            let meet = || meet_cpu_timed(Arc::clone(&meeting));
            let (a, b, c, d) = run_concurrently!(meet(), meet(), meet(), meet());
            [a, b, c, d]
        })
    });
    let mut indices: Vec<usize> = indices
        .into_iter()
        .map(|i| i.expect("met on rayon"))
        .collect();
    indices.sort_unstable();
    indices.dedup();
    assert_eq!(indices.len(), 4, "each task on its own rayon thread");
}
