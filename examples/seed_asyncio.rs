//! Port of the article's asyncio program (`seed_asyncio.py`): three fetches that
//! wait 2, 1 and 3 seconds run concurrently, so the whole takes about 3 s.
//!
//! Run: `cargo run --release --example seed_asyncio`

use std::time::{Duration, Instant};

use concurrency_runtime::{io_task, run_concurrently};

#[io_task]
async fn fetch_data(delay: u64) -> String {
    println!("Starting fetch for {delay}s...");
    tokio::time::sleep(Duration::from_secs(delay)).await; // Simulate I/O operation
    println!("Finished fetch for {delay}s.");
    format!("Data after {delay}s")
}

#[tokio::main]
async fn main() {
    let start_time = Instant::now();
    let (a, b, c) = run_concurrently!(async; fetch_data(2), fetch_data(1), fetch_data(3)).await;
    println!("All data fetched: ['{a}', '{b}', '{c}']");
    println!(
        "Total async time: {:.2}s",
        start_time.elapsed().as_secs_f64()
    );
}
