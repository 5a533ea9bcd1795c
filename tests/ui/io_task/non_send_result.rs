use std::rc::Rc;

use concurrency_runtime::io_task;

#[io_task]
async fn fetch() -> Rc<String> {
    Rc::new(String::new())
}

fn main() {}
