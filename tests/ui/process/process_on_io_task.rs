use concurrency_runtime::io_task;

#[io_task(process)]
fn download(url: String) -> usize {
    url.len()
}

fn main() {}
