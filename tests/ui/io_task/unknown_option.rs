use concurrency_runtime::io_task;

#[io_task(nmae = "fetch")]
async fn fetch() -> u32 {
    1
}

fn main() {}
