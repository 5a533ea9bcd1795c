//! A thousand process tasks, crashes included, leave no zombie and no leaked file
//! descriptor. Alone in its test binary: it counts the whole process's fds.

mod support;

use concurrency_runtime::process::{self, PoolConfig};
use concurrency_runtime::{cpu_task, run_concurrently};
use support::{expect_panic, watchdog};

#[cpu_task(process)]
fn double(n: u64) -> u64 {
    n * 2
}

#[cpu_task(process)]
fn exit_now() -> u64 {
    std::process::exit(1)
}

#[cpu_task(process)]
fn nap(ms: u64) -> u32 {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    std::process::id()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

fn children() -> Vec<(u32, String)> {
    let mut children = Vec::new();
    for task in std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
    {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in list
            .split_whitespace()
            .filter_map(|pid| pid.parse::<u32>().ok())
        {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or("?");
            children.push((pid, state.to_owned()));
        }
    }
    children
}

/// Runs naps until both slots have a live worker.
fn both_workers_live() {
    for _ in 0..50 {
        let _ = run_concurrently!(for (0..4).map(|_| nap(20)));
        if process::worker_pids().len() == 2 {
            return;
        }
    }
    panic!("the pool never had two live workers");
}

#[test]
fn a_thousand_tasks_leave_no_zombie_and_no_leaked_fd() {
    process::configure(PoolConfig::default().workers(2)).expect("configure");
    watchdog(|| {
        both_workers_live();
        let fds_before = open_fds();

        let doubled = run_concurrently!(for (0..990).map(double));
        assert_eq!(doubled, (0..990).map(|n| n * 2).collect::<Vec<_>>());
        for _ in 0..10 {
            let message = expect_panic(|| {
                let _ = exit_now().run();
            });
            assert!(message.contains("exited with code 1"), "{message}");
        }

        both_workers_live();
        let zombies: Vec<_> = children()
            .into_iter()
            .filter(|(_, state)| state == "Z")
            .collect();
        assert!(zombies.is_empty(), "zombie workers: {zombies:?}");
        assert!(
            children().len() <= 2,
            "only the pool's workers remain: {:?}",
            children()
        );
        assert_eq!(open_fds(), fds_before, "file descriptors leaked");
    });
}
