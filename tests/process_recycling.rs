//! A worker is replaced after `max_tasks_per_worker` tasks or once its memory passes
//! `max_worker_memory`; the tasks sent to it behind the last one it runs go to its
//! replacement, and none runs twice. One worker, so that replacements are visible.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use concurrency_runtime::process::{self, PoolConfig};
use concurrency_runtime::{cpu_task, run_concurrently};
use support::watchdog;

const HELPER: &str = "CONCURRENCY_TEST_RECYCLING_HELPER";

/// Frames the memory helper's limit.
const MEMORY_LIMIT: u64 = 96 << 20;
const LEAK: usize = 16 << 20;

fn setup() -> std::sync::MutexGuard<'static, ()> {
    static SETUP: std::sync::Once = std::sync::Once::new();
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SETUP.call_once(|| {
        process::configure(PoolConfig::default().workers(1).max_tasks_per_worker(3))
            .expect("configure")
    });
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// Tasks this worker process has run.
static RAN: AtomicU64 = AtomicU64::new(0);

/// Logs its index, and says which worker ran it as its how-manieth task.
#[cpu_task(process)]
fn numbered(index: u32, log: String) -> (u32, u32, u64) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .expect("log");
    writeln!(file, "{index}").expect("write");
    (
        index,
        std::process::id(),
        RAN.fetch_add(1, Ordering::SeqCst) + 1,
    )
}

fn scratch(name: &str) -> String {
    let path = std::env::temp_dir().join(format!(
        "concurrency-recycling-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path.to_string_lossy().into_owned()
}

/// Each worker's tasks, in the order they ran, as their numbers within the worker.
fn by_worker(results: &[(u32, u32, u64)]) -> Vec<Vec<u64>> {
    let mut workers: Vec<(u32, Vec<u64>)> = Vec::new();
    for &(_, pid, nth) in results {
        match workers.last_mut() {
            Some((last, tasks)) if *last == pid => tasks.push(nth),
            _ => workers.push((pid, vec![nth])),
        }
    }
    let pids: std::collections::HashSet<u32> = workers.iter().map(|(pid, _)| *pid).collect();
    assert_eq!(
        pids.len(),
        workers.len(),
        "a worker came back after it was replaced"
    );
    workers.into_iter().map(|(_, tasks)| tasks).collect()
}

fn logged_once_each(log: &str, count: u32) {
    let mut runs: Vec<u32> = std::fs::read_to_string(log)
        .expect("log")
        .lines()
        .map(|line| line.parse().expect("index"))
        .collect();
    runs.sort_unstable();
    assert_eq!(
        runs,
        (0..count).collect::<Vec<_>>(),
        "each task ran exactly once"
    );
}

#[test]
fn queued_tasks_go_to_the_replacement_of_a_worker_at_its_task_limit() {
    let _one = setup();
    let log = scratch("queued");
    let results = watchdog({
        let log = log.clone();
        // Ten tasks in flight at once: the worker gets more than its three.
        move || run_concurrently!(for (0..10).map(|index| numbered(index, log.clone())))
    });
    assert_eq!(
        results.iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(
        by_worker(&results),
        [vec![1, 2, 3], vec![1, 2, 3], vec![1, 2, 3], vec![1]]
    );
    logged_once_each(&log, 10);
}

#[test]
fn tasks_run_one_at_a_time_also_move_to_a_new_worker_at_the_limit() {
    let _one = setup();
    let log = scratch("sequential");
    let results = watchdog({
        let log = log.clone();
        move || {
            (0..7)
                .map(|index| numbered(index, log.clone()).run())
                .collect::<Vec<_>>()
        }
    });
    let workers = by_worker(&results);
    // The first worker may have run tasks of the other test before.
    assert!(workers.len() >= 3, "{workers:?}");
    assert!(
        workers
            .iter()
            .all(|tasks| tasks.len() <= 3 && tasks.iter().all(|n| *n <= 3))
    );
    logged_once_each(&log, 7);
    assert_eq!(process::worker_pids().len(), 1);
}

/// Leaks `bytes` (touched, so resident); returns its worker's pid and resident memory.
#[cpu_task(process)]
fn leak(bytes: usize) -> (u32, u64) {
    std::mem::forget(vec![1u8; bytes]);
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .expect("rss")
        .parse()
        .expect("pages");
    (std::process::id(), pages * 4096)
}

/// Not a test on its own: run by `a_worker_that_leaks_is_replaced_once_it_passes_the_memory_limit`
/// in a child process, with its own pool settings.
#[test]
fn helper() {
    if std::env::var(HELPER).as_deref() != Ok("memory") {
        return;
    }
    process::configure(
        PoolConfig::default()
            .workers(1)
            .max_worker_memory(MEMORY_LIMIT),
    )
    .expect("configure");
    for _ in 0..16 {
        let (pid, rss) = leak(LEAK).run();
        println!("\nLEAK {pid} {rss}");
    }
}

#[test]
fn a_worker_that_leaks_is_replaced_once_it_passes_the_memory_limit() {
    let output = watchdog(|| {
        Command::new(std::env::current_exe().expect("exe"))
            .args(["--exact", "helper", "--nocapture", "--test-threads=1"])
            .env(HELPER, "memory")
            .output()
            .expect("helper")
    });
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut workers: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut order = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if let Some(rest) = line.strip_prefix("LEAK ") {
            let (pid, rss) = rest.split_once(' ').expect("pid and rss");
            let pid: u32 = pid.parse().expect("pid");
            if !order.contains(&pid) {
                order.push(pid);
            }
            workers
                .entry(pid)
                .or_default()
                .push(rss.parse().expect("rss"));
        }
    }
    assert_eq!(
        workers.values().map(Vec::len).sum::<usize>(),
        16,
        "every task ran once"
    );
    assert!(
        order.len() >= 2,
        "a leaking worker was never replaced: {workers:?}"
    );
    // Each replaced worker ran until its memory passed the limit, and no further.
    for pid in &order[..order.len() - 1] {
        let rss = &workers[pid];
        let (last, before) = rss.split_last().expect("tasks");
        assert!(*last > MEMORY_LIMIT, "{pid}: {rss:?}");
        assert!(
            before.iter().all(|rss| *rss <= MEMORY_LIMIT),
            "{pid}: {rss:?}"
        );
    }
}
