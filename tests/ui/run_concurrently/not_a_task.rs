use concurrency_runtime::{cpu_task, run_concurrently};

#[cpu_task]
fn crunch(n: u64) -> u64 {
    n
}

fn main() {
    let path = "Cargo.toml".to_string();
    // A std function is not a task: one error, at the call.
    let (n, text) = run_concurrently!(crunch(1), std::fs::read_to_string(path));
    let _ = (n, text);
}
