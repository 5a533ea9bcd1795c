//! Port of the article's threading program (`seed_threading.py`): three blocking
//! 2-second downloads run side by side on blocking threads, so the whole takes
//! about 2 s.
//!
//! Run: `cargo run --release --example seed_threading`

use std::time::{Duration, Instant};

use concurrency_runtime::{io_task, run_concurrently};

#[io_task]
fn download_file(url: String) {
    println!("Downloading {url}...");
    std::thread::sleep(Duration::from_secs(2)); // Simulate network I/O
    println!("Finished downloading {url}.");
}

fn main() {
    let start_time = Instant::now();
    let urls = vec![
        "http://example.com/file1".to_string(),
        "http://example.com/file2".to_string(),
        "http://example.com/file3".to_string(),
    ];
    run_concurrently!(for urls.into_iter().map(download_file));
    println!(
        "Total threading time: {:.2}s",
        start_time.elapsed().as_secs_f64()
    );
}
