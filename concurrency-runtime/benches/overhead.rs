//! Overhead of `run_concurrently!` against the hand-written tokio / rayon code that
//! does the same work, measured in the same run on the same runtime.
//!
//! `cargo bench -p concurrency-runtime --bench overhead`, then
//! `python3 benches/ratios.py` prints the medians and ratios.

use std::hint::black_box;

use concurrency_runtime::{cpu_task, io_task, run_concurrently};
use criterion::{Criterion, criterion_group, criterion_main};

/// The same body for the task and for the hand-written future.
async fn io_body(n: u64) -> u64 {
    tokio::task::yield_now().await;
    black_box(n)
}

fn cpu_body(n: u64) -> u64 {
    (0..black_box(1_000)).fold(n, |acc, i| acc.wrapping_mul(31).wrapping_add(black_box(i)))
}

#[io_task]
async fn io_task(n: u64) -> u64 {
    io_body(n).await
}

#[cpu_task]
fn cpu_task(n: u64) -> u64 {
    cpu_body(n)
}

fn async_three(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("async3_async_caller");
    group.bench_function("run_concurrently", |b| {
        b.to_async(&runtime)
            .iter(|| async { run_concurrently!(async; io_task(1), io_task(2), io_task(3)).await })
    });
    group.bench_function("tokio_join", |b| {
        b.to_async(&runtime)
            .iter(|| async { tokio::join!(io_body(1), io_body(2), io_body(3)) })
    });
    group.finish();

    let mut group = c.benchmark_group("async3_sync_caller");
    group.bench_function("run_concurrently", |b| {
        b.iter(|| run_concurrently!(io_task(1), io_task(2), io_task(3)))
    });
    let handle = runtime.handle().clone();
    group.bench_function("tokio_join", |b| {
        b.iter(|| handle.block_on(async { tokio::join!(io_body(1), io_body(2), io_body(3)) }))
    });
    group.finish();
}

fn cpu_three(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu3_sync_caller");
    group.bench_function("run_concurrently", |b| {
        b.iter(|| run_concurrently!(cpu_task(1), cpu_task(2), cpu_task(3)))
    });
    group.bench_function("rayon_join", |b| {
        b.iter(|| {
            rayon::join(
                || cpu_body(1),
                || rayon::join(|| cpu_body(2), || cpu_body(3)),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, async_three, cpu_three);
criterion_main!(benches);
