//! Process-task round trips on a warm pool of 2, 1,000 in flight, the pool's cold
//! start, and the hand-written baseline: a fresh `std::process::Command` re-exec of
//! this program per task.
//!
//! `cargo bench -p concurrency-runtime --bench process`

use std::process::Command;
use std::time::{Duration, Instant};

use concurrency_runtime::process::{self, PoolConfig};
use concurrency_runtime::{cpu_task, run_concurrently};

#[cpu_task(process)]
fn trivial(n: u64) -> u64 {
    n + 1
}

const MODE: &str = "CONCURRENCY_BENCH_MODE";

fn median_min_max(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort_unstable();
    (
        samples[samples.len() / 2],
        samples[0],
        samples[samples.len() - 1],
    )
}

fn row(name: &str, (median, min, max): (Duration, Duration, Duration)) {
    println!("{name:<44} median {median:>10.1?}   min {min:>10.1?}   max {max:>10.1?}");
}

/// Configures a pool of 2 and prints how long the first task takes, in ns (the pool
/// starts with it).
fn time_first_task() {
    process::configure(PoolConfig::default().workers(2)).expect("configure");
    let started = Instant::now();
    let value = trivial(1).run();
    println!("{}", started.elapsed().as_nanos());
    assert_eq!(value, 2);
}

fn main() {
    match std::env::var(MODE).as_deref() {
        // One cold start: configure, time the first task (the pool starts here).
        Ok("cold") => return time_first_task(),
        // The same in a program holding 512 MiB: spawning must not copy its memory map.
        Ok("cold-large") => {
            let mut resident = vec![0u8; 512 << 20];
            for page in resident.chunks_mut(4096) {
                page[0] = 1; // touch every page, so it is really resident
            }
            std::hint::black_box(&resident);
            return time_first_task();
        }
        // The baseline's child: do the work and print the result.
        Ok("once") => {
            println!("{}", trivial(1).run_inline());
            return;
        }
        _ => {}
    }
    if std::env::args().any(|arg| arg == "--list") {
        return; // `cargo bench -- --list` and test discovery
    }
    process::configure(PoolConfig::default().workers(2)).expect("configure");
    let _ = trivial(0).run(); // warm up one worker
    let _ = run_concurrently!(for (0..100).map(trivial)); // and both

    let sequential: Vec<Duration> = (0..5_000)
        .map(|n| {
            let started = Instant::now();
            let value = trivial(n).run();
            let took = started.elapsed();
            assert_eq!(value, n + 1);
            took
        })
        .collect();
    row(
        "warm pool of 2, sequential round trip",
        median_min_max(sequential),
    );

    let in_flight: Vec<Duration> = (0..30)
        .map(|_| {
            let started = Instant::now();
            let values = run_concurrently!(for (0..1_000).map(trivial));
            let took = started.elapsed();
            assert_eq!(values.len(), 1_000);
            took / 1_000
        })
        .collect();
    row(
        "warm pool of 2, 1,000 in flight (per task)",
        median_min_max(in_flight),
    );

    // The same from async code: awaited inside a task of a multi-threaded runtime.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (sequential, in_flight) = runtime.block_on(async {
        tokio::spawn(async {
            let mut sequential = Vec::with_capacity(5_000);
            for n in 0..5_000 {
                let started = Instant::now();
                let value = trivial(n).await;
                sequential.push(started.elapsed());
                assert_eq!(value, n + 1);
            }
            let mut in_flight = Vec::with_capacity(30);
            for _ in 0..30 {
                let started = Instant::now();
                let values = run_concurrently!(async; for (0..1_000).map(trivial)).await;
                in_flight.push(started.elapsed() / 1_000);
                assert_eq!(values.len(), 1_000);
            }
            (sequential, in_flight)
        })
        .await
        .expect("async caller")
    });
    row(
        "async caller: sequential round trip",
        median_min_max(sequential),
    );
    row(
        "async caller: 1,000 in flight (per task)",
        median_min_max(in_flight),
    );

    let exe = std::env::current_exe().expect("exe");
    let cold = |mode: &str, runs: usize| -> Vec<Duration> {
        (0..runs)
            .map(|_| {
                let output = Command::new(&exe)
                    .env(MODE, mode)
                    .output()
                    .expect("cold run");
                let nanos: u64 = String::from_utf8_lossy(&output.stdout)
                    .trim()
                    .parse()
                    .expect("nanos");
                Duration::from_nanos(nanos)
            })
            .collect()
    };
    row(
        "cold start of the pool (first result)",
        median_min_max(cold("cold", 30)),
    );
    row(
        "cold start, 512 MiB resident in the parent",
        median_min_max(cold("cold-large", 10)),
    );

    let fresh: Vec<Duration> = (0..200)
        .map(|_| {
            let started = Instant::now();
            let output = Command::new(&exe)
                .env(MODE, "once")
                .output()
                .expect("fresh process");
            let took = started.elapsed();
            assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "2");
            took
        })
        .collect();
    row(
        "baseline: fresh Command re-exec per task",
        median_min_max(fresh),
    );
}
