use concurrency_runtime::io_task;

#[io_task]
fn download(url: &str) -> usize {
    url.len()
}

fn main() {}
