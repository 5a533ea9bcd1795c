use concurrency_runtime::{io_task, run_concurrently};

#[io_task]
async fn step(n: u64) -> u64 {
    n + 1
}

fn main() {
    let _ = run_concurrently!(all; dag {
        let first = step(1);
        (first, first)
    });
}
