//! A collection of process tasks (`run_concurrently!(for ...)`) goes to the pool as
//! one batch: one buffer of requests, answers delivered in place. Each task keeps the
//! guarantees of a task sent alone: a crash fails only its task, a failure that stops
//! the group cancels the rest, dropping the group cancels what has not finished, a
//! request over the frame limit fails alone, and no task runs twice.

mod support;

use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use concurrency_runtime::process::{self, PoolConfig};
use concurrency_runtime::{TaskErrorKind, cpu_task, run_concurrently};
use support::{WATCHDOG, expect_panic, poll_once, watchdog};

/// Frames over 1 MiB are refused in this test binary.
const MAX_FRAME: u64 = 1 << 20;

/// Configures a pool of two, and runs this binary's tests one at a time: each needs
/// the workers to itself.
fn setup() -> MutexGuard<'static, ()> {
    static SETUP: Once = Once::new();
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    SETUP.call_once(|| {
        process::configure(PoolConfig::default().workers(2).max_frame_bytes(MAX_FRAME))
            .expect("configure")
    });
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A fresh folder for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("process-collections-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Appends `line` to the log at `path` (one small write with `O_APPEND`: lines from
/// two workers never mix).
fn log(path: &Path, line: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("log");
    file.write_all(format!("{line}\n").as_bytes())
        .expect("log line");
}

/// How many times each line is in the log.
fn counts(path: &Path) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        *counts.entry(line.to_owned()).or_insert(0) += 1;
    }
    counts
}

/// Runs `future` on a current-thread runtime.
fn current_thread<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

#[cpu_task(process)]
fn quick(n: u64) -> u64 {
    n + 1
}

/// Logs `n`; the task numbered `crash` then aborts its worker.
#[cpu_task(process)]
fn crash_on(log_path: PathBuf, n: u64, crash: u64) -> u64 {
    log(&log_path, &n.to_string());
    if n == crash {
        std::process::abort();
    }
    n
}

#[test]
fn a_crash_in_a_collection_fails_its_task_alone_and_no_task_runs_twice() {
    let _alone = setup();
    let dir = scratch("crash");
    let log_path = dir.join("log");
    let outcomes = watchdog({
        let log_path = log_path.clone();
        move || run_concurrently!(all; for (0..300).map(|n| crash_on(log_path.clone(), n, 150)))
    });
    for (n, outcome) in outcomes.iter().enumerate() {
        match outcome {
            Err(error) if n == 150 => {
                assert!(
                    matches!(error.kind(), TaskErrorKind::Crashed { .. }),
                    "{error}"
                );
                assert_eq!(error.task(), "crash_on");
            }
            Ok(value) => assert_eq!(*value, n as u64),
            Err(error) => panic!("task {n} failed: {error}"),
        }
    }
    let counts = counts(&log_path);
    assert_eq!(counts.len(), 300, "every task ran");
    assert!(counts.values().all(|count| *count == 1), "{counts:?}");
}

/// Waits for `dir/release`, logs `n`; the task numbered `failing` returns an error.
#[cpu_task(process)]
fn fails_at(dir: PathBuf, n: u64, failing: u64) -> Result<u64, String> {
    while !dir.join("release").exists() {
        std::thread::sleep(Duration::from_millis(1));
    }
    log(&dir.join("log"), &n.to_string());
    if n == failing {
        return Err(format!("task {n} says no"));
    }
    Ok(n)
}

#[test]
fn a_failure_stops_a_fail_fast_collection_and_cancels_the_rest() {
    let _alone = setup();
    let dir = scratch("fail-fast");
    let outcome = watchdog({
        let dir = dir.clone();
        move || {
            current_thread(async {
                let group = run_concurrently!(async, try; for (0..5_000).map(|n| fails_at(dir.clone(), n, 5)));
                let mut group = pin!(group.into_future());
                // Started: every task is queued or sent, and none runs yet.
                assert!(poll_once(group.as_mut()).await.is_none());
                std::fs::write(dir.join("release"), "").expect("release");
                group.await
            })
        }
    });
    let error = outcome.expect_err("task 5 fails");
    assert_eq!(error.task(), "fails_at");
    assert!(error.to_string().contains("task 5 says no"), "{error}");
    // The tasks still queued when task 5's answer came are never sent, and those sent
    // but not started are skipped: only a few ran after it.
    watchdog(|| quick(1).run());
    let counts = counts(&dir.join("log"));
    assert!(counts.len() < 1_000, "{} tasks ran", counts.len());
    assert!(counts.values().all(|count| *count == 1), "{counts:?}");
}

/// Marks that task `n` started, then waits for a file that never comes.
#[cpu_task(process)]
fn held(dir: PathBuf, n: u64) -> u64 {
    std::fs::write(dir.join(format!("started-{n}")), "").expect("mark");
    while !dir.join("release").exists() {
        std::thread::sleep(Duration::from_millis(1));
    }
    n
}

/// The names of the `started-*` marks in `dir`.
fn started(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("started-"))
        .collect();
    names.sort();
    names
}

#[test]
fn dropping_a_collection_stops_its_running_tasks_and_never_sends_the_rest() {
    let _alone = setup();
    let dir = scratch("drop");
    watchdog({
        let dir = dir.clone();
        move || {
            current_thread(async {
                let group = run_concurrently!(async; for (0..1_000).map(|n| held(dir.clone(), n)));
                let mut group = pin!(group.into_future());
                assert!(poll_once(group.as_mut()).await.is_none());
                // Both workers hold a task.
                let started_at = Instant::now();
                while started(&dir).len() < 2 {
                    assert!(started_at.elapsed() < WATCHDOG, "{:?}", started(&dir));
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    assert!(poll_once(group.as_mut()).await.is_none());
                }
            });
        }
    });
    // The group is dropped: the held tasks' workers were stopped, or this would hang
    // (nothing ever releases them).
    assert_eq!(watchdog(|| run_concurrently!(quick(1), quick(2))), (2, 3));
    assert_eq!(started(&dir).len(), 2, "{:?}", started(&dir));
}

/// Logs `n`, returns the length of `data`.
#[cpu_task(process)]
fn logged_len(log_path: PathBuf, n: u64, data: Vec<u8>) -> usize {
    log(&log_path, &n.to_string());
    data.len()
}

#[test]
fn a_request_over_the_frame_limit_fails_its_task_alone() {
    let _alone = setup();
    let dir = scratch("oversized");
    let log_path = dir.join("log");
    let big = |n: u64| if n == 3 { 2 << 20 } else { 10 };
    let outcomes = watchdog({
        let log_path = log_path.clone();
        move || run_concurrently!(all; for (0..8).map(|n| logged_len(log_path.clone(), n, vec![1; big(n)])))
    });
    for (n, outcome) in outcomes.iter().enumerate() {
        match outcome {
            Err(error) if n == 3 => {
                assert!(
                    error
                        .to_string()
                        .contains("exceeds the maximum frame size of 1048576 bytes"),
                    "{error}"
                );
            }
            Ok(len) => assert_eq!(*len, 10),
            Err(error) => panic!("task {n} failed: {error}"),
        }
    }
    assert_eq!(counts(&log_path).len(), 7, "the others ran");

    // In a group that stops at a failure, nothing of it is sent.
    let stopped_log = dir.join("stopped");
    let message = watchdog({
        let log_path = stopped_log.clone();
        move || {
            expect_panic(|| {
                let _ = run_concurrently!(for (0..8).map(|n| logged_len(log_path.clone(), n, vec![1; big(n)])));
            })
        }
    });
    assert!(message.contains("logged_len"), "{message}");
    watchdog(|| quick(1).run());
    assert!(
        counts(&stopped_log).is_empty(),
        "{:?}",
        counts(&stopped_log)
    );
}

#[cpu_task(process)]
fn bytes_of(n: u8, len: usize) -> Vec<u8> {
    vec![n; len]
}

#[test]
fn results_larger_than_the_answer_ring_come_back_whole() {
    let _alone = setup();
    // Each answer is larger than a worker's answer ring (256 KiB): it goes in pieces.
    let results = watchdog(|| run_concurrently!(for (0..6).map(|n| bytes_of(n, 900_000))));
    for (n, result) in results.iter().enumerate() {
        assert_eq!(result.len(), 900_000);
        assert!(result.iter().all(|byte| usize::from(*byte) == n));
    }
}

#[test]
fn a_large_collection_gives_every_result_in_order() {
    let _alone = setup();
    let results = watchdog(|| run_concurrently!(for (0..30_000).map(quick)));
    assert_eq!(results.len(), 30_000);
    assert!(results.iter().zip(1..).all(|(result, n)| *result == n));
}
