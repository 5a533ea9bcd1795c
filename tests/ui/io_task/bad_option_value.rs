use concurrency_runtime::io_task;

#[io_task(name = 42)]
async fn fetch() -> u32 {
    1
}

fn main() {}
