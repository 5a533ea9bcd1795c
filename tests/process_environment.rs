//! A worker sees only the environment the pool allows, and holds no descriptor of its
//! parent's but its own channel (as Python's `close_fds=True`).

mod support;

use std::collections::BTreeMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Command;

use concurrency_runtime::cpu_task;
use concurrency_runtime::process::{self, PoolConfig};
use support::watchdog;

/// Selects what the `helper` test does when this binary runs it in a child process.
const HELPER: &str = "CONCURRENCY_TEST_ENV_HELPER";

#[cpu_task(process)]
fn worker_env() -> Vec<(String, String)> {
    std::env::vars().collect()
}

#[cpu_task(process)]
fn worker_fds() -> Vec<(u32, String)> {
    // The descriptor `read_dir` opens for the listing itself is left out.
    let listing = format!("/proc/{}/fd", std::process::id());
    let mut fds = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd") {
        let entry = entry.expect("entry");
        let fd = entry
            .file_name()
            .to_string_lossy()
            .parse()
            .expect("fd number");
        let target = std::fs::read_link(entry.path()).expect("a descriptor's target");
        let target = target.to_string_lossy().into_owned();
        if target != listing {
            fds.push((fd, target));
        }
    }
    fds
}

/// Not a test on its own: the tests below run it in a child process of this binary,
/// with the environment they choose, and read what it prints.
#[test]
fn helper() {
    let config = match std::env::var(HELPER).as_deref() {
        Ok("clear") => PoolConfig::default()
            .env_clear()
            .env_allow("KEEP_ME")
            .env_allow("PATH")
            .env("ADDED", "1"),
        Ok("remove") => PoolConfig::default().env_remove("SECRET_TOKEN"),
        _ => return,
    };
    process::configure(config).expect("configure");
    for (key, value) in worker_env().run() {
        // On a line of its own: the harness prints `test helper ... ` before.
        println!("\nENV {key}={value}");
    }
}

/// The environment a worker saw, in a child process run with `mode`, a secret and a
/// variable to keep in its own environment.
fn worker_environment(mode: &str) -> BTreeMap<String, String> {
    let output = watchdog({
        let mode = mode.to_owned();
        move || {
            Command::new(std::env::current_exe().expect("exe"))
                .args(["--exact", "helper", "--nocapture", "--test-threads=1"])
                .env(HELPER, mode)
                .env("SECRET_TOKEN", "hunter2")
                .env("KEEP_ME", "yes")
                .output()
                .expect("helper")
        }
    });
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let vars: BTreeMap<String, String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix("ENV "))
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
    assert!(!vars.is_empty(), "the helper printed no environment");
    vars
}

#[test]
fn a_cleared_environment_keeps_only_the_allowed_variables() {
    let vars = worker_environment("clear");
    let keys: Vec<&str> = vars
        .keys()
        .map(String::as_str)
        .filter(|key| *key != "PATH") // allowed, if the test runs with one
        .collect();
    assert_eq!(keys, ["ADDED", "KEEP_ME"], "{vars:?}");
    assert_eq!(vars["KEEP_ME"], "yes");
}

#[test]
fn a_removed_variable_never_reaches_a_worker() {
    let vars = worker_environment("remove");
    assert!(!vars.contains_key("SECRET_TOKEN"), "{vars:?}");
    assert_eq!(vars.get("KEEP_ME").map(String::as_str), Some("yes"));
    // The worker's own marker is not left for the programs its tasks start.
    assert!(
        !vars
            .keys()
            .any(|key| key.starts_with("CONCURRENCY_RUNTIME")),
        "{vars:?}"
    );
}

#[test]
fn a_worker_holds_only_stdio_and_its_own_channel() {
    // The only test here that starts this process's pool: its workers are spawned
    // after the pipe below exists.
    assert!(process::worker_pids().is_empty());
    let mut ends = [0; 2];
    // SAFETY: `ends` has room for the two descriptors pipe writes; no close-on-exec.
    assert_eq!(unsafe { libc::pipe(ends.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just created and are owned only here.
    let _pipe = unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
    let pipe = std::fs::read_link(format!("/proc/self/fd/{}", ends[0]))
        .expect("the pipe's name")
        .to_string_lossy()
        .into_owned();
    assert!(pipe.starts_with("pipe:["), "{pipe}");

    let fds = watchdog(|| worker_fds().run());
    assert!(
        !fds.iter().any(|(_, target)| *target == pipe),
        "the pipe leaked: {fds:?}"
    );
    assert_eq!(
        fds.iter().find(|(fd, _)| *fd == 0).map(|(_, t)| t.as_str()),
        Some("/dev/null")
    );
    // Besides stdio: the channel and the cancel line, two sockets. Nothing else.
    let own: Vec<&str> = fds
        .iter()
        .filter(|(fd, _)| *fd > 2)
        .map(|(_, target)| target.as_str())
        .collect();
    assert_eq!(own.len(), 2, "{fds:?}");
    assert!(
        own.iter().all(|target| target.starts_with("socket:[")),
        "{fds:?}"
    );
    assert_ne!(own[0], own[1], "{fds:?}");
}
