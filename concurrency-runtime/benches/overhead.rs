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

/// A blocking call's stand-in: no actual blocking, so the figure is the overhead.
fn blocking_body(n: u64) -> u64 {
    black_box(n)
}

#[io_task]
fn blocking_task(n: u64) -> u64 {
    blocking_body(n)
}

/// A tiny cpu task: the fan-out figures are the scheduling cost per task.
fn tiny_body(n: u64) -> u64 {
    black_box(n).wrapping_mul(31)
}

#[cpu_task]
fn tiny_task(n: u64) -> u64 {
    tiny_body(n)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Hand-written: n futures spawned on a `JoinSet`, results in input order.
async fn join_set(n: u64) -> Vec<u64> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        set.spawn(async move { (i, io_body(i).await) });
    }
    let mut out = vec![0; n as usize];
    while let Some(joined) = set.join_next().await {
        let (i, value) = joined.expect("join");
        out[i as usize] = value;
    }
    out
}

/// Hand-written: n blocking calls on tokio's blocking pool, awaited in order.
async fn spawn_blocking_all(n: u64) -> Vec<u64> {
    let handles: Vec<_> = (0..n)
        .map(|i| tokio::task::spawn_blocking(move || blocking_body(i)))
        .collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("join"));
    }
    out
}

/// Hand-written: n rayon scope spawns writing their slot.
fn rayon_scope_all(n: u64) -> Vec<u64> {
    let mut out = vec![0; n as usize];
    rayon::scope(|scope| {
        for (slot, i) in out.iter_mut().zip(0..) {
            scope.spawn(move |_| *slot = tiny_body(i));
        }
    });
    out
}

/// Hand-written: one async, one blocking and one cpu call, together.
async fn mixed_by_hand() -> (u64, u64, u64) {
    let blocking = tokio::task::spawn_blocking(|| blocking_body(2));
    let (sender, receiver) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let _ = sender.send(cpu_body(3));
    });
    let (a, b, c) = tokio::join!(io_body(1), blocking, receiver);
    (a, b.expect("join"), c.expect("rayon"))
}

fn async_three(c: &mut Criterion) {
    let runtime = runtime();
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

/// Hand-written, from async code: the closure as a rayon job, its result back on a
/// oneshot channel (what a tokio user writes to keep cpu work off the reactor).
async fn on_rayon<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let _ = sender.send(f());
    });
    receiver.await.expect("rayon")
}

fn cpu_three(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("cpu3_async_caller");
    group.bench_function("run_concurrently", |b| {
        b.to_async(&runtime).iter(|| async {
            run_concurrently!(async; cpu_task(1), cpu_task(2), cpu_task(3)).await
        })
    });
    group.bench_function("rayon_oneshot", |b| {
        b.to_async(&runtime).iter(|| async {
            tokio::join!(
                on_rayon(|| cpu_body(1)),
                on_rayon(|| cpu_body(2)),
                on_rayon(|| cpu_body(3))
            )
        })
    });
    group.finish();

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

fn async_fan_out(c: &mut Criterion) {
    const N: u64 = 10_000;
    let runtime = runtime();
    let mut group = c.benchmark_group("async10k_async_caller");
    group.sample_size(20);
    group.bench_function("run_concurrently", |b| {
        b.to_async(&runtime)
            .iter(|| async { run_concurrently!(async; for (0..N).map(io_task)).await })
    });
    group.bench_function("join_set", |b| b.to_async(&runtime).iter(|| join_set(N)));
    group.finish();

    let mut group = c.benchmark_group("async10k_sync_caller");
    group.sample_size(20);
    group.bench_function("run_concurrently", |b| {
        b.iter(|| run_concurrently!(for (0..N).map(io_task)))
    });
    let handle = runtime.handle().clone();
    group.bench_function("join_set", |b| b.iter(|| handle.block_on(join_set(N))));
    group.finish();
}

fn blocking(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("blocking3_async_caller");
    group.bench_function("run_concurrently", |b| {
        b.to_async(&runtime).iter(|| async {
            run_concurrently!(async; blocking_task(1), blocking_task(2), blocking_task(3)).await
        })
    });
    group.bench_function("spawn_blocking", |b| {
        b.to_async(&runtime).iter(|| spawn_blocking_all(3))
    });
    group.finish();

    let mut group = c.benchmark_group("blocking3_sync_caller");
    group.bench_function("run_concurrently", |b| {
        b.iter(|| run_concurrently!(blocking_task(1), blocking_task(2), blocking_task(3)))
    });
    // The hand-written sync caller uses the runtime the library embeds, as a user
    // of tokio would use theirs.
    let handle = runtime.handle().clone();
    group.bench_function("spawn_blocking", |b| {
        b.iter(|| handle.block_on(spawn_blocking_all(3)))
    });
    group.finish();

    let mut group = c.benchmark_group("blocking1000_sync_caller");
    group.sample_size(20);
    group.bench_function("run_concurrently", |b| {
        b.iter(|| run_concurrently!(for (0..1000).map(blocking_task)))
    });
    group.bench_function("spawn_blocking", |b| {
        b.iter(|| handle.block_on(spawn_blocking_all(1000)))
    });
    group.finish();

    let mut group = c.benchmark_group("blocking1000_async_caller");
    group.sample_size(20);
    group.bench_function("run_concurrently", |b| {
        b.to_async(&runtime)
            .iter(|| async { run_concurrently!(async; for (0..1000).map(blocking_task)).await })
    });
    group.bench_function("spawn_blocking", |b| {
        b.to_async(&runtime).iter(|| spawn_blocking_all(1000))
    });
    group.finish();
}

fn cpu_fan_out(c: &mut Criterion) {
    const N: u64 = 10_000;
    let mut group = c.benchmark_group("cpu10k_sync_caller");
    group.sample_size(20);
    group.bench_function("run_concurrently", |b| {
        b.iter(|| run_concurrently!(for (0..N).map(tiny_task)))
    });
    group.bench_function("rayon_scope", |b| b.iter(|| rayon_scope_all(N)));
    group.finish();

    let runtime = runtime();
    let mut group = c.benchmark_group("cpu10k_async_caller");
    group.sample_size(20);
    group.bench_function("run_concurrently", |b| {
        b.to_async(&runtime)
            .iter(|| async { run_concurrently!(async; for (0..N).map(tiny_task)).await })
    });
    // One rayon job that runs the `rayon::scope` fan-out, awaited on a oneshot.
    group.bench_function("rayon_scope_oneshot", |b| {
        b.to_async(&runtime)
            .iter(|| on_rayon(|| rayon_scope_all(N)))
    });
    group.finish();
}

fn mixed(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("mixed3_async_caller");
    group.bench_function("run_concurrently", |b| {
        b.to_async(&runtime).iter(|| async {
            run_concurrently!(async; io_task(1), blocking_task(2), cpu_task(3)).await
        })
    });
    group.bench_function("by_hand", |b| b.to_async(&runtime).iter(mixed_by_hand));
    group.finish();

    let mut group = c.benchmark_group("mixed3_sync_caller");
    group.bench_function("run_concurrently", |b| {
        b.iter(|| run_concurrently!(io_task(1), blocking_task(2), cpu_task(3)))
    });
    let handle = runtime.handle().clone();
    group.bench_function("by_hand", |b| b.iter(|| handle.block_on(mixed_by_hand())));
    group.finish();
}

criterion_group!(
    benches,
    async_three,
    cpu_three,
    async_fan_out,
    blocking,
    cpu_fan_out,
    mixed
);
criterion_main!(benches);
