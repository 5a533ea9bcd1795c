use concurrency_runtime::{cpu_task, io_task};

#[io_task(timeout = "soon")]
fn unparsable() {}

#[io_task(timeout = "0ms")]
fn zero() {}

#[cpu_task(timeout = 5)]
fn not_a_string() {}

#[cpu_task(retries = 2, backoff = "2 seconds")]
fn bad_backoff() {}

fn main() {}
