use concurrency_runtime::{cpu_task, run_concurrently};

#[derive(serde::Serialize)]
struct Report {
    lines: Vec<String>,
}

// `Report` is `Serialize` but not `Deserialize`: one error, under the type.
#[cpu_task(process)]
fn analyse(n: u64) -> Report {
    Report { lines: vec![n.to_string()] }
}

fn main() {
    let report = run_concurrently!(analyse(1));
    let _ = (report.lines, analyse(2).run().lines);
}
