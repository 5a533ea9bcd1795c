//! A process task that calls process tasks runs them in its worker's own pool, one
//! level deeper, up to the pool's `max_depth` (2 by default); a deeper call fails with
//! an error naming the depth, so that a runaway recursion cannot fill the machine with
//! processes.

mod support;

use std::collections::HashMap;
use std::process::Command;

use concurrency_runtime::process::{self, ConfigError, PoolConfig};
use concurrency_runtime::{cpu_task, run_concurrently};
use support::watchdog;

const HELPER: &str = "CONCURRENCY_TEST_NESTING_HELPER";

/// One test at a time: the process count of one must not see another's processes.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The pids from this level down, or why a level could not run.
#[cpu_task(process)]
fn nest(levels: u32) -> Result<Vec<u32>, String> {
    let here = std::process::id();
    if levels == 0 {
        return Ok(vec![here]);
    }
    let mut below = nest(levels - 1)
        .try_run()
        .map_err(|error| error.to_string())?;
    below.insert(0, here);
    Ok(below)
}

/// A binary tree of process tasks, `levels` deep.
#[cpu_task(process)]
fn tree(levels: u32) -> Result<u32, String> {
    if levels == 0 {
        return Ok(1);
    }
    let (left, right) = run_concurrently!(try; tree(levels - 1), tree(levels - 1))
        .map_err(|error| error.to_string())?;
    Ok(1 + left + right)
}

#[cpu_task(process)]
fn configure_in_a_worker() -> Option<String> {
    process::configure(PoolConfig::default())
        .err()
        .map(|error| format!("{error:?}"))
}

/// Each process's parent, from `/proc/*/stat`.
fn parents() -> HashMap<u32, u32> {
    let mut parents = HashMap::new();
    for entry in std::fs::read_dir("/proc").expect("/proc must be readable for this test") {
        let entry = entry.expect("entry");
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // A process may end while the directory is read.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let after_name = stat.rsplit(')').next().expect("stat fields");
        let parent = after_name
            .split_whitespace()
            .nth(1)
            .expect("ppid")
            .parse()
            .expect("ppid");
        parents.insert(pid, parent);
    }
    assert!(
        parents.contains_key(&std::process::id()),
        "the scan of /proc did not find this process"
    );
    parents
}

/// The processes that descend from this one.
fn descendants() -> Vec<u32> {
    let parents = parents();
    let me = std::process::id();
    parents
        .keys()
        .copied()
        .filter(|&pid| {
            let mut at = pid;
            while let Some(&parent) = parents.get(&at) {
                if parent == me {
                    return true;
                }
                if parent <= 1 || parent == at {
                    return false;
                }
                at = parent;
            }
            false
        })
        .collect()
}

#[test]
fn a_process_task_runs_process_tasks_in_its_own_workers_pool() {
    let _one = one_at_a_time();
    let pids = watchdog(|| nest(1).run()).expect("one level of nesting is allowed");
    let parents = parents();
    assert_eq!(pids.len(), 2);
    assert_eq!(
        parents[&pids[0]],
        std::process::id(),
        "a worker of this process"
    );
    assert_eq!(parents[&pids[1]], pids[0], "a worker of that worker");
}

#[test]
fn a_call_deeper_than_the_limit_fails_naming_the_depth() {
    let _one = one_at_a_time();
    let error = watchdog(|| nest(2).run()).expect_err("too deep");
    assert!(
        error.ends_with(
            "process tasks nest at most 2 deep (`PoolConfig::max_depth`): this call, in a \
             worker at depth 2, would run at depth 3"
        ),
        "{error}"
    );
}

#[test]
fn a_runaway_recursion_stops_at_the_limit_with_few_processes() {
    let _one = one_at_a_time();
    let error = watchdog(|| tree(4).run()).expect_err("too deep");
    assert!(error.contains("nest at most 2 deep"), "{error}");
    // The top pool's workers (2 on this machine's default, at most the core count) and
    // one nested worker each: never a process per call.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let descendants = descendants();
    assert!(
        !descendants.is_empty() && descendants.len() <= 2 * cores,
        "{} descendant processes: {descendants:?}",
        descendants.len()
    );
}

#[test]
fn a_worker_cannot_reconfigure_its_pool() {
    let _one = one_at_a_time();
    let refused = watchdog(|| configure_in_a_worker().run());
    assert_eq!(refused, Some(format!("{:?}", ConfigError::InWorker)));
}

/// Not a test on its own: run by `max_depth_1_forbids_nesting` in a child process.
#[test]
fn helper() {
    if std::env::var(HELPER).as_deref() != Ok("flat") {
        return;
    }
    process::configure(PoolConfig::default().max_depth(1)).expect("configure");
    match nest(1).run() {
        Ok(pids) => println!("\nNESTED {pids:?}"),
        Err(error) => println!("\nREFUSED {error}"),
    }
}

#[test]
fn max_depth_1_forbids_nesting() {
    let _one = one_at_a_time();
    let output = watchdog(|| {
        Command::new(std::env::current_exe().expect("exe"))
            .args(["--exact", "helper", "--nocapture", "--test-threads=1"])
            .env(HELPER, "flat")
            .output()
            .expect("helper")
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(
            "REFUSED task `nest` failed in its worker: process tasks nest at most 1 deep \
             (`PoolConfig::max_depth`): this call, in a worker at depth 1, would run at depth 2"
        ),
        "{stdout}"
    );
}
