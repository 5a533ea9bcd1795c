//! Port of the article's multiprocessing program (`seed_multiprocessing.py`): three
//! CPU-bound tasks, each in a worker process, each summing i*i below 10^7.
//!
//! Run: `cargo run --release --example seed_multiprocessing`

use std::hint::black_box;
use std::time::Instant;

use concurrency_runtime::{cpu_task, run_concurrently};

#[cpu_task(process)]
fn cpu_bound_task(n: u32) -> u64 {
    println!("Starting CPU-bound task {n}...");
    // `black_box` on each element keeps LLVM from folding the loop into a formula.
    let result = (0..10u64.pow(7)).map(|i| black_box(i) * black_box(i)).sum();
    println!("Finished CPU-bound task {n}.");
    result
}

fn main() {
    let start_time = Instant::now();
    run_concurrently!(for (0..3).map(cpu_bound_task));
    println!(
        "Total multiprocessing time: {:.2}s",
        start_time.elapsed().as_secs_f64()
    );
}
