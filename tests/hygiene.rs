//! The macros still work where the user has their own `Result`, `Option`, `Box`,
//! `Some`, `Ok`, a `tokio` and a module named `core` in scope: generated code names
//! everything by absolute path.

#![allow(dead_code, non_camel_case_types, clippy::disallowed_names)]

mod support;

use concurrency_runtime::{cpu_task, io_task, run_concurrently};

// Try to trip up the generated code if it fails to use fully qualified paths.
struct Result;
struct Option;
struct Box;
struct Vec;
struct Some;
struct None;
struct Ok;
struct Err;
struct Send;
struct Future;
struct Pin;
struct Poll;
mod core {}
mod std {}
mod tokio {}
mod rayon {}
mod concurrency {}

#[io_task]
async fn fetch(n: u32) -> u32 {
    n + 1
}

#[io_task]
fn download(n: u32) -> u32 {
    n + 2
}

#[cpu_task(name = "crunch-numbers")]
fn crunch(n: u32) -> u32 {
    n + 3
}

#[test]
fn macros_survive_shadowed_names() {
    let (a, b, c) = support::watchdog(|| run_concurrently!(fetch(1), download(1), crunch(1)));
    assert_eq!((a, b, c), (2, 3, 4));
    let all = support::watchdog(|| run_concurrently!(for (0..3).map(crunch)));
    assert_eq!(all, [3, 4, 5]);
    let single = support::watchdog(|| run_concurrently!(download(0)));
    assert_eq!(single, 2);
}

#[test]
fn async_form_survives_shadowed_names() {
    let runtime = ::tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (a, c) = runtime.block_on(async { run_concurrently!(async; fetch(1), crunch(1)).await });
    assert_eq!((a, c), (2, 4));
    let all = runtime.block_on(async { run_concurrently!(async; for (0..2).map(fetch)).await });
    assert_eq!(all, [1, 2]);
}
