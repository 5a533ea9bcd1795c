use concurrency_runtime::io_task;

#[io_task]
unsafe fn download() -> u32 {
    1
}

fn main() {}
