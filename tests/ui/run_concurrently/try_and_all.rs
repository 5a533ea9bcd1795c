use concurrency_runtime::{cpu_task, run_concurrently};

#[cpu_task]
fn square(n: u64) -> u64 {
    n * n
}

fn main() {
    let _ = run_concurrently!(try, all; square(1), square(2));
    let _ = run_concurrently!(all, all; square(1));
    let _ = run_concurrently!(tyr; square(1));
}
