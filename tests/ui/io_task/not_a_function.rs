use concurrency_runtime::io_task;

#[io_task]
struct Downloader {
    url: String,
}

fn main() {}
