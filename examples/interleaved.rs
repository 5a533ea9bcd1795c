//! Interleaved overhead checks (`cargo run --release -p concurrency-examples --example interleaved`).
//!
//! Criterion measures one side of a comparison, then the other; on a VM whose speed
//! drifts, that drift shows up as a ratio. Here the two sides alternate in one loop,
//! so both see the same machine, and each round prints the medians and their ratio.

use std::hint::black_box;
use std::time::{Duration, Instant};

use concurrency_runtime::{cpu_task, io_task, run_concurrently};

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

#[io_task]
fn blocking_task(n: u64) -> u64 {
    black_box(n)
}

#[cpu_task]
fn cpu_task(n: u64) -> u64 {
    cpu_body(n)
}

/// Runs `ours` and `theirs` alternately `samples` times; returns both medians.
fn alternate(
    samples: usize,
    mut ours: impl FnMut(),
    mut theirs: impl FnMut(),
) -> (Duration, Duration) {
    let mut times = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for _ in 0..samples {
        let started = Instant::now();
        ours();
        times.0.push(started.elapsed());
        let started = Instant::now();
        theirs();
        times.1.push(started.elapsed());
    }
    (median(times.0), median(times.1))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn report(name: &str, baseline: &str, (ours, theirs): (Duration, Duration)) {
    println!(
        "{name:<44} run_concurrently! {ours:>10.1?}   {baseline} {theirs:>10.1?}   ratio {:.2}",
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let handle = runtime.handle().clone();
    for round in 1..=3 {
        println!("round {round}");

        // 10,000 async tasks, both inside a spawned task of the runtime.
        let async10k = runtime.block_on(async {
            tokio::spawn(async {
                let mut times = (Vec::new(), Vec::new());
                for _ in 0..40 {
                    let started = Instant::now();
                    black_box(run_concurrently!(async; for (0..10_000).map(io_task)).await);
                    times.0.push(started.elapsed());
                    let started = Instant::now();
                    let mut set = tokio::task::JoinSet::new();
                    for n in 0..10_000 {
                        set.spawn(io_body(n));
                    }
                    while let Some(joined) = set.join_next().await {
                        black_box(joined.expect("join"));
                    }
                    times.1.push(started.elapsed());
                }
                (median(times.0), median(times.1))
            })
            .await
            .expect("spawned check")
        });
        report("10,000 async tasks, async caller", "JoinSet", async10k);

        // 3 async tasks, polled in one `block_on` by both sides.
        let async3 = runtime.block_on(async {
            let mut times = (Vec::new(), Vec::new());
            for _ in 0..200 {
                let started = Instant::now();
                for _ in 0..1_000 {
                    black_box(run_concurrently!(async; io_task(1), io_task(2), io_task(3)).await);
                }
                times.0.push(started.elapsed() / 1_000);
                let started = Instant::now();
                for _ in 0..1_000 {
                    black_box(tokio::join!(io_body(1), io_body(2), io_body(3)));
                }
                times.1.push(started.elapsed() / 1_000);
            }
            (median(times.0), median(times.1))
        });
        report("3 async tasks, async caller", "tokio::join!", async3);

        let sync3 = alternate(
            20_000,
            || {
                black_box(run_concurrently!(io_task(1), io_task(2), io_task(3)));
            },
            || {
                black_box(
                    handle.block_on(async { tokio::join!(io_body(1), io_body(2), io_body(3)) }),
                );
            },
        );
        report("3 async tasks, sync caller", "block_on(join!)", sync3);

        let blocking = alternate(
            30,
            || {
                black_box(run_concurrently!(for (0..1_000).map(blocking_task)));
            },
            || {
                handle.block_on(async {
                    let handles: Vec<_> = (0..1_000u64)
                        .map(|n| tokio::task::spawn_blocking(move || black_box(n)))
                        .collect();
                    for joined in handles {
                        black_box(joined.await.expect("join"));
                    }
                });
            },
        );
        report(
            "1,000 blocking tasks, sync caller",
            "spawn_blocking",
            blocking,
        );

        let mixed = alternate(
            2_000,
            || {
                black_box(run_concurrently!(io_task(1), blocking_task(2), cpu_task(3)));
            },
            || {
                black_box(handle.block_on(async {
                    let blocking = tokio::task::spawn_blocking(|| black_box(2u64));
                    let (sender, receiver) = tokio::sync::oneshot::channel();
                    rayon::spawn(move || {
                        let _ = sender.send(cpu_body(3));
                    });
                    let (a, b, c) = tokio::join!(io_body(1), blocking, receiver);
                    (a, b.expect("join"), c.expect("rayon"))
                }));
            },
        );
        report(
            "async + blocking + cpu, sync caller",
            "join! by hand",
            mixed,
        );

        let cpu = alternate(
            2_000,
            || {
                black_box(run_concurrently!(cpu_task(1), cpu_task(2), cpu_task(3)));
            },
            || {
                black_box(rayon::join(
                    || cpu_body(1),
                    || rayon::join(|| cpu_body(2), || cpu_body(3)),
                ));
            },
        );
        report("3 small cpu tasks, sync caller", "rayon::join", cpu);
    }
}
