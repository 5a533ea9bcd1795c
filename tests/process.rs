//! `#[cpu_task(process)]`: tasks really run in reused worker processes.

mod support;

use std::sync::Once;

use concurrency_runtime::process::{self, PoolConfig};
use concurrency_runtime::{TaskKind, cpu_task, io_task, run_concurrently};
use support::{expect_panic, watchdog};

fn pool_of_two() {
    static SETUP: Once = Once::new();
    SETUP.call_once(|| {
        process::configure(PoolConfig::default().workers(2)).expect("configure before first use")
    });
}

#[cpu_task(process)]
fn where_am_i() -> (u32, u32, bool) {
    (
        std::process::id(),
        std::os::unix::process::parent_id(),
        TaskKind::current() == Some(TaskKind::Process),
    )
}

#[cpu_task(process, name = "sum-squares")]
fn sum_squares(items: Vec<u64>, offset: u64) -> u64 {
    items.iter().map(|i| i * i).sum::<u64>() + offset
}

#[cpu_task(process)]
fn fails(message: String) -> u64 {
    panic!("{message}")
}

#[io_task]
async fn fetch(n: u64) -> u64 {
    tokio::task::yield_now().await;
    n
}

#[cpu_task]
fn crunch(n: u64) -> u64 {
    n * 2
}

#[test]
fn a_process_task_runs_in_a_child_process_of_this_program() {
    pool_of_two();
    let (pid, parent, in_worker) = watchdog(|| where_am_i().run());
    assert_ne!(pid, std::process::id(), "must run in another process");
    assert_eq!(parent, std::process::id(), "the worker is our child");
    assert!(in_worker, "TaskKind::current() is Process in the worker");
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("worker exe");
    assert_eq!(
        exe,
        std::env::current_exe().expect("exe"),
        "the worker is a copy of this program"
    );
}

#[test]
fn arguments_and_results_round_trip() {
    pool_of_two();
    assert_eq!(watchdog(|| sum_squares(vec![1, 2, 3], 100).run()), 114);
    assert_eq!(sum_squares(vec![2], 1).run_inline(), 5);
    assert_eq!(sum_squares(vec![], 0).name(), "sum-squares");
}

#[test]
fn a_hundred_tasks_on_a_pool_of_two_use_at_most_two_workers() {
    pool_of_two();
    let pids = watchdog(|| run_concurrently!(for (0..100).map(|_| where_am_i())));
    let mut distinct: Vec<u32> = pids.iter().map(|(pid, _, _)| *pid).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() <= 2, "{distinct:?}");
    assert!(process::worker_pids().len() <= 2);
}

#[test]
fn process_tasks_mix_with_every_other_kind() {
    pool_of_two();
    let (a, b, c) = watchdog(|| run_concurrently!(fetch(1), crunch(2), sum_squares(vec![3], 0)));
    assert_eq!((a, b, c), (1, 4, 9));
    let (a, c) = watchdog(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime
            .block_on(async { run_concurrently!(async; fetch(5), sum_squares(vec![4], 1)).await })
    });
    assert_eq!((a, c), (5, 17));
}

#[test]
fn a_panic_in_a_process_task_names_it_and_the_next_task_runs() {
    pool_of_two();
    let message = watchdog(|| {
        expect_panic(|| {
            let _ = fails("kaboom".into()).run();
        })
    });
    assert_eq!(message, "task `fails` panicked: kaboom");
    assert_eq!(watchdog(|| sum_squares(vec![5], 0).run()), 25);
}

/// Runs this test binary with the worker marker set to `value` and `stdin` as its
/// standard input. Should the marker be ignored, the harness runs no test (the filter
/// matches none), rather than this whole suite again in a child.
fn run_marked(value: &str, stdin: std::process::Stdio) -> std::process::Output {
    std::process::Command::new(std::env::current_exe().expect("exe"))
        .args(["--exact", "no_test_has_this_name"])
        .env("CONCURRENCY_RUNTIME_WORKER", value)
        .stdin(stdin)
        .output()
        .expect("run")
}

#[test]
fn a_worker_marker_without_a_valid_channel_says_why_and_exits_2() {
    let pid = std::process::id();
    let settings = |fd: &str, parent: &str| {
        format!(
            "fd={fd} {parent} depth=1 max_frame=1024 max_depth=2 nested=1 tasks=0 memory=0 \
             registry=0"
        )
    };
    let socket = || {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("pair");
        (
            ours,
            std::process::Stdio::from(std::os::fd::OwnedFd::from(theirs)),
        )
    };
    let (_kept, stdin_socket) = socket();
    let (_kept_too, another_socket) = socket();
    let (_kept_three, a_third_socket) = socket();
    let cases = [
        // stdin is /dev/null, not a socket
        (
            settings("0", &format!("parent={pid}")),
            std::process::Stdio::null(),
            "descriptor 0 is not an open socket".to_string(),
        ),
        (
            "garbage".to_string(),
            std::process::Stdio::null(),
            "`garbage` is not a `key=value` setting".to_string(),
        ),
        // A channel, but no parent, or not this parent.
        (
            settings("0", ""),
            stdin_socket,
            "the setting `parent` is missing".to_string(),
        ),
        (
            settings("0", "parent=1"),
            another_socket,
            format!("it was started for parent process 1, but its parent is process {pid}"),
        ),
        // The right parent, but not the same program: its tasks are numbered otherwise.
        (
            settings("0", &format!("parent={pid}")),
            a_third_socket,
            "its process tasks differ from its parent's".to_string(),
        ),
    ];
    for (value, stdin, expected) in cases {
        let output = run_marked(&value, stdin);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{value}: {stderr}");
        assert!(
            output.stdout.is_empty(),
            "main ran: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        assert!(
            stderr.contains(&expected) && stderr.contains("without running main"),
            "{value}: {stderr}"
        );
    }
}

#[cpu_task(process)]
fn reverse(data: Vec<u8>) -> Vec<u8> {
    let mut data = data;
    data.reverse();
    data
}

#[test]
fn a_256_mib_argument_and_result_round_trip_within_the_default_limit() {
    pool_of_two();
    let size = 256 << 20;
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let expected: Vec<u8> = data.iter().rev().copied().collect();
    let reversed = watchdog(move || reverse(data).run());
    assert_eq!(reversed.len(), size);
    assert!(reversed == expected, "the payload came back intact");
}

#[test]
fn the_pool_is_configured_before_it_starts_and_needs_a_worker() {
    assert_eq!(
        process::configure(PoolConfig::default().workers(0)),
        Err(process::ConfigError::ZeroWorkers)
    );
    pool_of_two();
    assert_eq!(watchdog(|| sum_squares(vec![1], 0).run()), 1);
    assert_eq!(
        process::configure(PoolConfig::default().workers(3)),
        Err(process::ConfigError::AlreadyStarted)
    );
    assert!(process::worker_pids().len() <= 2);
}

#[cpu_task(process)]
fn aborts() -> u64 {
    std::process::abort()
}

#[cpu_task(process)]
fn double_with_pid(n: u64) -> (u64, u32) {
    (n * 2, std::process::id())
}

#[test]
fn synchronous_runs_borrowing_workers_mix_with_queued_groups() {
    pool_of_two();
    // One thread runs tasks one at a time (they borrow idle workers), another runs
    // groups through the queue at the same time, and a third crashes a worker now
    // and then: every result is right, nothing waits forever, and the pool never
    // has more than its two workers at once.
    let pids = watchdog(|| {
        let sequential = std::thread::spawn(|| {
            (0..300u64)
                .map(|n| {
                    let (doubled, pid) = double_with_pid(n).run();
                    assert_eq!(doubled, n * 2);
                    pid
                })
                .collect::<Vec<u32>>()
        });
        let grouped = std::thread::spawn(|| {
            (0..20u64)
                .flat_map(|round| {
                    let results =
                        run_concurrently!(for (0..20).map(|n| double_with_pid(round * 100 + n)));
                    results
                        .into_iter()
                        .zip(0..)
                        .map(|((doubled, pid), n)| {
                            assert_eq!(doubled, (round * 100 + n) * 2);
                            pid
                        })
                        .collect::<Vec<u32>>()
                })
                .collect::<Vec<u32>>()
        });
        let crashing = std::thread::spawn(|| {
            for _ in 0..5 {
                let error = aborts().try_run().expect_err("crashes");
                assert!(matches!(
                    error.kind(),
                    concurrency_runtime::TaskErrorKind::Crashed {
                        signal: Some(6),
                        ..
                    }
                ));
            }
        });
        crashing.join().expect("crashing thread");
        let mut pids = sequential.join().expect("sequential thread");
        pids.extend(grouped.join().expect("grouped thread"));
        pids
    });
    assert_eq!(pids.len(), 300 + 400);
    assert!(process::worker_pids().len() <= 2);
}

#[cpu_task(process)]
fn start_this_program_again() -> (Option<i32>, bool) {
    // `--list` makes the test harness (this binary's `main`) list its tests.
    let output = std::process::Command::new(std::env::current_exe().expect("exe"))
        .arg("--list")
        .output()
        .expect("run");
    (output.status.code(), !output.stdout.is_empty())
}

#[test]
fn a_program_a_process_task_starts_runs_its_main() {
    // The worker's marker must not leak into the programs its tasks start: a copy of
    // this program started from a task is a normal program, not a worker.
    pool_of_two();
    let (code, printed) = watchdog(|| start_this_program_again().run());
    assert_eq!(code, Some(0));
    assert!(printed, "the started program's main printed nothing");
}
