//! Process tasks against a hand-written pipelined pipe pool, run alternately
//! (`cargo run --release -p concurrency-examples --example process_perf`).
//!
//! The baseline is what someone who wanted process isolation for a stream of small
//! jobs would write by hand: two workers (copies of this program, re-executed), each
//! with a writer thread that streams its share of the requests down the worker's
//! stdin while the caller reads the answers from its stdout; a worker answers each
//! request and flushes when it has no more input. It has no crash isolation per task,
//! no cancellation, no frame limits, no fair queue: it is the floor.
//!
//! Each round alternates the two sides (with a pause between them) and takes each
//! side's median; each row prints the medians over the rounds and the min, median and
//! max of the per-round ratios (`ROUNDS=n` sets the number of rounds, default 7).

use std::hint::black_box;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use concurrency_runtime::process::{self, PoolConfig};
use concurrency_runtime::{cpu_task, run_concurrently};

#[path = "support/rounds.rs"]
mod rounds;
use rounds::{Ratio, Table, alternate, median};

/// The pause before each sample: neither side's threads still busy when the other
/// starts.
const PAUSE: Duration = Duration::from_millis(1);

/// Which part of this program runs: unset in the benchmark itself.
const MODE: &str = "CONCURRENCY_PERF_MODE";

#[cpu_task(process)]
fn trivial(n: u64) -> u64 {
    n + 1
}

#[cpu_task(process)]
fn echo(data: Vec<u8>) -> Vec<u8> {
    data
}

fn main() {
    match std::env::var(MODE).as_deref() {
        Ok("pipe-worker") => return pipe_worker(),
        Ok("cold-library") => return cold_library(),
        Ok("cold-pipes") => return cold_pipes(),
        // For a profiler: the library's 1,000 in flight with a pause before each.
        Ok("profile-paused") => {
            process::configure(PoolConfig::default().workers(2)).expect("configure");
            for _ in 0..200 {
                std::thread::sleep(Duration::from_millis(1));
                black_box(run_concurrently!(for (0..1_000).map(trivial)));
            }
            return;
        }
        // For a profiler: the library's 1,000 in flight, over and over.
        Ok("profile-in-flight") => {
            process::configure(PoolConfig::default().workers(2)).expect("configure");
            for _ in 0..2_000 {
                black_box(run_concurrently!(for (0..1_000).map(trivial)));
            }
            return;
        }
        // One task at a time, awaited and `.run()`.
        Ok("awaited") => {
            process::configure(PoolConfig::default().workers(2)).expect("configure");
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let (awaited, run) = one_at_a_time(&runtime, 3_000);
            println!("awaited {awaited:.1?} run {run:.1?}");
            return;
        }
        // Large payloads: 64 MiB each way.
        Ok("large") => {
            process::configure(PoolConfig::default().workers(2)).expect("configure");
            let data = vec![7u8; 64 << 20];
            for _ in 0..5 {
                let started = Instant::now();
                let back = echo(black_box(data.clone())).run();
                let elapsed = started.elapsed();
                assert_eq!(back.len(), data.len());
                println!("64 MiB there and back: {elapsed:.1?}");
            }
            return;
        }
        // The spread of the library's 1,000 in flight.
        Ok("spread") => {
            process::configure(PoolConfig::default().workers(2)).expect("configure");
            let mut times: Vec<Duration> = (0..600)
                .map(|_| {
                    let started = Instant::now();
                    black_box(run_concurrently!(for (0..1_000).map(trivial)));
                    started.elapsed()
                })
                .skip(100)
                .collect();
            times.sort_unstable();
            for percent in [0, 10, 25, 50, 75, 90, 99] {
                print!("p{percent} {:.1?}  ", times[times.len() * percent / 100]);
            }
            println!();
            return;
        }
        Ok("profile-100k") => {
            process::configure(PoolConfig::default().workers(2)).expect("configure");
            for _ in 0..40 {
                black_box(run_concurrently!(for (0..100_000).map(trivial)));
            }
            return;
        }
        _ => {}
    }
    process::configure(PoolConfig::default().workers(2)).expect("configure");
    let mut pipes = PipePool::start(2);
    // Warm both: every worker started, every thread up.
    for _ in 0..20 {
        black_box(run_concurrently!(for (0..1_000).map(trivial)));
        black_box(pipes.run(&(0..1_000).collect::<Vec<u64>>()));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let thousand: Vec<u64> = (0..1_000).collect();
    let hundred_thousand: Vec<u64> = (0..100_000).collect();
    let rounds = rounds::rounds(7);
    let mut table = Table::default();
    let mut flat = Vec::new();
    let mut awaited_rounds = Vec::new();
    for round in 1..=rounds {
        eprint!("round {round}/{rounds}\r");
        let thousand_ratio = alternate(
            40,
            PAUSE,
            || {
                black_box(run_concurrently!(for (0..1_000).map(trivial)));
            },
            || {
                black_box(pipes.run(&thousand));
            },
        );
        table.record(
            "1,000 in flight, pool of 2",
            "pipelined pipe pool",
            thousand_ratio,
        );

        let async_ratio = alternate(
            40,
            PAUSE,
            || {
                runtime.block_on(async {
                    tokio::spawn(async {
                        black_box(run_concurrently!(async; for (0..1_000).map(trivial)).await)
                    })
                    .await
                    .expect("spawned")
                });
            },
            || {
                black_box(pipes.run(&thousand));
            },
        );
        table.record(
            "1,000 in flight, async caller (spawned task)",
            "pipelined pipe pool",
            async_ratio,
        );

        let large = alternate(
            3,
            PAUSE,
            || {
                black_box(run_concurrently!(for (0..100_000).map(trivial)));
            },
            || {
                black_box(pipes.run(&hundred_thousand));
            },
        );
        table.record("100,000 in flight, pool of 2", "pipelined pipe pool", large);
        // The cost per task at 100,000 against 1,000.
        flat.push(
            (large.ours.as_secs_f64() / 100_000.0) / (thousand_ratio.ours.as_secs_f64() / 1_000.0),
        );

        // The children time themselves, from `main` to the first result.
        table.record(
            "cold start to the first result",
            "pool of 2 re-exec'd",
            cold_alternating(8),
        );

        awaited_rounds.push(one_at_a_time(&runtime, 2_000));
    }
    table.print(rounds);
    flat.sort_by(f64::total_cmp);
    println!(
        "cost per task at 100,000 in flight / at 1,000: {:.2} {:.2} {:.2}",
        flat[0],
        flat[flat.len() / 2],
        flat[flat.len() - 1]
    );
    let mut awaited: Vec<Duration> = awaited_rounds.iter().map(|(awaited, _)| *awaited).collect();
    let mut run: Vec<Duration> = awaited_rounds.iter().map(|(_, run)| *run).collect();
    awaited.sort_unstable();
    run.sort_unstable();
    println!(
        "one process task at a time: awaited in a spawned task {:.1?} {:.1?} {:.1?}; \
         .run() {:.1?} {:.1?} {:.1?}",
        awaited[0],
        awaited[awaited.len() / 2],
        awaited[awaited.len() - 1],
        run[0],
        run[run.len() / 2],
        run[run.len() - 1]
    );
}

/// The medians of `count` process tasks run one at a time: awaited in a spawned task,
/// and with `.run()`.
fn one_at_a_time(runtime: &tokio::runtime::Runtime, count: u64) -> (Duration, Duration) {
    let awaited = runtime.block_on(async move {
        tokio::spawn(async move {
            let mut times = Vec::new();
            for n in 0..count {
                let started = Instant::now();
                black_box(trivial(n).await);
                times.push(started.elapsed());
            }
            median(times)
        })
        .await
        .expect("spawned")
    });
    let mut times = Vec::new();
    for n in 0..count {
        let started = Instant::now();
        black_box(trivial(n).run());
        times.push(started.elapsed());
    }
    (awaited, median(times))
}

/// Cold starts measured in fresh copies of this program, alternately: the medians of
/// what each child reports (from its `main` to its first result).
fn cold_alternating(samples: usize) -> Ratio {
    let mut times = (Vec::new(), Vec::new());
    for _ in 0..samples {
        times.0.push(child_time("cold-library"));
        times.1.push(child_time("cold-pipes"));
    }
    Ratio {
        ours: median(times.0),
        theirs: median(times.1),
    }
}

/// Runs this program in `mode` and returns the time it printed, in nanoseconds.
fn child_time(mode: &str) -> Duration {
    let output = Command::new(std::env::current_exe().expect("exe"))
        .env(MODE, mode)
        .output()
        .expect("child");
    let text = String::from_utf8_lossy(&output.stdout);
    let nanos: u64 = text
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{mode}: {text:?}"));
    Duration::from_nanos(nanos)
}

/// A fresh program's first process task, timed from `main`.
fn cold_library() {
    let started = Instant::now();
    process::configure(PoolConfig::default().workers(2)).expect("configure");
    let value = trivial(1).run();
    println!("{}", started.elapsed().as_nanos());
    assert_eq!(value, 2);
}

/// A fresh program's first request to a hand-written pool of two, timed from `main`.
fn cold_pipes() {
    let started = Instant::now();
    let mut pipes = PipePool::start(2);
    let value = pipes.run(&[1]);
    println!("{}", started.elapsed().as_nanos());
    assert_eq!(value, [2]);
}

/// The hand-written pool: workers that read `u64` requests on stdin and answer `n + 1`
/// on stdout, each fed by a writer thread.
struct PipePool {
    workers: Vec<PipeWorker>,
}

struct PipeWorker {
    _child: Child,
    batches: mpsc::Sender<Vec<u64>>,
    answers: BufReader<ChildStdout>,
}

impl PipePool {
    fn start(size: usize) -> PipePool {
        let workers = (0..size)
            .map(|_| {
                let mut child = Command::new(std::env::current_exe().expect("exe"))
                    .env(MODE, "pipe-worker")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("pipe worker");
                let stdin = child.stdin.take().expect("stdin");
                let answers =
                    BufReader::with_capacity(64 << 10, child.stdout.take().expect("stdout"));
                let (batches, incoming) = mpsc::channel::<Vec<u64>>();
                std::thread::spawn(move || {
                    let mut out = BufWriter::with_capacity(64 << 10, stdin);
                    for batch in incoming {
                        for n in batch {
                            out.write_all(&n.to_le_bytes()).expect("request");
                        }
                        out.flush().expect("flush");
                    }
                });
                PipeWorker {
                    _child: child,
                    batches,
                    answers,
                }
            })
            .collect();
        PipePool { workers }
    }

    /// Sends `tasks` round-robin to the workers, all at once, and collects the answers
    /// in input order.
    fn run(&mut self, tasks: &[u64]) -> Vec<u64> {
        let size = self.workers.len();
        for (index, worker) in self.workers.iter().enumerate() {
            let share: Vec<u64> = tasks.iter().skip(index).step_by(size).copied().collect();
            worker.batches.send(share).expect("writer");
        }
        let mut results = vec![0; tasks.len()];
        for (index, worker) in self.workers.iter_mut().enumerate() {
            for slot in (index..tasks.len()).step_by(size) {
                let mut answer = [0u8; 8];
                worker.answers.read_exact(&mut answer).expect("answer");
                results[slot] = u64::from_le_bytes(answer);
            }
        }
        results
    }
}

/// A pipe worker: answers `n + 1` to each request, flushing when no more input waits.
fn pipe_worker() {
    let mut input = BufReader::with_capacity(64 << 10, std::io::stdin().lock());
    let mut output = BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
    let mut request = [0u8; 8];
    while input.read_exact(&mut request).is_ok() {
        let n = u64::from_le_bytes(request);
        output.write_all(&(n + 1).to_le_bytes()).expect("answer");
        if input.buffer().is_empty() {
            output.flush().expect("flush");
        }
    }
    let _ = input.fill_buf();
}
