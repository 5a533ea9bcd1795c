use std::rc::Rc;

use concurrency_runtime::io_task;

#[io_task]
fn download(url: Rc<String>) -> usize {
    url.len()
}

fn main() {}
