use concurrency_runtime::{cpu_task, run_concurrently};

#[cpu_task]
fn square(n: u64) -> u64 {
    n * n
}

fn main() {
    let _ = run_concurrently!(progress(|_| {}); square(1), square(2));
}
