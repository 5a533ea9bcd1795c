use concurrency_runtime::{io_task, run_concurrently};

#[io_task]
async fn step(n: u64) -> u64 {
    n + 1
}

fn main() {
    let _ = run_concurrently!(describe; step(1), step(2));
}
