//! Scale checks (`cargo run --release --example scale`):
//!
//! 1. Peak memory of 100,000 concurrent sleeping async tasks run with
//!    `run_concurrently!`, next to the same with bare `tokio::spawn`; each measured in
//!    a fresh process (this program re-runs itself), from `VmHWM` in `/proc/self/status`.
//! 2. The cost per task of a fan-out of trivial cpu tasks, from 10,000 to 1,000,000
//!    tasks (best of 3 runs each), next to `rayon::scope` spawns.

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use concurrency_runtime::{cpu_task, io_task, run_concurrently};

const SLEEPERS: u64 = 100_000;
const SLEEP: Duration = Duration::from_millis(500);

#[io_task]
async fn sleeper(n: u64) -> u64 {
    tokio::time::sleep(SLEEP).await;
    n
}

#[cpu_task]
fn tiny(n: u64) -> u64 {
    black_box(n).wrapping_mul(31)
}

/// Peak resident memory of this process so far, in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|error| panic!("runtime: {error}"))
}

/// One measurement in this process: prints the peak RSS in KiB.
fn sleepers(which: &str) {
    let runtime = runtime();
    let sum: u64 = match which {
        "ours" => runtime.block_on(async {
            run_concurrently!(async; for (0..SLEEPERS).map(sleeper))
                .await
                .into_iter()
                .sum()
        }),
        _ => runtime.block_on(async {
            let handles: Vec<_> = (0..SLEEPERS)
                .map(|n| {
                    tokio::spawn(async move {
                        tokio::time::sleep(SLEEP).await;
                        n
                    })
                })
                .collect();
            // The results in input order, as `run_concurrently!` returns them.
            let mut results = Vec::with_capacity(handles.len());
            for handle in handles {
                results.push(handle.await.unwrap_or(0));
            }
            results.into_iter().sum()
        }),
    };
    assert_eq!(sum, SLEEPERS * (SLEEPERS - 1) / 2);
    println!("{}", peak_rss_kib());
}

fn measure_in_child(which: &str) -> u64 {
    let exe = std::env::current_exe().unwrap_or_else(|error| panic!("current_exe: {error}"));
    let output = Command::new(exe)
        .args(["--sleepers", which])
        .output()
        .unwrap_or_else(|error| panic!("re-run: {error}"));
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("child printed {:?}", output))
}

fn best_of_3(mut run: impl FnMut()) -> Duration {
    (0..3)
        .map(|_| {
            let started = Instant::now();
            run();
            started.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "--sleepers" {
        sleepers(&args[2]);
        return;
    }

    let ours = measure_in_child("ours");
    let bare = measure_in_child("tokio");
    println!("{SLEEPERS} sleeping async tasks, peak RSS:");
    println!(
        "  run_concurrently! {:>8.1} MiB   tokio::spawn {:>8.1} MiB   ratio {:.2}",
        ours as f64 / 1024.0,
        bare as f64 / 1024.0,
        ours as f64 / bare as f64
    );

    println!("cpu fan-out of trivial tasks, cost per task (best of 3):");
    for n in [10_000u64, 100_000, 1_000_000] {
        let ours = best_of_3(|| {
            let results = run_concurrently!(for (0..n).map(tiny));
            assert_eq!(results.len() as u64, n);
        });
        let scope = best_of_3(|| {
            let mut out = vec![0u64; n as usize];
            rayon::scope(|scope| {
                for (i, slot) in out.iter_mut().enumerate() {
                    scope.spawn(move |_| *slot = black_box(i as u64).wrapping_mul(31));
                }
            });
            black_box(out);
        });
        println!(
            "  {n:>9} tasks: run_concurrently! {:>7.1} ns/task   rayon::scope {:>7.1} ns/task   ratio {:.2}",
            ours.as_nanos() as f64 / n as f64,
            scope.as_nanos() as f64 / n as f64,
            ours.as_secs_f64() / scope.as_secs_f64()
        );
    }
}
