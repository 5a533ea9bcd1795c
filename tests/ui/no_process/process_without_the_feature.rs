use concurrency_runtime::cpu_task;

// Built with `concurrency-runtime`'s default features off.
#[cpu_task(process)]
fn isolated(n: u64) -> u64 {
    n + 1
}

fn main() {
    let _ = isolated(1).run();
}
