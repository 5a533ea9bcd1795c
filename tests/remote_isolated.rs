//! Worker-host failures that need a caller of their own (feature `nats`): each
//! scenario runs in a copy of this test binary (a caller is configured once per
//! process), against its own real `nats-server` and hosts: a host killed mid-task, a
//! host of another build, wrong credentials on either side, the broker stopped while
//! a task runs, and a payload over the server's maximum message size.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use concurrency_runtime::process::remote::NatsConfig;
use concurrency_runtime::process::{self, PoolConfig};
use concurrency_runtime::{TaskErrorKind, cpu_task};
use support::nats::{Host, NatsServer};
use support::watchdog;

const TOKEN: &str = "isolated-test-token";
const HEARTBEAT: Duration = Duration::from_millis(500);

/// A worker host's entry point (see `remote.rs`).
#[test]
#[ignore = "a worker host's entry point, started by the other tests"]
fn remote_host_entry() {
    support::nats::serve_host(HEARTBEAT, 1, 2);
}

/// A server, one worker host named `label` (with `extra` in its environment), and
/// this process's caller configured for them.
fn setup(label: &str, extra: &[(&str, &str)]) -> (NatsServer, Host) {
    let server = NatsServer::start(TOKEN);
    let mut env = vec![
        ("CONCURRENCY_TEST_HOST_URL", server.url.as_str()),
        ("CONCURRENCY_TEST_HOST_TOKEN", TOKEN),
    ];
    env.extend_from_slice(extra);
    let host = Host::start("remote_host_entry", label, &env);
    caller(&server.url, TOKEN);
    (server, host)
}

/// Runs the scenario `name` in a copy of this binary (`scenario_entry`) with `env`;
/// its exit status and output.
fn scenario(name: &str, env: &[(&str, &str)]) -> (bool, String) {
    let exe = std::env::current_exe().expect("the test binary");
    let mut command = Command::new(exe);
    command
        .args([
            "--exact",
            "scenario_entry",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CONCURRENCY_TEST_SCENARIO", name);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run the scenario");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[cpu_task(process)]
fn pid_then_sleep(marker: String) -> u64 {
    std::fs::write(&marker, std::process::id().to_string()).expect("write the marker");
    std::thread::sleep(Duration::from_secs(60));
    0
}

#[cpu_task(process)]
fn double(n: u64) -> u64 {
    n * 2
}

#[cpu_task(process)]
fn byte_count(bytes: Vec<u8>) -> usize {
    bytes.len()
}

fn caller(url: &str, token: &str) {
    let config = NatsConfig::new(url).token(token).heartbeat(HEARTBEAT);
    process::configure(PoolConfig::default().nats(config)).expect("configure the caller");
}

/// Waits (bounded) until `path` exists.
fn wait_for_file(path: &std::path::Path) {
    let started = Instant::now();
    while !path.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{} never came",
            path.display()
        );
        std::thread::yield_now();
    }
}

/// The scenarios, run by `scenario` in a process of their own.
#[test]
#[ignore = "the scenarios' entry point, started by the other tests"]
fn scenario_entry() {
    let Ok(name) = std::env::var("CONCURRENCY_TEST_SCENARIO") else {
        return;
    };
    match name.as_str() {
        "host-lost" => {
            let (_server, mut host) = setup("doomed", &[]);
            let marker = support::nats::TempDir::new("host-lost");
            let file = marker.0.join("pid");
            let path = file.display().to_string();
            let running = std::thread::spawn(move || pid_then_sleep(path).try_run());
            wait_for_file(&file);
            let killed = Instant::now();
            host.kill();
            let error = watchdog(move || running.join().expect("the caller thread"))
                .expect_err("the host is gone");
            let took = killed.elapsed();
            assert!(
                matches!(error.kind(), TaskErrorKind::Crashed { .. }),
                "{error}"
            );
            // Twice the heartbeat, and the watch's own period, with a wide margin.
            assert!(
                took < HEARTBEAT * 2 + Duration::from_secs(2),
                "took {took:?}"
            );
            println!("scenario passed: {error} after {took:?}");
        }
        "build-mismatch" => {
            let (_server, host) = setup(
                "other-build",
                &[("CONCURRENCY_REMOTE_BUILD", "some-other-build")],
            );
            let error = watchdog(|| double(4).try_run()).expect_err("refused");
            let text = error.to_string();
            assert!(
                matches!(error.kind(), TaskErrorKind::Worker { .. }),
                "{text}"
            );
            assert!(
                text.contains("another build") && text.contains("some-other-build"),
                "{text}"
            );
            // The host says so too, on its stderr.
            assert!(
                host.says(
                    "refused a request from a caller of another build",
                    Duration::from_secs(20)
                ),
                "the host did not say why"
            );
            println!("scenario passed: {text}");
        }
        "caller-bad-token" => {
            let server = NatsServer::start(TOKEN);
            caller(&server.url, "wrong-token");
            let error = watchdog(|| double(4).try_run()).expect_err("refused");
            let text = error.to_string();
            assert!(text.contains("cannot connect"), "{text}");
            println!("scenario passed: {text}");
        }
        "broker-lost" => {
            let (server, _host) = setup("cut-off", &[]);
            let marker = support::nats::TempDir::new("broker-lost");
            let file = marker.0.join("pid");
            let path = file.display().to_string();
            let running = std::thread::spawn(move || pid_then_sleep(path).try_run());
            wait_for_file(&file);
            let stopped = Instant::now();
            drop(server);
            let error = watchdog(move || running.join().expect("the caller thread"))
                .expect_err("the broker is gone");
            let took = stopped.elapsed();
            // `Crashed` if the host's first heartbeat got through before the broker
            // went, else the error that no host took the task: an error either way,
            // within twice the heartbeat (wide margin), never a hang.
            assert!(
                matches!(
                    error.kind(),
                    TaskErrorKind::Crashed { .. } | TaskErrorKind::Worker { .. }
                ),
                "{error}"
            );
            assert!(
                took < HEARTBEAT * 2 + Duration::from_secs(2),
                "took {took:?}"
            );
            println!("scenario passed: {error} after {took:?}");
        }
        "too-large" => {
            let (_server, _host) = setup("small", &[]);
            let error =
                watchdog(|| byte_count(vec![7u8; 10 << 20]).try_run()).expect_err("too large");
            let text = error.to_string();
            assert!(text.contains("maximum message size"), "{text}");
            assert_eq!(watchdog(|| byte_count(vec![1u8; 1000]).run()), 1000);
            println!("scenario passed: {text}");
        }
        "no-host" => {
            let server = NatsServer::start(TOKEN);
            caller(&server.url, TOKEN);
            let started = Instant::now();
            let error = watchdog(|| double(4).try_run()).expect_err("nobody serves");
            let took = started.elapsed();
            let text = error.to_string();
            assert!(
                matches!(error.kind(), TaskErrorKind::Worker { .. }),
                "{text}"
            );
            assert!(
                text.contains("no worker host took the task")
                    && text.contains("start worker hosts on concurrency.tasks"),
                "{text}"
            );
            assert!(
                took < HEARTBEAT * 2 + Duration::from_secs(2),
                "took {took:?}"
            );
            println!("scenario passed: {text}");
        }
        other => panic!("no scenario {other}"),
    }
}

#[test]
fn a_host_killed_mid_task_fails_it_as_crashed_within_twice_the_heartbeat() {
    let (passed, output) = scenario("host-lost", &[]);
    assert!(passed, "{output}");
    assert!(output.contains("scenario passed"), "{output}");
}

#[test]
fn a_host_of_another_build_is_refused_with_an_error_on_both_sides() {
    let (passed, output) = scenario("build-mismatch", &[]);
    assert!(passed, "{output}");
    assert!(output.contains("scenario passed"), "{output}");
}

#[test]
fn a_caller_or_a_host_with_a_wrong_token_is_refused() {
    let (passed, output) = scenario("caller-bad-token", &[]);
    assert!(passed, "{output}");
    // A host with a wrong token does not start.
    let server = NatsServer::start(TOKEN);
    let exe = std::env::current_exe().expect("the test binary");
    let output = Command::new(exe)
        .args(["--exact", "remote_host_entry", "--ignored", "--nocapture"])
        .env("CONCURRENCY_TEST_HOST_URL", &server.url)
        .env("CONCURRENCY_TEST_HOST_TOKEN", "wrong-token")
        .output()
        .expect("run a host");
    let text = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{text}");
    assert!(text.contains("cannot connect"), "{text}");
}

#[test]
fn a_task_no_host_takes_fails_with_a_hint_within_twice_the_heartbeat() {
    let (passed, output) = scenario("no-host", &[]);
    assert!(passed, "{output}");
    assert!(output.contains("scenario passed"), "{output}");
}

#[test]
fn a_broker_stopped_while_a_task_runs_fails_it_instead_of_hanging() {
    let (passed, output) = scenario("broker-lost", &[]);
    assert!(passed, "{output}");
}

#[test]
fn a_payload_over_the_server_s_message_size_fails_alone_with_the_limit() {
    let (passed, output) = scenario("too-large", &[]);
    assert!(passed, "{output}");
}
