//! A thousand process tasks, crashes included, leave no zombie and no leaked file
//! descriptor. In a test binary of its own: it counts the whole process's children
//! and descriptors.

mod support;

use concurrency_runtime::process::{self, PoolConfig};
use concurrency_runtime::{cpu_task, run_concurrently};
use support::{children, expect_panic, watchdog, zombies};

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

/// The tests here count the whole process's children and descriptors: one at a time.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_thousand_tasks_leave_no_zombie_and_no_leaked_fd() {
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
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
        assert_eq!(zombies(), Vec::<u32>::new(), "zombie workers");
        assert!(
            children().len() <= 2,
            "only the pool's workers remain: {:?}",
            children()
        );
        assert_eq!(open_fds(), fds_before, "file descriptors leaked");
    });
}

#[test]
fn the_zombie_check_finds_a_child_that_was_not_reaped() {
    // The check above must be able to fail: a child that exits and is not waited for
    // is a zombie, and `zombies()` lists it until it is reaped.
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let pid = child.id();
    let found = watchdog(move || {
        while !zombies().contains(&pid) {
            std::thread::yield_now();
        }
        true
    });
    assert!(found);
    child.wait().expect("reap");
    assert!(
        !zombies().contains(&pid),
        "reaped, it is no zombie any more"
    );
}
