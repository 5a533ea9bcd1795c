use concurrency_runtime::{io_task, run_concurrently};

#[io_task]
async fn pair(n: u64) -> (u64, u64) {
    (n, n)
}

fn main() {
    let _ = run_concurrently!(dag {
        let (left, right) = pair(1);
        (left, right)
    });
}
