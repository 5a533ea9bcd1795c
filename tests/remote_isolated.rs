//! Worker-host failures that need a caller of their own (feature `nats`): each
//! scenario runs in a copy of this test binary (a caller is configured once per
//! process), against its own real `nats-server` and hosts: a host killed mid-task, a
//! host of another build, wrong credentials on either side, the broker stopped while
//! a task runs, payloads over the server's maximum message size (sent in parts) and
//! over the frame limit, a host's capacity, and the at-least-once queue: a host
//! killed mid-task (the task runs again elsewhere, one result) and the broker
//! restarted while tasks wait in it.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use concurrency_runtime::process::remote::{Delivery, NatsConfig};
use concurrency_runtime::process::{self, PoolConfig};
use concurrency_runtime::{TaskErrorKind, cpu_task, run_concurrently};
use futures_util::StreamExt;
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

#[cpu_task(process)]
fn reversed(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.reverse();
    bytes
}

/// When it ran, on this machine's monotonic clock.
#[cpu_task(process)]
fn timed(ms: u64) -> (u64, u64) {
    let start = support::monotonic_ns();
    std::thread::sleep(Duration::from_millis(ms));
    (start, support::monotonic_ns())
}

/// The first run writes its pid to `marker` and waits to be killed; a run that finds
/// the marker returns at once. Every run adds a line to `marker.runs`.
#[cpu_task(process)]
fn once_stuck(marker: String) -> String {
    use std::io::Write;
    let runs = format!("{marker}.runs");
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&runs)
        .expect("the runs file");
    writeln!(log, "{}", std::process::id()).expect("log the run");
    if std::path::Path::new(&marker).exists() {
        return "second run".to_owned();
    }
    std::fs::write(&marker, std::process::id().to_string()).expect("write the marker");
    std::thread::sleep(Duration::from_secs(60));
    "first run".to_owned()
}

fn caller(url: &str, token: &str) {
    caller_with(NatsConfig::new(url).token(token));
}

fn caller_with(config: NatsConfig) {
    let config = config.heartbeat(HEARTBEAT);
    process::configure(PoolConfig::default().max_frame_bytes(16 << 20).nats(config))
        .expect("configure the caller");
}

/// The process group a process belongs to.
fn group_of(pid: i32) -> i32 {
    // SAFETY: getpgid has no memory preconditions; it fails (-1) for a pid that is gone.
    unsafe { libc::getpgid(pid) }
}

/// Waits (bounded) until `check` holds.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} never came"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Listens on `subject` with a connection of its own (the hosts' heartbeats to
/// callers, their answers): a test that kills a host mid-task waits until its caller
/// has heard of the host; the capacity test counts refusals.
struct Listener {
    runtime: tokio::runtime::Runtime,
    messages: async_nats::Subscriber,
}

impl Listener {
    /// Subscribes before the task starts, so that no message goes unseen.
    fn on(url: &str, subject: &'static str) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let messages = runtime.block_on(async {
            let client = async_nats::ConnectOptions::with_token(TOKEN.to_owned())
                .connect(url)
                .await
                .expect("connect");
            let messages = client.subscribe(subject).await.expect("subscribe");
            client.flush().await.expect("flush");
            messages
        });
        Listener { runtime, messages }
    }

    /// The next message's payload (bounded wait).
    fn next(&mut self) -> Vec<u8> {
        let message = self.runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), self.messages.next()).await
        });
        match message {
            Ok(Some(message)) => message.payload.to_vec(),
            _ => panic!("no message came"),
        }
    }
}

/// How many messages the at-least-once queue holds (asked with a client of its own).
fn queued(url: &str) -> u64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let Ok(client) = async_nats::ConnectOptions::with_token(TOKEN.to_owned())
            .connect(url)
            .await
        else {
            return 0;
        };
        let context = async_nats::jetstream::new(client);
        match context.get_stream("concurrency_tasks").await {
            Ok(mut stream) => stream.info().await.map_or(0, |info| info.state.messages),
            Err(_) => 0,
        }
    })
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
            let (server, mut host) = setup("doomed", &[]);
            let mut beats = Listener::on(&server.url, "_INBOX.*.beat");
            let marker = support::nats::TempDir::new("host-lost");
            let file = marker.0.join("pid");
            let path = file.display().to_string();
            let running = std::thread::spawn(move || pid_then_sleep(path).try_run());
            wait_for_file(&file);
            let _ = beats.next();
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
        "large" => {
            let (_server, _host) = setup("large", &[]);
            // 10 MiB there and back: ten times the server's 1 MiB messages.
            let bytes: Vec<u8> = (0..10u32 << 20).map(|i| (i % 251) as u8).collect();
            let mut expected = bytes.clone();
            expected.reverse();
            let back = watchdog(move || reversed(bytes).run());
            assert!(back == expected, "the bytes came back reversed");
            // Over the frame limit (16 MiB here): the local pool's error.
            let error =
                watchdog(|| byte_count(vec![7u8; 20 << 20]).try_run()).expect_err("too large");
            let text = error.to_string();
            assert!(
                matches!(error.kind(), TaskErrorKind::Worker { .. })
                    && text.contains("exceeds the maximum frame size of 16777216 bytes"),
                "{text}"
            );
            assert_eq!(watchdog(|| byte_count(vec![1u8; 1000]).run()), 1000);
            println!("scenario passed: {text}");
        }
        "capacity" | "queue-capacity" => {
            // A host with two workers that may hold one task: two tasks run one
            // after the other, the second refused (or left in the queue) meanwhile.
            let server = NatsServer::start(TOKEN);
            let env = [
                ("CONCURRENCY_TEST_HOST_URL", server.url.as_str()),
                ("CONCURRENCY_TEST_HOST_TOKEN", TOKEN),
                ("CONCURRENCY_TEST_HOST_WORKERS", "2"),
                ("CONCURRENCY_TEST_HOST_CAPACITY", "1"),
            ];
            let _host = Host::start("remote_host_entry", "narrow", &env);
            let delivery = if name == "capacity" {
                Delivery::AtMostOnce
            } else {
                Delivery::AtLeastOnce
            };
            caller_with(NatsConfig::new(&server.url).token(TOKEN).delivery(delivery));
            let (first, second) = watchdog(|| run_concurrently!(timed(300), timed(300)));
            let most = support::most_at_once(&[first, second]);
            assert_eq!(
                most, 1,
                "a host of capacity 1 ran {first:?} and {second:?} at once"
            );
            if name == "capacity" {
                // The host is known now, with its capacity: the next burst waits at the
                // caller, and the host refuses nothing.
                let mut answers = Listener::on(&server.url, "_INBOX.*.*");
                let (third, fourth) = watchdog(|| run_concurrently!(timed(100), timed(100)));
                assert_eq!(support::most_at_once(&[third, fourth]), 1);
                let (mut answered, mut refused) = (0, 0);
                while answered < 2 {
                    let answer = answers.next();
                    if answer.starts_with(b"CRA1") {
                        match answer[4] {
                            103 => refused += 1,
                            _ => answered += 1,
                        }
                    }
                }
                assert_eq!(refused, 0, "the host refused {refused} of the second burst");
            }
            println!("scenario passed: {first:?} then {second:?}");
        }
        "queue-host-lost" | "queue-gives-up" => {
            // Given up: a consumer that delivers a task once.
            let deliveries = if name == "queue-gives-up" { "1" } else { "5" };
            let server = NatsServer::start(TOKEN);
            let env = [
                ("CONCURRENCY_TEST_HOST_URL", server.url.as_str()),
                ("CONCURRENCY_TEST_HOST_TOKEN", TOKEN),
                ("CONCURRENCY_TEST_HOST_MAX_DELIVERIES", deliveries),
            ];
            let mut hosts = [
                Host::start("remote_host_entry", "first", &env),
                Host::start("remote_host_entry", "second", &env),
            ];
            caller_with(
                NatsConfig::new(&server.url)
                    .token(TOKEN)
                    .delivery(Delivery::AtLeastOnce),
            );
            let mut beats = Listener::on(&server.url, "_INBOX.*.beat");
            let marker = support::nats::TempDir::new("queue-host-lost");
            let file = marker.0.join("pid");
            let path = file.display().to_string();
            let running = std::thread::spawn(move || once_stuck(path).try_run());
            wait_for_file(&file);
            let _ = beats.next();
            let worker: i32 = std::fs::read_to_string(&file)
                .expect("the marker")
                .trim()
                .parse()
                .expect("a pid");
            // Kill the host whose worker runs it (the worker is in its group).
            let group = group_of(worker);
            let index = hosts
                .iter()
                .position(|host| host.child.id() as i32 == group)
                .expect("the task runs on one of the hosts");
            let killed = Instant::now();
            hosts[index].kill();
            let result = watchdog(move || running.join().expect("the caller thread"));
            if name == "queue-gives-up" {
                let error = result.expect_err("not delivered again");
                assert!(
                    matches!(error.kind(), TaskErrorKind::Crashed { pid, .. } if *pid as i32 == group),
                    "{error}"
                );
                let took = killed.elapsed();
                assert!(took < Duration::from_secs(20), "took {took:?}");
                wait_until("an empty queue", || queued(&server.url) == 0);
                println!("scenario passed: {error} after {took:?}");
                return;
            }
            assert_eq!(result.expect("delivered again"), "second run");
            let runs =
                std::fs::read_to_string(format!("{}.runs", file.display())).expect("the runs file");
            assert_eq!(runs.lines().count(), 2, "ran twice: {runs}");
            // Nothing is left in the queue.
            wait_until("an empty queue", || queued(&server.url) == 0);
            println!("scenario passed: redelivered after the host was killed");
        }
        "queue-broker-restart" => {
            let mut server = NatsServer::start(TOKEN);
            caller_with(
                NatsConfig::new(&server.url)
                    .token(TOKEN)
                    .delivery(Delivery::AtLeastOnce),
            );
            // No host yet: the tasks wait in the queue.
            let waiting = std::thread::spawn(|| run_concurrently!(double(1), double(2), double(3)));
            let url = server.url.clone();
            wait_until("three queued tasks", || queued(&url) == 3);
            server.restart();
            let env = [
                ("CONCURRENCY_TEST_HOST_URL", server.url.as_str()),
                ("CONCURRENCY_TEST_HOST_TOKEN", TOKEN),
            ];
            let _host = Host::start("remote_host_entry", "after-restart", &env);
            let results = watchdog(move || waiting.join().expect("the caller thread"));
            assert_eq!(results, (2, 4, 6));
            println!("scenario passed: the queued tasks ran after the restart");
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
fn a_payload_over_the_server_s_message_size_goes_in_parts_and_one_over_the_frame_limit_fails() {
    let (passed, output) = scenario("large", &[]);
    assert!(passed, "{output}");
    assert!(output.contains("scenario passed"), "{output}");
}

#[test]
fn a_host_holds_no_more_tasks_than_its_capacity() {
    for name in ["capacity", "queue-capacity"] {
        let (passed, output) = scenario(name, &[]);
        assert!(passed, "{name}: {output}");
        assert!(output.contains("scenario passed"), "{name}: {output}");
    }
}

#[test]
fn at_least_once_a_task_whose_host_is_killed_runs_again_elsewhere_with_one_result() {
    let (passed, output) = scenario("queue-host-lost", &[]);
    assert!(passed, "{output}");
    assert!(output.contains("scenario passed"), "{output}");
}

#[test]
fn at_least_once_a_task_delivered_max_deliveries_times_fails_as_crashed() {
    let (passed, output) = scenario("queue-gives-up", &[]);
    assert!(passed, "{output}");
    assert!(output.contains("scenario passed"), "{output}");
}

#[test]
fn at_least_once_tasks_queued_when_the_broker_restarts_run_after_it() {
    let (passed, output) = scenario("queue-broker-restart", &[]);
    assert!(passed, "{output}");
    assert!(output.contains("scenario passed"), "{output}");
}
