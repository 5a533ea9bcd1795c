use concurrency_runtime::{cpu_task, io_task};

#[io_task(backoff = "100ms")]
fn backoff_without_retries() {}

#[io_task(retry_on = [panic])]
fn retry_on_without_retries() {}

#[io_task(retries = 2, retry_on = [crash])]
fn only_process_tasks_crash() {}

#[cpu_task(retries = 2, retry_on = [timeout])]
fn no_timeout_to_retry() {}

#[cpu_task(retries = 2, retry_on = [error])]
fn no_error_to_retry() -> u32 {
    1
}

fn main() {}
