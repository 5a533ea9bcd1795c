use concurrency_runtime::io_task;

#[io_task(priority = 3)]
fn download() -> u32 {
    1
}

fn main() {}
