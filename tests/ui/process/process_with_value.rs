use concurrency_runtime::cpu_task;

#[cpu_task(process = true)]
fn crunch(n: u64) -> u64 {
    n
}

fn main() {}
