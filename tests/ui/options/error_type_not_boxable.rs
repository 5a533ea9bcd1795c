use concurrency_runtime::io_task;

#[derive(Debug)]
struct NotAnError;

#[io_task]
fn fetch() -> Result<u32, NotAnError> {
    Err(NotAnError)
}

fn main() {
    let _ = fetch();
}
