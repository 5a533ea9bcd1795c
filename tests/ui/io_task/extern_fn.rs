use concurrency_runtime::io_task;

#[io_task]
extern "C" fn size() -> usize {
    1
}

fn main() {}
