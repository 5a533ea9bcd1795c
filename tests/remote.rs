//! Process tasks on worker hosts through a real `nats-server` (feature `nats`): three
//! worker hosts (copies of this test binary in worker host mode), a caller configured
//! once for the whole binary. Results and placement, a hundred tasks spread over the
//! hosts, a panic, a segfault, a timeout and a cancellation each failing only its task
//! (the host kills the worker), a `limit` that holds across the hosts, and a malformed
//! message failing alone.

mod support;

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use concurrency_runtime::process::remote::NatsConfig;
use concurrency_runtime::process::{self, PoolConfig};
use concurrency_runtime::{TaskErrorKind, cpu_task, io_task, run_concurrently};
use support::nats::{Host, NatsServer};
use support::watchdog;

const TOKEN: &str = "remote-test-token";
const HEARTBEAT: Duration = Duration::from_millis(500);

/// A worker host's entry point: started by the tests below as a copy of this binary.
#[test]
#[ignore = "a worker host's entry point, started by the other tests"]
fn remote_host_entry() {
    support::nats::serve_host(HEARTBEAT, 2, 4);
}

struct Cluster {
    _server: NatsServer,
    hosts: Vec<Host>,
    url: String,
}

/// The server, three hosts, and this binary's caller configured for them.
fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let server = NatsServer::start(TOKEN);
        let env = [
            ("CONCURRENCY_TEST_HOST_URL", server.url.as_str()),
            ("CONCURRENCY_TEST_HOST_TOKEN", TOKEN),
        ];
        let hosts = ["host-a", "host-b", "host-c"]
            .iter()
            .map(|label| Host::start("remote_host_entry", label, &env))
            .collect();
        let config = NatsConfig::new(server.url.clone())
            .token(TOKEN)
            .heartbeat(HEARTBEAT);
        process::configure(PoolConfig::default().nats(config)).expect("configure the caller");
        Cluster {
            url: server.url.clone(),
            _server: server,
            hosts,
        }
    })
}

/// Where the task ran: its pid, its parent's, and its host's label.
#[cpu_task(process)]
fn where_am_i() -> (u32, u32, String) {
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() } as u32;
    let label = std::env::var("CONCURRENCY_TEST_HOST_LABEL").unwrap_or_default();
    (std::process::id(), parent, label)
}

#[cpu_task(process)]
fn slow_square(n: u64) -> (u64, String) {
    // Work that takes a while, so that the hosts share a hundred tasks.
    std::thread::sleep(Duration::from_millis(20));
    let label = std::env::var("CONCURRENCY_TEST_HOST_LABEL").unwrap_or_default();
    (n * n, label)
}

#[cpu_task(process)]
fn remote_panic() -> u64 {
    panic!("a panic on a worker host")
}

#[cpu_task(process)]
fn remote_segfault() -> u64 {
    // A real invalid memory access, not `raise(SIGSEGV)`.
    // SAFETY: not safe at all: this test wants the worker to crash with SIGSEGV.
    unsafe { std::ptr::null_mut::<u64>().write_volatile(1) };
    0
}

#[cpu_task(process, timeout = "400ms")]
fn remote_sleeper(marker: String) -> u64 {
    std::fs::write(&marker, std::process::id().to_string()).expect("write the marker");
    std::thread::sleep(Duration::from_secs(60));
    0
}

/// When it ran (this machine's monotonic clock) and where.
#[cpu_task(process, limit = 3)]
fn limited(ms: u64) -> (u64, u64, String) {
    let start = support::monotonic_ns();
    std::thread::sleep(Duration::from_millis(ms));
    let label = std::env::var("CONCURRENCY_TEST_HOST_LABEL").unwrap_or_default();
    (start, support::monotonic_ns(), label)
}

#[cpu_task(process)]
fn remote_long(marker: String) -> u64 {
    std::fs::write(&marker, std::process::id().to_string()).expect("write the marker");
    std::thread::sleep(Duration::from_secs(60));
    0
}

/// Once the remote task runs (its marker is written), fails the group: a blocking
/// task in this process, so that it never waits behind the remote task on a host's
/// worker.
#[io_task]
fn panic_when(marker: String) -> u64 {
    let started = Instant::now();
    while !std::path::Path::new(&marker).exists() {
        assert!(started.elapsed() < Duration::from_secs(30), "no marker");
        std::thread::yield_now();
    }
    panic!("stop the group")
}

/// Crashes its worker the first time (its marker missing), then returns 7.
#[cpu_task(process, retries = 2, retry_on = [crash])]
fn crash_once(marker: String) -> u32 {
    use std::io::Write;
    let mut runs = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&marker)
        .expect("the marker");
    writeln!(runs, "{}", std::process::id()).expect("log the run");
    drop(runs);
    if std::fs::read_to_string(&marker).map_or(0, |text| text.lines().count()) == 1 {
        std::process::abort();
    }
    7
}

/// Waits (bounded) until process `pid` is gone.
fn wait_gone(pid: i32, what: &str) {
    let started = Instant::now();
    // SAFETY: signal 0 checks that the process exists; it sends nothing.
    while unsafe { libc::kill(pid, 0) } == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the worker {pid} of {what} still runs"
        );
        std::thread::yield_now();
    }
}

#[test]
fn a_task_runs_on_a_worker_host_and_its_result_comes_back() {
    let cluster = cluster();
    let (pid, parent, label) = watchdog(|| where_am_i().run());
    assert_ne!(pid, std::process::id(), "not in the caller");
    let host_pids: Vec<u32> = cluster.hosts.iter().map(|host| host.child.id()).collect();
    assert!(
        host_pids.contains(&parent),
        "a worker of a host ({parent} in {host_pids:?})"
    );
    assert!(
        cluster.hosts.iter().any(|host| host.label == label),
        "label {label:?}"
    );
    assert!(
        process::worker_pids().is_empty(),
        "no local worker was started"
    );
}

#[test]
fn a_hundred_tasks_spread_over_the_three_hosts() {
    let _cluster = cluster();
    let results = watchdog(|| run_concurrently!(for (0..100u64).map(slow_square)));
    let squares: Vec<u64> = results.iter().map(|(square, _)| *square).collect();
    assert_eq!(squares, (0..100u64).map(|n| n * n).collect::<Vec<_>>());
    let labels: BTreeSet<&str> = results.iter().map(|(_, label)| label.as_str()).collect();
    assert_eq!(
        labels,
        ["host-a", "host-b", "host-c"].into(),
        "every host took some"
    );
}

#[test]
fn a_panic_and_a_segfault_on_a_host_fail_only_their_tasks() {
    let _cluster = cluster();
    let (panicked, crashed, fine) =
        watchdog(|| run_concurrently!(all; remote_panic(), remote_segfault(), slow_square(7)));
    let panicked = panicked.expect_err("the panic");
    assert!(
        matches!(panicked.kind(), TaskErrorKind::Panicked { message } if message.contains("a panic on a worker host")),
        "{panicked}"
    );
    let crashed = crashed.expect_err("the crash");
    assert!(
        matches!(
            crashed.kind(),
            TaskErrorKind::Crashed {
                signal: Some(libc::SIGSEGV),
                ..
            }
        ),
        "{crashed}"
    );
    assert_eq!(fine.expect("untouched").0, 49);
}

#[test]
fn a_timeout_reaches_the_host_which_kills_the_worker() {
    let _cluster = cluster();
    let marker = std::env::temp_dir().join(format!("remote-sleeper-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let path = marker.display().to_string();
    let error = watchdog(move || remote_sleeper(path).try_run()).expect_err("times out");
    assert!(error.is_timeout(), "{error}");
    let pid: i32 = std::fs::read_to_string(&marker)
        .expect("the task started")
        .trim()
        .parse()
        .expect("a pid");
    let _ = std::fs::remove_file(&marker);
    // The host kills the worker once the cancellation reaches it.
    wait_gone(pid, "a timed-out task");
}

#[test]
fn a_cancelled_task_s_host_kills_its_worker() {
    let _cluster = cluster();
    let marker = std::env::temp_dir().join(format!("remote-long-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let path = marker.display().to_string();
    let error = watchdog(move || {
        run_concurrently!(try; panic_when(path.clone()), remote_long(path)).map(|_| ())
    })
    .expect_err("the panic fails the group");
    assert!(
        matches!(error.kind(), TaskErrorKind::Panicked { message } if message.contains("stop the group")),
        "{error}"
    );
    let pid: i32 = std::fs::read_to_string(&marker)
        .expect("the long task started")
        .trim()
        .parse()
        .expect("a pid");
    let _ = std::fs::remove_file(&marker);
    wait_gone(pid, "a cancelled task");
}

#[test]
fn retries_keep_their_meaning_a_crash_on_a_host_is_retried_as_a_new_task() {
    let _cluster = cluster();
    let marker = std::env::temp_dir().join(format!("crash-once-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let path = marker.display().to_string();
    assert_eq!(watchdog(move || crash_once(path).run()), 7);
    let runs = std::fs::read_to_string(&marker).expect("the runs");
    let _ = std::fs::remove_file(&marker);
    assert_eq!(runs.lines().count(), 2, "one crash, one retry: {runs}");
}

#[test]
fn a_request_claiming_a_body_over_the_frame_limit_is_refused_before_it_is_fetched() {
    let cluster = cluster();
    // A held request of this build (as a caller would make it) claiming 4 GiB, from a
    // subject nobody serves: the host answers at once and fetches nothing.
    let build = concurrency_runtime::process::remote::build();
    let mut request = b"CRP1".to_vec();
    for text in [build, "crunch"] {
        request.extend_from_slice(&(text.len() as u16).to_le_bytes());
        request.extend_from_slice(text.as_bytes());
    }
    request.extend_from_slice(&(4u64 << 30).to_le_bytes());
    let subject = "nobody.serves.this";
    request.extend_from_slice(&(subject.len() as u16).to_le_bytes());
    request.extend_from_slice(subject.as_bytes());
    let answer = raw_request(&cluster.url, request);
    assert_eq!(&answer[..4], b"CRA1");
    let text = String::from_utf8_lossy(&answer[9..]).into_owned();
    assert_eq!(answer[4], 102, "a failure: {text}");
    assert!(text.contains("exceed the maximum frame size"), "{text}");
}

#[test]
fn a_limit_holds_across_all_the_hosts() {
    let _cluster = cluster();
    let runs = watchdog(|| run_concurrently!(for (0..12).map(|_| limited(150))));
    let intervals: Vec<(u64, u64)> = runs.iter().map(|(start, end, _)| (*start, *end)).collect();
    let hosts: BTreeSet<&str> = runs.iter().map(|(_, _, label)| label.as_str()).collect();
    assert!(hosts.len() >= 2, "spread over the hosts: {hosts:?}");
    let most = support::most_at_once(&intervals);
    assert!(most <= 3, "{most} ran at once under `limit = 3`");
    assert!(most >= 2, "they ran concurrently ({most})");
}

/// Sends `payload` on the task subject with a raw client; the answer.
fn raw_request(url: &str, payload: Vec<u8>) -> Vec<u8> {
    let url = url.to_owned();
    watchdog(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let client = async_nats::ConnectOptions::with_token(TOKEN.to_owned())
                .connect(url.as_str())
                .await
                .expect("connect");
            let reply = tokio::time::timeout(
                Duration::from_secs(20),
                client.request("concurrency.tasks", payload.into()),
            )
            .await
            .expect("an answer in time")
            .expect("an answer");
            reply.payload.to_vec()
        })
    })
}

#[test]
fn a_malformed_message_on_the_task_subject_fails_alone() {
    let cluster = cluster();
    let answer = raw_request(&cluster.url, b"not a request at all".to_vec());
    assert_eq!(&answer[..4], b"CRA1");
    assert_eq!(
        answer[4],
        102,
        "a failure: {:?}",
        String::from_utf8_lossy(&answer)
    );
    // Every host still serves.
    let results = watchdog(|| run_concurrently!(for (0..30u64).map(slow_square)));
    assert_eq!(results.len(), 30);
}
