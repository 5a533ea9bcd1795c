use concurrency_runtime::{cpu_task, io_task};

#[io_task(retries = 0)]
fn zero_retries() {}

#[cpu_task(limit = 0)]
fn zero_limit() {}

#[io_task(limit = "two")]
fn limit_not_a_number() {}

#[cpu_task(retries = -1)]
fn negative_retries() {}

fn main() {}
