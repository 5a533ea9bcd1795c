use concurrency_runtime::{io_task, run_concurrently};

#[io_task]
async fn fetch(n: u64) -> u64 {
    n
}

fn main() {
    let _ = run_concurrently!(dag {
        let page = fetch(1);
        let length = page + 1;
        length
    });
}
