use concurrency_runtime::io_task;

#[io_task(name = "a", name = "b")]
async fn fetch() -> u32 {
    1
}

fn main() {}
