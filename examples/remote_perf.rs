//! Process tasks on a worker host through NATS against raw NATS request/reply, in the
//! same run, the two sides alternating (the runtime's `nats` feature).
//!
//! `cargo run --release -p concurrency-examples --features nats --example remote_perf`
//! starts a `nats-server` on a free loopback port (`sudo apt-get install
//! nats-server`), and one worker host (a copy of this program) which also runs the
//! raw side's responder (a plain subscriber that answers each request with its
//! payload). Rows: one tiny task at a time against one `Client::request` at a time;
//! 1,000 tasks in flight against 1,000 concurrent `Client::request`s; a 64 KiB and a
//! 900 KiB argument against the same payloads raw. `ROUNDS=n` (default 5).
//! `REMOTE_PERF_LOCAL=1` times the same tasks on the local pool instead.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use concurrency_runtime::process::remote::{self, NatsConfig};
use concurrency_runtime::process::{self, PoolConfig};
use concurrency_runtime::{cpu_task, run_concurrently};
use futures_util::StreamExt;

#[path = "support/rounds.rs"]
mod rounds;
use rounds::{Ratio, Table, median};

/// The raw side's subject.
const RAW: &str = "bench.raw";

/// The smallest task: 16 bytes there, 16 back.
#[cpu_task(process)]
fn echo(bytes: Vec<u8>) -> Vec<u8> {
    bytes
}

/// Waits until `child` says `ready` on stderr; keeps draining it.
fn wait_ready(child: &mut Child, ready: &'static str) {
    let stderr = child.stderr.take().expect("piped stderr");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && line.contains(ready) {
                sent = true;
                let _ = sender.send(());
            }
        }
    });
    receiver
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("{ready:?} did not come"));
}

/// The worker host: the raw responder, and `serve`.
fn host(url: String) {
    let responder_url = url.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let client = async_nats::connect(responder_url.as_str())
                .await
                .expect("connect");
            let mut requests = client.subscribe(RAW).await.expect("subscribe");
            while let Some(request) = requests.next().await {
                if let Some(reply) = request.reply {
                    let _ = client.publish(reply, request.payload).await;
                }
            }
        });
    });
    process::configure(PoolConfig::default().workers(2)).expect("the host's pool");
    remote::serve(NatsConfig::new(url).label("bench-host")).expect("serve");
}

/// `REMOTE_PERF_LOCAL=1`: the same tasks on the local pool, for comparison.
fn local() {
    process::configure(PoolConfig::default().workers(2)).expect("configure");
    let _ = run_concurrently!(for (0..50).map(|_| echo(vec![0; 16])));
    for (row, size) in [
        ("16 bytes", 16),
        ("64 KiB", 64 << 10),
        ("900 KiB", 900 << 10),
    ] {
        let mut times = Vec::new();
        for _ in 0..50 {
            let started = Instant::now();
            assert_eq!(echo(vec![3; size]).run().len(), size);
            times.push(started.elapsed());
        }
        println!(
            "local pool, one {row} task at a time: {:.1?}",
            median(times)
        );
    }
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let results = run_concurrently!(for (0..1000).map(|_| echo(vec![2; 16])));
        assert_eq!(results.len(), 1000);
        times.push(started.elapsed());
    }
    println!(
        "local pool, 1,000 tiny tasks in flight: {:.1?}",
        median(times)
    );
}

fn main() {
    if let Ok(url) = std::env::var("REMOTE_PERF_HOST") {
        return host(url);
    }
    if std::env::var_os("REMOTE_PERF_LOCAL").is_some() {
        return local();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let mut server = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nats-server (sudo apt-get install nats-server)");
    wait_ready(&mut server, "Server is ready");
    let mut host = Command::new(std::env::current_exe().expect("this program"))
        .env("REMOTE_PERF_HOST", &url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the worker host");
    wait_ready(&mut host, "serves");
    process::configure(PoolConfig::default().nats(NatsConfig::new(url.clone())))
        .expect("configure");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = runtime
        .block_on(async_nats::connect(url.as_str()))
        .expect("connect the raw client");
    let raw = |payload: Vec<u8>| {
        let client = client.clone();
        async move {
            client
                .request(RAW, payload.into())
                .await
                .expect("raw reply")
                .payload
                .len()
        }
    };
    // Warm both up (the host's workers start on the first task).
    let _ = run_concurrently!(for (0..50).map(|_| echo(vec![0; 16])));
    runtime.block_on(async {
        futures_util::future::join_all((0..50).map(|_| raw(vec![0; 16]))).await
    });

    let rounds = rounds::rounds(5);
    let mut table = Table::default();
    for round in 1..=rounds {
        eprint!("round {round}/{rounds}\r");
        // One at a time.
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..200 {
            let started = Instant::now();
            assert_eq!(echo(vec![1; 16]).run().len(), 16);
            ours.push(started.elapsed());
            let started = Instant::now();
            assert_eq!(runtime.block_on(raw(vec![1; 16])), 16);
            theirs.push(started.elapsed());
        }
        table.record(
            "one tiny task at a time (latency)",
            "Client::request",
            Ratio {
                ours: median(ours),
                theirs: median(theirs),
            },
        );
        // 1,000 in flight.
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let started = Instant::now();
            let results = run_concurrently!(for (0..1000).map(|_| echo(vec![2; 16])));
            assert_eq!(results.len(), 1000);
            ours.push(started.elapsed());
            let started = Instant::now();
            let results = runtime.block_on(futures_util::future::join_all(
                (0..1000).map(|_| raw(vec![2; 16])),
            ));
            assert_eq!(results.len(), 1000);
            theirs.push(started.elapsed());
        }
        table.record(
            "1,000 tiny tasks in flight (whole batch)",
            "1,000 Client::request",
            Ratio {
                ours: median(ours),
                theirs: median(theirs),
            },
        );
        for (row, size) in [
            ("a 64 KiB argument and result", 64 << 10),
            ("a 900 KiB argument and result", 900 << 10),
        ] {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            for _ in 0..20 {
                let started = Instant::now();
                assert_eq!(echo(vec![3; size]).run().len(), size);
                ours.push(started.elapsed());
                let started = Instant::now();
                assert_eq!(runtime.block_on(raw(vec![3; size])), size);
                theirs.push(started.elapsed());
            }
            table.record(
                row,
                "Client::request",
                Ratio {
                    ours: median(ours),
                    theirs: median(theirs),
                },
            );
        }
    }
    table.print(rounds);
    let _ = host.kill();
    let _ = host.wait();
    let _ = server.kill();
    let _ = server.wait();
}
