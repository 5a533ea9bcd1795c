use concurrency_runtime::io_task;

#[io_task]
const fn size() -> usize {
    1
}

fn main() {}
