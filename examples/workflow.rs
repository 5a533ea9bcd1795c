//! A small pipeline that mixes the three kinds of work in one `run_concurrently!`:
//! an async API call, a blocking file read, and CPU-bound checksumming, then a
//! second stage that fans the checksum out over every line of the file.
//! Each task reports where it ran and how long it took.
//!
//! Run: `cargo run --release --example workflow`

use std::time::{Duration, Instant};

use concurrency_runtime::{TaskKind, cpu_task, io_task, run_concurrently};

/// Where a task ran and how long it took.
struct Report {
    task: &'static str,
    thread: String,
    executor: &'static str,
    took: Duration,
}

impl Report {
    fn new(task: &'static str, started: Instant) -> Self {
        let executor = TaskKind::current().map_or("caller", TaskKind::executor);
        let thread = std::thread::current()
            .name()
            .unwrap_or("<unnamed>")
            .to_owned();
        Report {
            task,
            thread,
            executor,
            took: started.elapsed(),
        }
    }
}

/// Async I/O: an API call that waits on the network (simulated with a timer).
#[io_task]
async fn fetch_config(service: String) -> (String, Report) {
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    (
        format!("{service}: batch_size=4096"),
        Report::new("fetch_config", started),
    )
}

/// Blocking I/O: reads a file with std's blocking API.
#[io_task]
fn read_source(path: String) -> (Vec<u8>, Report) {
    let started = Instant::now();
    let bytes = std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"));
    std::thread::sleep(Duration::from_millis(200)); // a slow disk or network share
    (bytes, Report::new("read_source", started))
}

/// CPU-bound: a checksum over a generated buffer.
#[cpu_task]
fn checksum(rounds: u32) -> (u64, Report) {
    let started = Instant::now();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for round in 0..rounds {
        for byte in round.to_le_bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    (hash, Report::new("checksum", started))
}

/// CPU-bound, fanned out: counts the words of one line.
#[cpu_task]
fn count_words(line: String) -> usize {
    line.split_whitespace().count()
}

fn main() {
    let started = Instant::now();
    let ((config, r1), (source, r2), (sum, r3)) = run_concurrently!(
        fetch_config("inventory-api".to_string()),
        // This example's own source, wherever the example is started from.
        read_source(
            concurrency_examples::package_file("workflow.rs")
                .display()
                .to_string()
        ),
        checksum(20_000_000),
    );
    println!(
        "stage 1 (3 tasks, 3 executors) took {:?}",
        started.elapsed()
    );
    for report in [r1, r2, r3] {
        println!(
            "  {:<13} ran on the {:<21} (thread {:<16}) for {:>8.1?}",
            report.task, report.executor, report.thread, report.took
        );
    }
    println!(
        "  config: {config}; source: {} bytes; checksum: {sum:#018x}",
        source.len()
    );

    let stage2 = Instant::now();
    let lines: Vec<String> = String::from_utf8_lossy(&source)
        .lines()
        .map(str::to_owned)
        .collect();
    let counts = run_concurrently!(for lines.into_iter().map(count_words));
    println!(
        "stage 2 ({} cpu tasks) took {:?}: {} words",
        counts.len(),
        stage2.elapsed(),
        counts.iter().sum::<usize>()
    );
}
