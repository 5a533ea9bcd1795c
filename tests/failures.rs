//! Failure semantics: typed errors, fail-fast and collect-all groups, timeouts,
//! retries, limits and cancellation, on every placement.

// Without the `process` feature, the helpers of the process-task tests are unused.
#![cfg_attr(not(feature = "process"), allow(dead_code, unused_imports))]

mod support;

use std::future::{Future, IntoFuture};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use concurrency_runtime::{
    TaskError, TaskErrorKind, cpu_task, io_task, is_cancelled, run_concurrently,
};
use support::{WATCHDOG, expect_panic, watchdog};

// ---------------------------------------------------------------------------------
// Helpers

/// A pool of exactly two workers, whatever the machine (the queueing test needs it).
fn setup() {
    static SETUP: std::sync::Once = std::sync::Once::new();
    SETUP.call_once(|| {
        #[cfg(feature = "process")]
        concurrency_runtime::process::configure(
            concurrency_runtime::process::PoolConfig::default().workers(2),
        )
        .expect("configure before the first process task");
    });
}

/// A file path unique to this test run.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("concurrency-failures-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

/// Waits (polling, bounded by the watchdog) until `condition` holds.
fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < limit,
            "timed out waiting until {what} (after {:?})",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The pid a process task wrote to `path`, once it is there.
fn read_pid(path: &Path) -> u32 {
    let mut pid = None;
    let what = format!("the process task wrote its pid to {}", path.display());
    wait_until(&what, WATCHDOG, || {
        pid = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.trim().parse().ok());
        pid.is_some()
    });
    pid.unwrap_or_default()
}

/// Writes `text` to `path` so that the file appears with its content (a reader that
/// sees the file sees all of it).
fn write_atomically(path: &str, text: &str) {
    let partial = format!("{path}.partial");
    std::fs::write(&partial, text).expect("write");
    std::fs::rename(&partial, path).expect("rename");
}

/// Whether a process with this pid exists (a zombie counts: it is not reaped yet).
fn alive(pid: u32) -> bool {
    support::is_alive(pid)
}

fn assert_timed_out(error: &TaskError, task: &str, after: Duration) {
    assert_eq!(error.task(), task);
    assert!(
        matches!(error.kind(), TaskErrorKind::TimedOut { after: a } if *a == after),
        "{error:?}"
    );
    assert!(error.is_timeout());
}

/// Drives `future` on a fresh runtime for as long as `keep_going` says, then drops it.
fn poll_then_drop<F: Future>(future: F, mut keep_going: impl FnMut() -> bool) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut future = pin!(future);
        while keep_going() {
            tokio::select! {
                _ = &mut future => panic!("the group finished; it should still be running"),
                () = tokio::time::sleep(Duration::from_millis(2)) => {}
            }
        }
    });
}

/// Sets its flag when dropped.
struct DropGuard(Arc<AtomicBool>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------
// Tasks

#[io_task(timeout = "100ms")]
async fn sleeps_past_deadline(dropped: Arc<AtomicBool>) -> u32 {
    let _guard = DropGuard(dropped);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    1
}

#[io_task(timeout = "100ms")]
fn blocks_past_deadline(saw_cancel: mpsc::Sender<bool>) -> u32 {
    // Polls its cancellation flag, as a long blocking loop should.
    let started = Instant::now();
    while !is_cancelled() && started.elapsed() < WATCHDOG {
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = saw_cancel.send(is_cancelled());
    1
}

#[cpu_task(timeout = "100ms")]
fn crunches_past_deadline(saw_cancel: mpsc::Sender<bool>) -> u64 {
    let started = Instant::now();
    let mut n: u64 = 0;
    while !is_cancelled() && started.elapsed() < WATCHDOG {
        n = std::hint::black_box(n + 1);
    }
    let _ = saw_cancel.send(is_cancelled());
    n
}

#[cfg(feature = "process")]
#[cpu_task(process, timeout = "300ms")]
fn sleeps_in_worker(pid_file: String) -> u32 {
    write_atomically(&pid_file, &std::process::id().to_string());
    std::thread::sleep(Duration::from_secs(3600));
    1
}

#[cfg(feature = "process")]
#[cpu_task(process)]
fn sleeps_in_worker_forever(pid_file: String) -> u32 {
    write_atomically(&pid_file, &std::process::id().to_string());
    std::thread::sleep(Duration::from_secs(3600));
    1
}

#[cfg(feature = "process")]
#[cpu_task(process)]
fn leaves_a_mark(path: String) -> u32 {
    std::fs::write(&path, "ran").expect("write mark");
    1
}

#[cfg(feature = "process")]
#[cpu_task(process)]
fn worker_pid() -> u32 {
    std::process::id()
}

#[io_task]
async fn quick(n: u32) -> u32 {
    tokio::task::yield_now().await;
    n
}

#[cpu_task]
fn square(n: u64) -> u64 {
    n * n
}

#[io_task]
fn parse(text: String) -> Result<u32, std::num::ParseIntError> {
    text.parse()
}

#[io_task]
async fn parse_async(text: String) -> Result<u32, String> {
    text.parse().map_err(|_| format!("not a number: {text}"))
}

#[cfg(feature = "process")]
#[cpu_task(process)]
fn parse_in_worker(text: String) -> Result<u32, String> {
    text.parse().map_err(|_| format!("not a number: {text}"))
}

#[io_task]
fn fails_when_file_exists(path: String) -> Result<u32, String> {
    wait_until("the sibling started", WATCHDOG, || {
        Path::new(&path).exists()
    });
    Err("failing fast".into())
}

#[io_task(retries = 3)]
fn flaky_blocking(attempts: Arc<AtomicU32>) -> Result<u32, String> {
    let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
    if attempt < 3 {
        Err(format!("attempt {attempt} failed"))
    } else {
        Ok(attempt)
    }
}

#[io_task(retries = 2, backoff = "10ms")]
async fn flaky_async(attempts: Arc<AtomicU32>) -> Result<u32, String> {
    let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::task::yield_now().await;
    if attempt < 3 {
        Err(format!("attempt {attempt} failed"))
    } else {
        Ok(attempt)
    }
}

#[cpu_task(retries = 2)]
fn flaky_cpu_panics(attempts: Arc<AtomicU32>) -> u32 {
    let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
    assert!(attempt >= 3, "attempt {attempt} panicked");
    attempt
}

#[cfg(feature = "process")]
#[cpu_task(process, retries = 2, retry_on = [crash])]
fn crashes_twice(counter_file: String) -> u32 {
    let attempt = std::fs::read_to_string(&counter_file)
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
        .unwrap_or(0)
        + 1;
    std::fs::write(&counter_file, attempt.to_string()).expect("write counter");
    if attempt < 3 {
        std::process::abort();
    }
    attempt
}

#[io_task(retries = 2, backoff = "5ms")]
fn always_fails(attempts: Arc<AtomicU32>) -> Result<u32, String> {
    let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
    Err(format!("attempt {attempt}"))
}

#[cpu_task(retries = 3, retry_on = [error])]
fn panics_are_not_retried(attempts: Arc<AtomicU32>) -> Result<u32, String> {
    attempts.fetch_add(1, Ordering::SeqCst);
    panic!("not retried")
}

#[io_task(timeout = "50ms", retries = 3, retry_on = [timeout])]
async fn slow_twice(attempts: Arc<AtomicU32>) -> u32 {
    let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
    if attempt < 3 {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    attempt
}

static BLOCKING_NOW: AtomicUsize = AtomicUsize::new(0);
static BLOCKING_MAX: AtomicUsize = AtomicUsize::new(0);

#[io_task(limit = 2)]
fn limited_blocking() -> usize {
    let now = BLOCKING_NOW.fetch_add(1, Ordering::SeqCst) + 1;
    BLOCKING_MAX.fetch_max(now, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(10));
    BLOCKING_NOW.fetch_sub(1, Ordering::SeqCst);
    now
}

static ASYNC_NOW: AtomicUsize = AtomicUsize::new(0);
static ASYNC_MAX: AtomicUsize = AtomicUsize::new(0);

#[io_task(limit = 2)]
async fn limited_async() -> usize {
    let now = ASYNC_NOW.fetch_add(1, Ordering::SeqCst) + 1;
    ASYNC_MAX.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(5)).await;
    ASYNC_NOW.fetch_sub(1, Ordering::SeqCst);
    now
}

static CPU_NOW: AtomicUsize = AtomicUsize::new(0);
static CPU_MAX: AtomicUsize = AtomicUsize::new(0);

#[cpu_task(limit = 1)]
fn limited_cpu() -> usize {
    let now = CPU_NOW.fetch_add(1, Ordering::SeqCst) + 1;
    CPU_MAX.fetch_max(now, Ordering::SeqCst);
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2) {
        std::hint::spin_loop();
    }
    CPU_NOW.fetch_sub(1, Ordering::SeqCst);
    now
}

// ---------------------------------------------------------------------------------
// Timeouts, per placement

#[test]
fn an_async_timeout_drops_the_future_at_the_deadline() {
    setup();
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&dropped);
    let started = Instant::now();
    let error = watchdog(move || sleeps_past_deadline(flag).try_run()).expect_err("times out");
    assert_timed_out(&error, "sleeps_past_deadline", Duration::from_millis(100));
    assert_eq!(
        error.to_string(),
        "task `sleeps_past_deadline` timed out after 100ms"
    );
    assert!(dropped.load(Ordering::SeqCst), "the future was dropped");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_blocking_timeout_returns_at_the_deadline_and_raises_the_cancel_flag() {
    setup();
    let (report, reports) = mpsc::channel();
    let error = watchdog(move || blocks_past_deadline(report).try_run()).expect_err("times out");
    assert_timed_out(&error, "blocks_past_deadline", Duration::from_millis(100));
    // The thread was not stopped; it saw its flag and returned early.
    assert_eq!(reports.recv_timeout(WATCHDOG), Ok(true));
}

#[test]
fn a_cpu_timeout_returns_at_the_deadline_and_raises_the_cancel_flag() {
    setup();
    let (report, reports) = mpsc::channel();
    let error = watchdog(move || crunches_past_deadline(report).try_run()).expect_err("times out");
    assert_timed_out(&error, "crunches_past_deadline", Duration::from_millis(100));
    assert_eq!(reports.recv_timeout(WATCHDOG), Ok(true));
}

#[cfg(feature = "process")]
#[test]
fn a_process_timeout_kills_the_worker_and_the_pool_carries_on() {
    setup();
    let pid_file = scratch("timeout.pid");
    let path = pid_file.to_string_lossy().into_owned();
    let error = watchdog(move || sleeps_in_worker(path).try_run()).expect_err("times out");
    assert_timed_out(&error, "sleeps_in_worker", Duration::from_millis(300));
    let pid = read_pid(&pid_file);
    wait_until(
        "the timed-out worker is gone",
        Duration::from_millis(500),
        || !alive(pid),
    );
    // A replacement worker serves the next task.
    let next = watchdog(|| worker_pid().run());
    assert_ne!(next, pid);
}

#[test]
fn a_per_call_timeout_overrides_the_attribute() {
    setup();
    let (report, _reports) = mpsc::channel();
    let error = watchdog(move || {
        blocks_past_deadline(report)
            .with_timeout(Duration::from_millis(20))
            .try_run()
    })
    .expect_err("times out");
    assert_timed_out(&error, "blocks_past_deadline", Duration::from_millis(20));
    // And on a task without the option.
    let ok = watchdog(|| square(4).with_timeout(Duration::from_secs(30)).try_run());
    assert_eq!(ok.expect("fast enough"), 16);
}

#[test]
fn a_timeout_in_a_group_fails_it_naming_the_task() {
    setup();
    let (report, _reports) = mpsc::channel();
    let message = watchdog(move || {
        expect_panic(|| {
            let _ = run_concurrently!(quick(1), blocks_past_deadline(report));
        })
    });
    assert_eq!(message, "task `blocks_past_deadline` timed out after 100ms");
}

// ---------------------------------------------------------------------------------
// Retries

#[test]
fn retries_succeed_on_the_third_attempt_on_every_placement() {
    setup();
    let attempts = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&attempts);
    assert_eq!(
        watchdog(move || flaky_blocking(counter).try_run()).expect("third"),
        3
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 3);

    let attempts = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&attempts);
    assert_eq!(
        watchdog(move || flaky_async(counter).try_run()).expect("third"),
        3
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 3);

    let attempts = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&attempts);
    assert_eq!(watchdog(move || flaky_cpu_panics(counter).run()), 3);
    assert_eq!(attempts.load(Ordering::SeqCst), 3);

    #[cfg(feature = "process")]
    {
        let counter_file = scratch("crashes_twice.count");
        let path = counter_file.to_string_lossy().into_owned();
        assert_eq!(
            watchdog(move || crashes_twice(path).try_run()).expect("third"),
            3
        );
        assert_eq!(
            std::fs::read_to_string(&counter_file).expect("counter"),
            "3"
        );
    }
}

#[test]
fn retried_timeouts_start_a_fresh_attempt() {
    setup();
    let attempts = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&attempts);
    assert_eq!(watchdog(move || slow_twice(counter).run()), 3);
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
}

#[test]
fn exhausted_retries_report_every_attempt() {
    setup();
    let attempts = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&attempts);
    let error = watchdog(move || always_fails(counter).try_run()).expect_err("fails");
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(
        error.to_string(),
        "task `always_fails` failed: attempt 3 (after 3 attempts)"
    );
    let earlier: Vec<String> = error.attempts().iter().map(ToString::to_string).collect();
    assert_eq!(
        earlier,
        [
            "task `always_fails` failed: attempt 1",
            "task `always_fails` failed: attempt 2"
        ]
    );
    // Awaited or `.run()`, the function's own return value comes back: the last `Err`.
    let counter = Arc::new(AtomicU32::new(0));
    assert_eq!(
        watchdog(move || always_fails(counter).run()),
        Err("attempt 3".to_string())
    );
}

#[test]
fn retry_on_restricts_what_is_retried() {
    setup();
    let attempts = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&attempts);
    let error = watchdog(move || panics_are_not_retried(counter).try_run()).expect_err("panics");
    assert!(matches!(error.kind(), TaskErrorKind::Panicked { .. }));
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    assert!(error.attempts().is_empty());
}

// ---------------------------------------------------------------------------------
// Typed errors from `Result`-returning tasks

#[test]
fn a_result_returning_task_gives_its_error_back_typed() {
    setup();
    let error = watchdog(|| parse("x1".into()).try_run()).expect_err("not a number");
    assert_eq!(error.task(), "parse");
    let source = std::error::Error::source(&error).expect("source");
    assert_eq!(source.to_string(), "invalid digit found in string");
    assert!(error.downcast_ref::<std::num::ParseIntError>().is_some());
    let typed: std::num::ParseIntError = error.downcast().expect("typed");
    assert_eq!(typed.to_string(), "invalid digit found in string");
    // Success is the `Ok` value; `.run()` returns the function's own `Result`.
    assert_eq!(
        watchdog(|| parse("42".into()).try_run()).expect("parses"),
        42
    );
    assert!(watchdog(|| parse("x".into()).run()).is_err());
    // Async and process tasks too.
    let error = watchdog(|| parse_async("y".into()).try_run()).expect_err("async");
    assert_eq!(
        error.to_string(),
        "task `parse_async` failed: not a number: y"
    );
    #[cfg(feature = "process")]
    {
        let error = watchdog(|| parse_in_worker("z".into()).try_run()).expect_err("process");
        assert_eq!(
            error.to_string(),
            "task `parse_in_worker` failed: not a number: z"
        );
        assert!(matches!(error.into_kind(), TaskErrorKind::Failed { .. }));
    }
}

// ---------------------------------------------------------------------------------
// Group modes

#[test]
fn try_mode_returns_the_values_or_the_first_failure() {
    setup();
    let ok = watchdog(|| run_concurrently!(try; parse("7".into()), square(3), quick(1)));
    assert_eq!(ok.expect("all succeed"), (7, 9, 1));
    let error =
        watchdog(|| run_concurrently!(try; parse("x".into()), square(3))).expect_err("parse fails");
    assert_eq!(error.task(), "parse");
    assert!(error.downcast_ref::<std::num::ParseIntError>().is_some());
    // In the plain form a `Result` is a value like any other.
    let (parsed, squared) = watchdog(|| run_concurrently!(parse("x".into()), square(3)));
    assert!(parsed.is_err());
    assert_eq!(squared, 9);
}

#[test]
fn try_mode_works_in_async_and_collection_forms() {
    setup();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let result = runtime.block_on(async {
        run_concurrently!(async, try; parse_async("1".into()), parse_async("no".into())).await
    });
    assert_eq!(
        result.expect_err("fails").to_string(),
        "task `parse_async` failed: not a number: no"
    );
    let all = watchdog(|| run_concurrently!(try; for (1..=100).map(|n| parse(n.to_string()))));
    assert_eq!(all.expect("all parse"), (1..=100).collect::<Vec<u32>>());
    let failed = watchdog(
        || run_concurrently!(try; for ["1", "2", "three", "4"].map(|t| parse(t.to_string()))),
    );
    assert_eq!(failed.expect_err("three").task(), "parse");
}

#[cfg(feature = "process")]
#[test]
fn collect_all_keeps_every_outcome_in_argument_order() {
    setup();
    let (a, b, c, d) = watchdog(
        || run_concurrently!(all; parse("1".into()), parse("two".into()), square(3), parse_in_worker("x".into())),
    );
    assert_eq!(a.expect("a"), 1);
    assert!(
        b.expect_err("b")
            .downcast_ref::<std::num::ParseIntError>()
            .is_some()
    );
    assert_eq!(c.expect("c"), 9);
    assert_eq!(d.expect_err("d").task(), "parse_in_worker");

    let texts = ["1", "x", "3", "y", "5"];
    let outcomes =
        watchdog(move || run_concurrently!(all; for texts.map(|t| parse(t.to_string()))));
    let summary: Vec<Option<u32>> = outcomes.into_iter().map(Result::ok).collect();
    assert_eq!(summary, [Some(1), None, Some(3), None, Some(5)]);

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (x, y) = runtime.block_on(async {
        run_concurrently!(async, all; parse_async("1".into()), parse_async("z".into())).await
    });
    assert_eq!(x.expect("x"), 1);
    assert!(y.is_err());
}

#[cfg(feature = "process")]
#[test]
fn fail_fast_kills_a_long_running_process_sibling() {
    setup();
    let pid_file = scratch("fail_fast.pid");
    let path = pid_file.to_string_lossy().into_owned();
    let started = path.clone();
    let error = watchdog(move || {
        run_concurrently!(try; sleeps_in_worker_forever(path), fails_when_file_exists(started))
    })
    .expect_err("fails fast");
    assert_eq!(
        error.to_string(),
        "task `fails_when_file_exists` failed: failing fast"
    );
    let pid = read_pid(&pid_file);
    wait_until(
        "the cancelled worker is gone",
        Duration::from_millis(500),
        || !alive(pid),
    );
    assert_eq!(watchdog(|| square(2).run()), 4);
    assert_ne!(watchdog(|| worker_pid().run()), pid);
}

// ---------------------------------------------------------------------------------
// Limits

#[test]
fn a_limit_is_never_exceeded() {
    setup();
    let counts = watchdog(|| run_concurrently!(for (0..20).map(|_| limited_blocking())));
    assert_eq!(counts.len(), 20);
    assert!(BLOCKING_MAX.load(Ordering::SeqCst) <= 2);
    assert!(counts.iter().all(|now| (1..=2).contains(now)));

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let counts = runtime
        .block_on(async { run_concurrently!(async; for (0..20).map(|_| limited_async())).await });
    assert_eq!(counts.len(), 20);
    assert!(ASYNC_MAX.load(Ordering::SeqCst) <= 2);

    let _pool = support::whole_rayon_pool();
    let counts = watchdog(|| run_concurrently!(for (0..20).map(|_| limited_cpu())));
    assert_eq!(counts.len(), 20);
    assert_eq!(CPU_MAX.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------
// Cancellation by dropping

#[cfg(feature = "process")]
#[test]
fn dropping_a_group_cancels_async_and_process_tasks() {
    setup();
    let pid_file = scratch("dropped.pid");
    let path = pid_file.to_string_lossy().into_owned();
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&dropped);
    let pid_path = pid_file.clone();
    watchdog(move || {
        let group = run_concurrently!(async;
            sleeps_past_deadline(flag).with_timeout(Duration::from_secs(3600)),
            sleeps_in_worker_forever(path),
        );
        poll_then_drop(group, || !pid_path.exists());
    });
    assert!(
        dropped.load(Ordering::SeqCst),
        "the async task's drop guard ran"
    );
    let pid = read_pid(&pid_file);
    wait_until(
        "the cancelled worker is gone",
        Duration::from_millis(500),
        || !alive(pid),
    );
    assert_ne!(watchdog(|| worker_pid().run()), pid);
}

#[cfg(feature = "process")]
#[test]
fn dropping_an_awaited_process_task_kills_its_worker() {
    setup();
    let pid_file = scratch("dropped_task.pid");
    let path = pid_file.to_string_lossy().into_owned();
    let pid_path = pid_file.clone();
    watchdog(move || {
        poll_then_drop(sleeps_in_worker_forever(path).into_future(), || {
            !pid_path.exists()
        });
    });
    let pid = read_pid(&pid_file);
    wait_until(
        "the cancelled worker is gone",
        Duration::from_millis(500),
        || !alive(pid),
    );
}

#[cfg(feature = "process")]
#[test]
fn queued_process_tasks_of_a_dropped_group_never_start() {
    setup();
    // Occupy both workers, queue a third task behind them, then drop the group.
    let first = scratch("busy1.pid");
    let second = scratch("busy2.pid");
    let mark = scratch("never.mark");
    let (a, b, m) = (
        first.to_string_lossy().into_owned(),
        second.to_string_lossy().into_owned(),
        mark.to_string_lossy().into_owned(),
    );
    let (p1, p2) = (first.clone(), second.clone());
    watchdog(move || {
        let group = run_concurrently!(async;
            sleeps_in_worker_forever(a),
            sleeps_in_worker_forever(b),
            leaves_a_mark(m),
        );
        poll_then_drop(group, || !(p1.exists() && p2.exists()));
    });
    // The pool is free again: later tasks run, and the dropped one never did.
    for _ in 0..4 {
        watchdog(|| worker_pid().run());
    }
    assert!(!mark.exists(), "a task of a dropped group started");
}

#[io_task(name = "collected-explode")]
async fn explodes_when_odd(n: u32) -> u32 {
    tokio::task::yield_now().await;
    assert!(n.is_multiple_of(2), "odd {n}");
    n
}

#[test]
fn a_collection_names_its_failed_tasks_with_their_attempts() {
    // Async tasks of a collection run as their own tokio tasks: a panic there is
    // caught by tokio and must still come back naming the task, with its message.
    let outcomes = watchdog(|| run_concurrently!(all; for (0..4).map(explodes_when_odd)));
    let described: Vec<String> = outcomes
        .iter()
        .map(|outcome| match outcome {
            Ok(n) => n.to_string(),
            Err(error) => error.to_string(),
        })
        .collect();
    assert_eq!(
        described,
        [
            "0",
            "task `collected-explode` panicked: odd 1",
            "2",
            "task `collected-explode` panicked: odd 3"
        ]
    );
    // Tasks with options in a collection: the name and the earlier attempts too.
    let attempts = Arc::new(AtomicU32::new(0));
    let outcomes = watchdog(
        move || run_concurrently!(all; for (0..2).map(|_| always_fails(attempts.clone()))),
    );
    for outcome in outcomes {
        let error = outcome.expect_err("always fails");
        assert_eq!(error.task(), "always_fails");
        assert!(
            matches!(error.kind(), TaskErrorKind::Failed { .. }),
            "{error}"
        );
        assert_eq!(error.attempts().len(), 2, "{error:?}");
    }
}

#[cpu_task(name = "first-fails")]
fn fails_first_or_waits(index: u32, started: Arc<AtomicUsize>) -> u32 {
    started.fetch_add(1, Ordering::SeqCst);
    assert!(index != 0, "task 0 fails");
    // The others wait until the failure cancels them (or the watchdog gives up).
    let deadline = Instant::now() + WATCHDOG;
    while !is_cancelled() && Instant::now() < deadline {
        std::thread::yield_now();
    }
    index
}

#[test]
fn a_failing_cpu_collection_never_starts_the_rest() {
    let _pool = support::whole_rayon_pool();
    let started = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&started);
    let outcome = watchdog(
        move || run_concurrently!(try; for (0..1000).map(|i| fails_first_or_waits(i, Arc::clone(&counter)))),
    );
    let error = outcome.expect_err("task 0 fails");
    assert_eq!(
        error.to_string(),
        "task `first-fails` panicked: task 0 fails"
    );
    // No task but the first can end before the failure: so each rayon thread started
    // at most one other task, and the failure stopped the other 990-odd from starting.
    let threads = rayon::current_num_threads();
    let count = started.load(Ordering::SeqCst);
    assert!(count <= 1 + threads, "{count} tasks started");
}

#[cpu_task(name = "odd-panics")]
fn cpu_panics_when_odd(n: u32) -> u32 {
    assert!(n.is_multiple_of(2), "odd {n}");
    n
}

#[test]
fn a_cpu_collection_collects_every_outcome_in_order() {
    let outcomes = watchdog(|| run_concurrently!(all; for (0..200).map(cpu_panics_when_odd)));
    assert_eq!(outcomes.len(), 200);
    for (n, outcome) in (0..).zip(outcomes) {
        match outcome {
            Ok(value) => assert_eq!(value, n),
            Err(error) => {
                assert_eq!(n % 2, 1, "{error}");
                assert_eq!(
                    error.to_string(),
                    format!("task `odd-panics` panicked: odd {n}")
                );
            }
        }
    }
}

#[cpu_task]
fn waits_for_cancellation(started: Arc<AtomicUsize>, ended: Arc<AtomicUsize>) -> u32 {
    started.fetch_add(1, Ordering::SeqCst);
    let deadline = Instant::now() + WATCHDOG;
    while !is_cancelled() && Instant::now() < deadline {
        std::thread::yield_now();
    }
    ended.fetch_add(1, Ordering::SeqCst);
    0
}

#[test]
fn dropping_an_async_cpu_collection_cancels_its_tasks() {
    let _pool = support::whole_rayon_pool();
    let started = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(AtomicUsize::new(0));
    let (counter, done) = (Arc::clone(&started), Arc::clone(&ended));
    watchdog(move || {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async move {
            let group = run_concurrently!(async; for (0..1000).map(|_| {
                waits_for_cancellation(Arc::clone(&counter), Arc::clone(&done))
            }));
            // The tasks never end on their own: the group is dropped at the timeout.
            let outcome = tokio::time::timeout(Duration::from_millis(50), group).await;
            assert!(outcome.is_err(), "the tasks ended without being cancelled");
        });
    });
    // The running tasks saw `is_cancelled()` and returned; the rest never started.
    wait_until("the started tasks returned", WATCHDOG, || {
        ended.load(Ordering::SeqCst) == started.load(Ordering::SeqCst)
    });
    let count = started.load(Ordering::SeqCst);
    assert!(
        count <= rayon::current_num_threads(),
        "{count} tasks started"
    );
}

#[cpu_task]
fn first_waits_for_the_rest(index: u32, others_done: Arc<AtomicU32>, others: u32) -> u32 {
    if index == 0 {
        wait_until("every other task ended", WATCHDOG, || {
            others_done.load(Ordering::SeqCst) == others
        });
    } else {
        others_done.fetch_add(1, Ordering::SeqCst);
    }
    index
}

#[test]
fn a_slow_cpu_task_does_not_hold_back_the_tasks_after_it() {
    // The first task of a collection waits until all the others ended: that only
    // works if no thread keeps tasks it has not started behind a running one.
    let _pool = support::whole_rayon_pool();
    if rayon::current_num_threads() < 2 {
        return; // one rayon thread runs one task at a time: nothing to show
    }
    let done = Arc::new(AtomicU32::new(0));
    let values = watchdog(
        move || run_concurrently!(for (0..1000).map(|i| first_waits_for_the_rest(i, Arc::clone(&done), 999))),
    );
    assert_eq!(values, (0..1000).collect::<Vec<u32>>());
}
