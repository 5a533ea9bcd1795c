use concurrency_runtime::io_task;

#[io_task(retries = 2, retry_on = [panik, timeout, panic, panic])]
fn misspelled() {}

#[io_task(retries = 2, retry_on = panic)]
fn not_a_list() {}

#[io_task(retries = 2, retry_on = [])]
fn empty_list() {}

fn main() {}
