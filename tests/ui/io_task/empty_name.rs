use concurrency_runtime::io_task;

#[io_task(name = "")]
fn download() -> u32 {
    1
}

fn main() {}
