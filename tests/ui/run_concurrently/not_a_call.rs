use concurrency_runtime::{cpu_task, run_concurrently};

#[cpu_task]
fn crunch(n: u64) -> u64 {
    n
}

fn main() {
    let task = crunch(1);
    let _ = run_concurrently!(crunch(2), task, 3 + 4);
}
