use concurrency_runtime::{cpu_task, run_concurrently};

#[cpu_task]
async fn crunch(n: u64) -> u64 {
    n * n
}

fn main() {
    // The attribute's error only: not one more per call site.
    let (a, b) = run_concurrently!(crunch(1), crunch(2));
    let c = crunch(3).run();
    let _ = (a, b, c);
}
