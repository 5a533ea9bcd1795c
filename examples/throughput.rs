//! Trivial-task throughput, to compare with Python's executors
//! (`concurrency-runtime/benches/python/throughput.py`; `benches/compare-python.sh`
//! runs both).
//!
//! Prints `threads <tasks> <seconds>` (blocking io tasks) and `processes <tasks>
//! <seconds>` (process tasks on a pool of 2 workers, like
//! `ProcessPoolExecutor(max_workers=2)`): the time to start that many trivial tasks
//! and collect every result, on a warm pool.

use std::time::Instant;

use concurrency_runtime::process::{self, PoolConfig};
use concurrency_runtime::{cpu_task, io_task, run_concurrently};

#[io_task]
fn trivial(n: u64) -> u64 {
    n * 2
}

#[cpu_task(process)]
fn trivial_in_process(n: u64) -> u64 {
    n * 2
}

fn main() {
    let tasks: u64 = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(10_000);
    if let Err(error) = process::configure(PoolConfig::default().workers(2)) {
        eprintln!("throughput: {error}");
        std::process::exit(1);
    }

    // Warm the pools (threads, worker processes) before timing, as the Python side does.
    let _ = run_concurrently!(for (0..4).map(trivial));
    let started = Instant::now();
    let results = run_concurrently!(for (0..tasks).map(trivial));
    let elapsed = started.elapsed();
    assert!(results.iter().zip(0..).all(|(r, n)| *r == n * 2));
    println!("threads {tasks} {:.6}", elapsed.as_secs_f64());

    let _ = run_concurrently!(for (0..4).map(trivial_in_process));
    let started = Instant::now();
    let results = run_concurrently!(for (0..tasks).map(trivial_in_process));
    let elapsed = started.elapsed();
    assert!(results.iter().zip(0..).all(|(r, n)| *r == n * 2));
    println!("processes {tasks} {:.6}", elapsed.as_secs_f64());
}
