//! Process tasks seen from outside: their output reaches the parent's streams
//! without corrupting the protocol, and workers die with their parent, even when the
//! parent is SIGKILLed. Each scenario runs in a helper: this test binary, started
//! again with `CONCURRENCY_TEST_HELPER` set, running only the `helper` test.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use concurrency_runtime::process::{self, PoolConfig};
use concurrency_runtime::{cpu_task, run_concurrently};
use support::watchdog;

const HELPER: &str = "CONCURRENCY_TEST_HELPER";
const TEN_MIB: usize = 10 << 20;

#[cpu_task(process)]
fn hold_forever() -> u32 {
    println!("worker-pid {}", std::process::id());
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}

#[cpu_task(process)]
fn loud(bytes: usize) -> usize {
    let line = [b'x'; 1023];
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    for _ in 0..bytes / 1024 {
        out.write_all(&line)
            .and_then(|()| out.write_all(b"\n"))
            .expect("stdout");
        err.write_all(&line)
            .and_then(|()| err.write_all(b"\n"))
            .expect("stderr");
    }
    bytes
}

#[cpu_task(process)]
fn square(n: u64) -> u64 {
    n * n
}

/// Does nothing unless started by one of the tests below.
#[test]
fn helper() {
    match std::env::var(HELPER).as_deref() {
        Ok("hold") => {
            process::configure(PoolConfig::default().workers(1)).expect("configure");
            let _ = hold_forever().run();
        }
        Ok("loud") => {
            let (a, b) = run_concurrently!(loud(TEN_MIB), square(12));
            println!("done {a} {b}");
        }
        _ => {}
    }
}

fn helper_command(mode: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("exe"));
    command
        .args(["--exact", "helper", "--nocapture", "--test-threads=1"])
        .env(HELPER, mode);
    command
}

/// Kills the helper if the test fails before it does, so no process outlives it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn workers_die_with_a_sigkilled_parent() {
    let worker = watchdog(|| {
        let mut helper = KillOnDrop(
            helper_command("hold")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("helper"),
        );
        let stdout = helper.0.stdout.take().expect("stdout");
        let pid = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            // The harness prints `test helper ... ` without a newline before the task's line.
            .find_map(|line| {
                line.split("worker-pid ")
                    .nth(1)
                    .and_then(|pid| pid.trim().parse::<u32>().ok())
            })
            .expect("the helper's worker reports its pid");
        assert!(support::is_alive(pid));
        helper.0.kill().expect("SIGKILL the helper");
        helper.0.wait().expect("reap the helper");
        pid
    });
    // The worker is busy in its task, so only the death signal can end it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while support::is_alive(worker) {
        assert!(
            Instant::now() < deadline,
            "worker {worker} outlived its SIGKILLed parent"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn ten_mib_of_task_output_on_each_stream_reaches_the_parent_without_deadlock() {
    let output = watchdog(|| helper_command("loud").output().expect("helper"));
    assert!(output.status.success(), "{:?}", output.status);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("done {TEN_MIB} 144")),
        "the tasks' results came back"
    );
    let payload = |bytes: &[u8]| bytes.iter().filter(|b| **b == b'x').count();
    assert_eq!(payload(&output.stdout), TEN_MIB / 1024 * 1023);
    assert_eq!(payload(&output.stderr), TEN_MIB / 1024 * 1023);
}

#[cpu_task(process)]
fn read_stdin() -> (Vec<u8>, bool) {
    use std::io::Read;
    let mut input = Vec::new();
    let read = std::io::stdin().read_to_end(&mut input);
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileTypeExt;
    let is_null = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|stdin| stdin.metadata())
        .is_ok_and(|metadata| metadata.file_type().is_char_device());
    assert!(read.is_ok(), "reading stdin failed: {read:?}");
    (input, is_null)
}

#[test]
fn a_task_sees_an_empty_stdin_not_the_channel() {
    // The channel reaches a worker in the stdin slot (so that spawning needs no fork);
    // the worker must move it away and leave /dev/null before any task runs.
    let (input, is_null) = watchdog(|| read_stdin().run());
    assert!(input.is_empty(), "stdin held {} bytes", input.len());
    assert!(
        is_null,
        "fd 0 of a task is not /dev/null (closed, or still the socket)"
    );
    assert_eq!(watchdog(|| square(7).run()), 49);
}
