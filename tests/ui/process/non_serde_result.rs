use concurrency_runtime::cpu_task;

struct Report {
    lines: Vec<String>,
}

#[cpu_task(process)]
fn analyse(n: u64) -> Report {
    Report { lines: vec![n.to_string()] }
}

fn main() {}
