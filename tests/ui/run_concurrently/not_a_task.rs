use concurrency_runtime::{cpu_task, run_concurrently};

#[cpu_task]
fn crunch(n: u64) -> u64 {
    n
}

fn plain(n: u64) -> u64 {
    n
}

fn main() {
    let _ = run_concurrently!(crunch(1), plain(2));
}
