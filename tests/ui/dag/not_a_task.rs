use concurrency_runtime::{io_task, run_concurrently};

#[io_task]
async fn step(n: u64) -> u64 {
    n + 1
}

fn plain(n: u64) -> u64 {
    n * 2
}

fn main() {
    let _ = run_concurrently!(dag {
        let first = step(1);
        let second = plain(first);
        second
    });
}
