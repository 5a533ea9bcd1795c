//! Process tasks on a worker host through NATS against raw NATS request/reply, in the
//! same run, the two sides alternating (the runtime's `nats` feature).
//!
//! `cargo run --release -p concurrency-examples --features nats --example remote_perf`
//! starts a `nats-server` on a free loopback port (`sudo apt-get install
//! nats-server`), and one worker host (a copy of this program) which also runs the
//! raw side's responder (a plain subscriber that answers each request with its
//! payload). Rows: one tiny task at a time against one `Client::request` at a time;
//! 1,000 tasks in flight against 1,000 concurrent `Client::request`s; 64 KiB and
//! 900 KiB arguments and results, as a `Vec<u8>` and as a `serde_bytes::ByteBuf`,
//! against the same payloads raw. `ROUNDS=n` (default 5).
//! `REMOTE_PERF_QUEUE=1` times at-least-once delivery instead, against raw
//! JetStream: a work-queue stream, a pull consumer on the host that answers each
//! message on the reply subject in its header and acknowledges it, and a caller that
//! publishes with the server's acknowledgements pipelined. `REMOTE_PERF_CAPACITY=n`
//! sets the host's capacity. `REMOTE_PERF_LOCAL=1` times the same tasks on the local
//! pool instead.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use concurrency_runtime::process::remote::{self, Delivery, NatsConfig};
use concurrency_runtime::process::{self, PoolConfig};
use concurrency_runtime::{cpu_task, run_concurrently};
use futures_util::StreamExt;

#[path = "support/rounds.rs"]
mod rounds;
use rounds::{Table, alternate, median};

/// The raw side's subject.
const RAW: &str = "bench.raw";
/// The raw side's queue: a stream on this subject, its consumer, the reply header.
const RAW_QUEUE: &str = "bench.rawq";
const RAW_REPLY: &str = "Bench-Reply";

/// The raw side's work-queue stream (made if missing).
async fn raw_stream(context: &jetstream::Context) -> jetstream::stream::Stream {
    context
        .get_or_create_stream(jetstream::stream::Config {
            name: "bench_raw".into(),
            subjects: vec![RAW_QUEUE.into()],
            retention: jetstream::stream::RetentionPolicy::WorkQueue,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("the raw stream")
}

/// The raw queue's worker: answers each message on its reply header, then acks it.
async fn raw_queue_worker(client: async_nats::Client) {
    let context = jetstream::new(client.clone());
    let consumer = raw_stream(&context)
        .await
        .get_or_create_consumer(
            "bench_raw_worker",
            jetstream::consumer::pull::Config {
                durable_name: Some("bench_raw_worker".into()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .expect("the raw consumer");
    let mut messages = consumer.messages().await.expect("the raw messages");
    while let Some(Ok(message)) = messages.next().await {
        let reply = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(RAW_REPLY))
            .map(|reply| reply.as_str().to_owned());
        if let Some(reply) = reply {
            let _ = client.publish(reply, message.payload.clone()).await;
        }
        let _ = message.ack().await;
    }
}

/// The raw queue's caller: publishes `count` messages of `payload` (the server's
/// acknowledgements awaited apart) and waits for every answer on `replies`.
async fn raw_queue_round(
    context: &jetstream::Context,
    replies: &mut async_nats::Subscriber,
    inbox: &str,
    count: usize,
    payload: &[u8],
) {
    let mut acks = Vec::with_capacity(count);
    for n in 0..count {
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload.to_vec().into())
            .header(RAW_REPLY, format!("{inbox}.{n}").as_str());
        let ack = context
            .send_publish(RAW_QUEUE, publish)
            .await
            .expect("publish");
        acks.push(std::future::IntoFuture::into_future(ack));
    }
    let stored = futures_util::future::join_all(acks);
    let answered = async {
        for _ in 0..count {
            replies.next().await.expect("an answer");
        }
    };
    let (stored, ()) = futures_util::join!(stored, answered);
    assert!(stored.iter().all(Result::is_ok), "stored");
}

/// The smallest task: 16 bytes there, 16 back.
#[cpu_task(process)]
fn echo(bytes: Vec<u8>) -> Vec<u8> {
    bytes
}

/// The same with a byte buffer: serde sees one byte string, not a sequence of u8.
#[cpu_task(process)]
fn echo_buf(bytes: serde_bytes::ByteBuf) -> serde_bytes::ByteBuf {
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

/// Runs `serve` with a client of its own, on a thread of its own (the raw side's
/// responders, in the worker host's process).
fn on_own_thread<F, S>(url: String, serve: S)
where
    S: FnOnce(async_nats::Client) -> F + Send + 'static,
    F: std::future::Future<Output = ()>,
{
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let client = async_nats::connect(url.as_str()).await.expect("connect");
            serve(client).await;
        });
    });
}

/// The worker host: the raw responders, and `serve`.
fn host(url: String) {
    on_own_thread(url.clone(), |client| async move {
        let mut requests = client.subscribe(RAW).await.expect("subscribe");
        while let Some(request) = requests.next().await {
            if let Some(reply) = request.reply {
                let _ = client.publish(reply, request.payload).await;
            }
        }
    });
    if std::env::var_os("REMOTE_PERF_QUEUE").is_some() {
        on_own_thread(url.clone(), raw_queue_worker);
    }
    process::configure(PoolConfig::default().workers(2)).expect("the host's pool");
    // `REMOTE_PERF_CAPACITY=n`: the host's capacity (default: the library's).
    let mut config = NatsConfig::new(url).label("bench-host");
    if let Some(capacity) = std::env::var("REMOTE_PERF_CAPACITY")
        .ok()
        .and_then(|capacity| capacity.parse().ok())
    {
        config = config.capacity(capacity);
    }
    remote::serve(config).expect("serve");
}

/// `REMOTE_PERF_LOCAL=1`: the same tasks on the local pool, for comparison.
fn local() {
    process::configure(PoolConfig::default().workers(2)).expect("configure");
    let _ = run_concurrently!(for (0..50).map(|_| echo(vec![0; 16])));
    for (row, size, buffer) in [
        ("16 bytes", 16, false),
        ("64 KiB Vec<u8>", 64 << 10, false),
        ("900 KiB Vec<u8>", 900 << 10, false),
        ("64 KiB ByteBuf", 64 << 10, true),
        ("900 KiB ByteBuf", 900 << 10, true),
    ] {
        let mut times = Vec::new();
        for _ in 0..50 {
            let started = Instant::now();
            echo_size(size, buffer);
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
    let store = std::env::temp_dir().join(format!("remote-perf-{}", std::process::id()));
    let mut server = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(&store)
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
    let queue = std::env::var_os("REMOTE_PERF_QUEUE").is_some();
    let delivery = if queue {
        Delivery::AtLeastOnce
    } else {
        Delivery::AtMostOnce
    };
    process::configure(PoolConfig::default().nats(NatsConfig::new(url.clone()).delivery(delivery)))
        .expect("configure");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = runtime
        .block_on(async_nats::connect(url.as_str()))
        .expect("connect the raw client");
    if queue {
        at_least_once(&runtime, client);
    } else {
        at_most_once(&runtime, client);
    }
    let _ = host.kill();
    let _ = host.wait();
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&store);
}

/// The library's side of the payload rows: `size` bytes there and back, as a
/// `ByteBuf` or a `Vec<u8>`.
fn echo_size(size: usize, buffer: bool) {
    let length = if buffer {
        echo_buf(serde_bytes::ByteBuf::from(vec![3; size]))
            .run()
            .len()
    } else {
        echo(vec![3; size]).run().len()
    };
    assert_eq!(length, size);
}

/// The library's side of the 1,000-in-flight rows.
fn thousand_tiny() {
    let results = run_concurrently!(for (0..1000).map(|_| echo(vec![2; 16])));
    assert_eq!(results.len(), 1000);
}

/// At-least-once delivery against raw JetStream.
fn at_least_once(runtime: &tokio::runtime::Runtime, client: async_nats::Client) {
    let _inside = runtime.enter();
    let context = jetstream::new(client.clone());
    let inbox = client.new_inbox();
    let mut replies = runtime
        .block_on(async {
            raw_stream(&context).await;
            client.subscribe(format!("{inbox}.*")).await
        })
        .expect("the raw replies");
    let mut raw = |count: usize, payload: &[u8]| {
        runtime.block_on(raw_queue_round(
            &context,
            &mut replies,
            &inbox,
            count,
            payload,
        ));
    };
    // Warm both up.
    let _ = run_concurrently!(for (0..50).map(|_| echo(vec![0; 16])));
    raw(50, &[0; 16]);
    let rounds = rounds::rounds(5);
    let mut table = Table::default();
    for round in 1..=rounds {
        eprint!("round {round}/{rounds}\r");
        let ratio = alternate(
            200,
            Duration::ZERO,
            || assert_eq!(echo(vec![1; 16]).run().len(), 16),
            || raw(1, &[1; 16]),
        );
        table.record(
            "at least once: one tiny task at a time (latency)",
            "one JetStream message",
            ratio,
        );
        let ratio = alternate(5, Duration::ZERO, thousand_tiny, || raw(1000, &[2; 16]));
        table.record(
            "at least once: 1,000 tiny tasks in flight (whole batch)",
            "1,000 JetStream messages",
            ratio,
        );
    }
    table.print(rounds);
}

/// At-most-once delivery against raw core request/reply.
fn at_most_once(runtime: &tokio::runtime::Runtime, client: async_nats::Client) {
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
    let raw_batch = |count: usize| {
        let results = runtime.block_on(futures_util::future::join_all(
            (0..count).map(|_| raw(vec![2; 16])),
        ));
        assert_eq!(results.len(), count);
    };
    // Warm both up (the host's workers start on the first task).
    let _ = run_concurrently!(for (0..50).map(|_| echo(vec![0; 16])));
    raw_batch(50);
    let rounds = rounds::rounds(5);
    let mut table = Table::default();
    for round in 1..=rounds {
        eprint!("round {round}/{rounds}\r");
        let ratio = alternate(
            200,
            Duration::ZERO,
            || assert_eq!(echo(vec![1; 16]).run().len(), 16),
            || assert_eq!(runtime.block_on(raw(vec![1; 16])), 16),
        );
        table.record(
            "one tiny task at a time (latency)",
            "Client::request",
            ratio,
        );
        let ratio = alternate(5, Duration::ZERO, thousand_tiny, || raw_batch(1000));
        table.record(
            "1,000 tiny tasks in flight (whole batch)",
            "1,000 Client::request",
            ratio,
        );
        for (row, size, buffer) in [
            ("a 64 KiB Vec<u8> argument and result", 64 << 10, false),
            ("a 900 KiB Vec<u8> argument and result", 900 << 10, false),
            ("a 64 KiB ByteBuf argument and result", 64 << 10, true),
            ("a 900 KiB ByteBuf argument and result", 900 << 10, true),
        ] {
            let ratio = alternate(
                20,
                Duration::ZERO,
                || echo_size(size, buffer),
                || assert_eq!(runtime.block_on(raw(vec![3; size])), size),
            );
            table.record(row, "Client::request", ratio);
        }
    }
    table.print(rounds);
}
