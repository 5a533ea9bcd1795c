use concurrency_runtime::{cpu_task, run_concurrently};

#[cpu_task]
fn square(n: u64) -> u64 {
    n * n
}

fn main() {
    let _ = run_concurrently!(progress; for (0..4).map(square));
}
