//! `run_concurrently!(progress(renderer); for ..)`: a collection's tasks counted as
//! they end (not as they start), with the total, on every path a collection runs
//! (async tasks, blocking tasks, the cpu batch, the process batch), and the report
//! finished once.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use concurrency_runtime::progress::{Progress, Status};
use concurrency_runtime::{cpu_task, io_task, run_concurrently};
use support::watchdog;

/// Every status it was given, and how often it was finished.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Status>>,
    finished: AtomicUsize,
}

/// The renderer given to a collection: the recorder, shared with the test.
struct Shared(Arc<Recorder>);

impl Progress for Shared {
    fn update(&self, status: Status) {
        self.0
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(status);
    }

    fn finish(&self, status: Status) {
        self.0.finished.fetch_add(1, Ordering::SeqCst);
        self.update(status);
    }
}

impl Recorder {
    fn done(&self) -> Vec<usize> {
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|status| status.done)
            .collect()
    }

    fn checked(&self, total: usize) {
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        assert!(seen.iter().all(|status| status.total == total), "{seen:?}");
        assert_eq!(
            seen.first().map(|status| status.done),
            Some(0),
            "it starts at 0"
        );
        assert_eq!(
            seen.iter().map(|status| status.done).max(),
            Some(total),
            "every task counted: {seen:?}"
        );
        assert_eq!(self.finished.load(Ordering::SeqCst), 1, "finished once");
    }
}

#[io_task]
async fn async_one(n: u64) -> u64 {
    tokio::task::yield_now().await;
    n
}

#[cpu_task]
fn cpu_one(n: u64) -> u64 {
    n * 2
}

#[cpu_task(process)]
fn process_one(n: u64) -> u64 {
    n + 1
}

#[test]
fn every_path_counts_every_task_with_the_total_and_finishes_once() {
    for path in ["async", "cpu", "process"] {
        let recorder = Arc::new(Recorder::default());
        let renderer = Shared(Arc::clone(&recorder));
        let values: Vec<u64> = watchdog(move || match path {
            "async" => run_concurrently!(progress(renderer); for (0..50).map(async_one)),
            "cpu" => run_concurrently!(progress(renderer); for (0..50).map(cpu_one)),
            _ => run_concurrently!(progress(renderer); for (0..50).map(process_one)),
        });
        assert_eq!(values.len(), 50, "{path}");
        recorder.checked(50);
    }
}

/// Released together once `RELEASE` says so.
static RELEASE: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());
static STARTED: AtomicUsize = AtomicUsize::new(0);

#[io_task]
fn held(n: u64) -> u64 {
    STARTED.fetch_add(1, Ordering::SeqCst);
    let (lock, changed) = &RELEASE;
    let released = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let _released = changed
        .wait_timeout_while(released, Duration::from_secs(20), |released| !*released)
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    n
}

#[test]
fn a_task_counts_when_it_ends_not_when_it_starts() {
    let recorder = Arc::new(Recorder::default());
    let renderer = Shared(Arc::clone(&recorder));
    let all_started = Arc::new(AtomicBool::new(false));
    let watcher = {
        let recorder = Arc::clone(&recorder);
        let all_started = Arc::clone(&all_started);
        std::thread::spawn(move || {
            // Once all four have started, none has ended: the count is still 0.
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while STARTED.load(Ordering::SeqCst) < 4 && std::time::Instant::now() < deadline {
                std::thread::yield_now();
            }
            let before = recorder.done();
            all_started.store(true, Ordering::SeqCst);
            *RELEASE
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = true;
            RELEASE.1.notify_all();
            before
        })
    };
    let values = watchdog(move || run_concurrently!(progress(renderer); for (0..4).map(held)));
    let before = watcher.join().expect("watcher");
    assert!(all_started.load(Ordering::SeqCst));
    assert_eq!(values, [0, 1, 2, 3]);
    assert!(
        before.iter().all(|done| *done == 0),
        "counted before ending: {before:?}"
    );
    recorder.checked(4);
}

#[cpu_task]
fn fails_on_three(n: u64) -> u64 {
    assert_ne!(n, 3, "three");
    n
}

#[test]
fn a_closure_renders_and_failures_count_as_ended() {
    let last = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&last);
    let outcomes = watchdog(move || {
        run_concurrently!(all, progress(move |status: Status| {
            seen.fetch_max(status.done, Ordering::SeqCst);
        }); for (0..8).map(fails_on_three))
    });
    assert_eq!(
        outcomes.iter().filter(|outcome| outcome.is_err()).count(),
        1
    );
    assert_eq!(last.load(Ordering::SeqCst), 8);
}

#[test]
fn the_async_form_reports_too() {
    let recorder = Arc::new(Recorder::default());
    let renderer = Shared(Arc::clone(&recorder));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let values = watchdog(move || {
        runtime.block_on(async move {
            run_concurrently!(async, progress(renderer); for (0..20).map(async_one)).await
        })
    });
    assert_eq!(values.len(), 20);
    recorder.checked(20);
}
