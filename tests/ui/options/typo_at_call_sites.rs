use concurrency_runtime::{io_task, run_concurrently};

// One error, at the option: the function still expands (without the option), so its
// call sites do not report it again.
#[io_task(timout = "1s")]
fn fetch(n: u32) -> u32 {
    n
}

fn main() {
    let (a, b) = run_concurrently!(fetch(1), fetch(2));
    let c = fetch(3).run();
    let _ = (a, b, c);
}
