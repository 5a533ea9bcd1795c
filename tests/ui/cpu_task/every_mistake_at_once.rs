use concurrency_runtime::cpu_task;

#[cpu_task(nam = "x", name = 1)]
async fn crunch(data: &[u64]) -> u64 {
    data.len() as u64
}

fn main() {}
