use concurrency_runtime::cpu_task;

#[cpu_task]
fn describe(n: u64) -> impl std::fmt::Display {
    n
}

fn main() {}
