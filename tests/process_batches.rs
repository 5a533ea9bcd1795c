//! Many process tasks queued at once reach a worker in batches: large frames must not
//! deadlock the pipe, and cancelling one task must never touch another. One worker, so
//! that every task shares it.

mod support;

use std::future::IntoFuture;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use concurrency_runtime::cpu_task;
use concurrency_runtime::process::{self, PoolConfig};
use support::{WATCHDOG, panic_message, poll_once, watchdog};

/// Configures the one-worker pool, and runs this binary's tests one at a time: each
/// needs the worker's queue to itself.
fn setup() -> MutexGuard<'static, ()> {
    static SETUP: Once = Once::new();
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    SETUP.call_once(|| {
        process::configure(PoolConfig::default().workers(1).max_frame_bytes(8 << 20))
            .expect("configure")
    });
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A multi-threaded runtime with two workers, like a small service's.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A file path unique to this test run.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("process-batches-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

/// Waits (polling, bounded by the watchdog) until `path` exists.
fn wait_for(path: &Path) {
    let started = Instant::now();
    while !path.exists() {
        assert!(
            started.elapsed() < WATCHDOG,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Creates `started`, waits until `release` exists, returns the worker's pid.
#[cpu_task(process)]
fn hold(started: PathBuf, release: PathBuf) -> u32 {
    std::fs::write(&started, "").expect("mark");
    wait_for(&release);
    std::process::id()
}

#[cpu_task(process)]
fn worker_pid() -> u32 {
    std::process::id()
}

#[cpu_task(process)]
fn reverse(mut data: Vec<u8>) -> Vec<u8> {
    data.reverse();
    data
}

#[test]
fn a_batch_of_large_arguments_and_results_does_not_deadlock() {
    let _alone = setup();
    // Each argument and each result is larger than a socket's buffer: the worker
    // blocks writing its first answer unless the parent reads answers while it still
    // has requests to send.
    let lengths = watchdog(|| {
        runtime().block_on(async {
            let handles: Vec<_> = (0..16u8)
                .map(|n| tokio::spawn(async move { reverse(vec![n; 300_000]).await }))
                .collect();
            let mut lengths = Vec::new();
            for (n, handle) in handles.into_iter().enumerate() {
                let data = handle.await.expect("task");
                assert!(data.iter().all(|byte| usize::from(*byte) == n));
                lengths.push(data.len());
            }
            lengths
        })
    });
    assert_eq!(lengths, vec![300_000; 16]);
}

#[cpu_task(process)]
fn quick(n: u64) -> u64 {
    n
}

/// Appends `n` to the file at `path` (one line per run), then returns it.
#[cpu_task(process)]
fn logged(path: String, n: u64) -> u64 {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("log file");
    file.write_all(format!("{n}\n").as_bytes()).expect("append");
    n
}

#[test]
fn cancelling_tasks_never_fails_or_repeats_another_task() {
    let _alone = setup();
    let log = scratch("cancel-stress.log");
    std::fs::write(&log, "").expect("create log");
    let path = log.to_string_lossy().into_owned();
    const ROUNDS: u64 = 40;
    const PER_ROUND: u64 = 50;
    let outcomes = watchdog(move || {
        runtime().block_on(async move {
            let mut outcomes = Vec::new();
            for round in 0..ROUNDS {
                // Tasks that will be cancelled at every stage: queued, batched behind
                // another task, running, and just finished but not yet collected.
                let doomed: Vec<_> = (0..PER_ROUND)
                    .map(|n| tokio::spawn(async move { quick(n).await }))
                    .collect();
                // The tasks that must be unaffected, interleaved with them in the queue.
                let kept: Vec<_> = (0..PER_ROUND)
                    .map(|n| {
                        let path = path.clone();
                        let n = round * PER_ROUND + n;
                        tokio::spawn(async move { logged(path, n).await })
                    })
                    .collect();
                for _ in 0..round % 5 {
                    tokio::task::yield_now().await;
                }
                for handle in &doomed {
                    handle.abort();
                }
                for handle in kept {
                    outcomes.push(handle.await.map_err(|error| error.to_string()));
                }
            }
            outcomes
        })
    });
    for (n, outcome) in outcomes.iter().enumerate() {
        assert_eq!(
            outcome.as_ref().ok(),
            Some(&(n as u64)),
            "task {n}: {outcome:?}"
        );
    }
    let mut runs: Vec<u64> = std::fs::read_to_string(&log)
        .expect("read log")
        .lines()
        .map(|line| line.parse().expect("a number"))
        .collect();
    let _ = std::fs::remove_file(&log);
    runs.sort_unstable();
    let expected: Vec<u64> = (0..ROUNDS * PER_ROUND).collect();
    assert_eq!(runs, expected, "every kept task ran exactly once");
}

#[test]
fn a_task_cancelled_behind_a_running_one_is_skipped_and_its_worker_kept() {
    let _alone = setup();
    let (first_started, first_release) = (scratch("first.started"), scratch("first.release"));
    let (second_started, second_release) = (scratch("second.started"), scratch("second.release"));
    let log = scratch("skipped.log");
    std::fs::write(&log, "").expect("create log");
    let path = log.to_string_lossy().into_owned();
    let (first_started_path, second_started_path) = (first_started.clone(), second_started.clone());
    let (running_pid, after_pid) = watchdog(move || {
        runtime().block_on(async move {
            // The worker is busy, so the next three tasks queue (a first poll submits
            // a task) and then go to it together, as one batch.
            let first = tokio::spawn(hold(first_started, first_release.clone()).into_future());
            wait_for(&first_started_path);
            let mut running = pin!(hold(second_started, second_release.clone()).into_future());
            let mut doomed = Box::pin(logged(path, 1).into_future());
            let mut after = pin!(worker_pid().into_future());
            assert!(poll_once(running.as_mut()).await.is_none());
            assert!(poll_once(doomed.as_mut()).await.is_none());
            assert!(poll_once(after.as_mut()).await.is_none());
            std::fs::write(&first_release, "").expect("release");
            first.await.expect("first task");
            // The batch was written before its first task started: the doomed task is
            // now in the worker's hands, not started. Dropping it cancels it.
            wait_for(&second_started_path);
            drop(doomed);
            std::fs::write(&second_release, "").expect("release");
            let running_pid = running.await;
            let after_pid = after.await;
            (running_pid, after_pid)
        })
    });
    assert_eq!(
        after_pid, running_pid,
        "the worker was not replaced: nothing it ran was cancelled"
    );
    let runs = std::fs::read_to_string(&log).expect("read log");
    assert_eq!(runs, "", "the cancelled task never ran");
}

#[cpu_task(process)]
fn make_bytes(len: usize) -> Vec<u8> {
    vec![7; len]
}

#[test]
fn an_oversized_result_fails_its_task_alone_and_the_worker_stays() {
    let _alone = setup();
    let (started, release) = (scratch("oversized.started"), scratch("oversized.release"));
    let log = scratch("oversized.log");
    std::fs::write(&log, "").expect("create log");
    let path = log.to_string_lossy().into_owned();
    let started_path = started.clone();
    let (held_pid, oversized, behind, after_pid) = watchdog(move || {
        runtime().block_on(async move {
            // Queue the oversized task and three after it while the worker is busy,
            // so that they reach it as one batch.
            let held = tokio::spawn(hold(started, release.clone()).into_future());
            wait_for(&started_path);
            let mut oversized = Box::pin(make_bytes(9 << 20).into_future());
            assert!(poll_once(oversized.as_mut()).await.is_none());
            // Awaited on a task of its own: its failure is a panic with the error.
            let oversized = tokio::spawn(async move { oversized.await.len() });
            let mut behind = Vec::new();
            for n in 0..3 {
                let mut task = Box::pin(logged(path.clone(), n).into_future());
                assert!(poll_once(task.as_mut()).await.is_none());
                behind.push(task);
            }
            std::fs::write(&release, "").expect("release");
            let held_pid = held.await.expect("held task");
            let oversized = oversized
                .await
                .map_err(|error| panic_message(error.into_panic().as_ref()));
            let mut results = Vec::new();
            for task in behind {
                results.push(task.await);
            }
            (held_pid, oversized, results, worker_pid().await)
        })
    });
    let error = oversized.expect_err("the result is over the 8 MiB limit");
    assert!(
        error.ends_with("exceeds the maximum frame size of 8388608 bytes"),
        "{error}"
    );
    assert_eq!(behind, vec![0, 1, 2]);
    let runs = std::fs::read_to_string(&log).expect("read log");
    assert_eq!(runs, "0\n1\n2\n", "each task behind it ran once");
    assert_eq!(after_pid, held_pid, "the worker was kept");
}
