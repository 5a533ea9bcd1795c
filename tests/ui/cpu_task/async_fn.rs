use concurrency_runtime::cpu_task;

#[cpu_task]
async fn crunch(n: u64) -> u64 {
    n * n
}

fn main() {}
