//! A recorded run (the runtime's `tracing` feature): a mixed workflow with a retry, a
//! timeout, a crash and a poll that blocks its thread, written as a Chrome trace file
//! and an HTML report.
//!
//! `cargo run --release -p concurrency-examples --features tracing --example trace
//! [-- DIR]` writes `DIR/trace.json` (open it in <https://ui.perfetto.dev> or
//! `chrome://tracing`) and `DIR/report.html` (any browser; no network needed);
//! `DIR` defaults to `target/trace`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use concurrency_runtime::observe::Recording;
use concurrency_runtime::{cpu_task, io_task, run_concurrently};

/// An HTTP-like fetch: waits on a timer.
#[io_task]
async fn fetch(id: u64, delay_ms: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    id
}

/// A mistake on purpose: `std::thread::sleep` in an async task blocks its executor
/// thread (the report lists it; it belongs in an `#[io_task] fn`).
#[io_task]
async fn parse_slowly(id: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(25));
    id
}

/// Blocking file I/O: reads this example's source.
#[io_task]
fn read_source(pause_ms: u64) -> usize {
    std::thread::sleep(Duration::from_millis(pause_ms));
    std::fs::read(concurrency_examples::package_file("trace.rs")).map_or(0, |bytes| bytes.len())
}

static ATTEMPTS: AtomicU32 = AtomicU32::new(0);

/// Fails its first attempt: retried after a backoff.
#[io_task(retries = 2, backoff = "20ms")]
fn flaky_upload(bytes: usize) -> Result<usize, String> {
    std::thread::sleep(Duration::from_millis(10));
    if ATTEMPTS.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err("connection reset".to_owned());
    }
    Ok(bytes)
}

/// Never answers in time: its deadline passes.
#[io_task(timeout = "60ms")]
async fn slow_service() -> u64 {
    tokio::time::sleep(Duration::from_secs(10)).await;
    0
}

/// CPU work on rayon.
#[cpu_task]
fn crunch(n: u64) -> u64 {
    (0..n * 400_000).fold(0u64, |sum, i| sum.wrapping_add(i ^ (sum >> 3)))
}

/// CPU work in a worker process; `n == 3` crashes it (a real abort).
#[cpu_task(process)]
fn risky(n: u64) -> u64 {
    if n == 3 {
        std::process::abort();
    }
    (0..n * 300_000).fold(n, |sum, i| sum.wrapping_mul(31).wrapping_add(i))
}

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).map_or_else(
        || concurrency_examples::package_file("../target/trace"),
        Into::into,
    );
    std::fs::create_dir_all(&dir)?;
    let dir = std::fs::canonicalize(dir)?;

    let recording = Recording::start();
    // One group of every placement, a blocking mistake among them.
    let (first, parsed, size, crunched, risky_ok) = run_concurrently!(
        fetch(0, 40),
        parse_slowly(1),
        read_source(5),
        crunch(4),
        risky(2)
    );
    // Collections: async fetches, cpu work, process tasks.
    let fetched = run_concurrently!(for (1..7).map(|id| fetch(id, 10 + id * 7)));
    let crunched_more = run_concurrently!(for (1..5).map(crunch));
    let batch = run_concurrently!(for (4..8).map(risky));
    // Failures, each its own: a retry that succeeds, a timeout, a crash.
    let (upload, slow, crashed) =
        run_concurrently!(all; flaky_upload(size), slow_service(), risky(3));
    let timeline = recording.finish();

    println!("fetched {first} and {fetched:?}, parsed {parsed}, read {size} bytes");
    println!("crunched {crunched} and {crunched_more:?}; risky: {risky_ok} and {batch:?}");
    println!("upload: {upload:?}");
    println!(
        "slow service: {}",
        slow.map_or_else(|error| error.to_string(), |v| v.to_string())
    );
    println!(
        "risky(3): {}",
        crashed.map_or_else(|error| error.to_string(), |v| v.to_string())
    );
    let trace = dir.join("trace.json");
    let report = dir.join("report.html");
    timeline.write_chrome_trace(&trace)?;
    timeline.write_html_report(&report)?;
    println!();
    println!(
        "{:<14} {:<22} {:>5} {:>8} {:>8} {:>10} {:>10}",
        "function", "placement", "calls", "attempts", "failures", "wait p50", "run p50"
    );
    for function in timeline.functions() {
        println!(
            "{:<14} {:<22} {:>5} {:>8} {:>8} {:>10.2?} {:>10.2?}",
            function.task,
            function.placement.executor(),
            function.calls,
            function.attempts,
            function.failures,
            function.wait_p50,
            function.run_p50
        );
    }
    println!();
    println!(
        "wrote {} (open in https://ui.perfetto.dev or chrome://tracing)",
        trace.display()
    );
    println!("wrote {}", report.display());
    Ok(())
}
