//! A small pipeline as a dependency graph, each step on the executor that fits it:
//! a page is fetched (async I/O), then stored (blocking I/O), counted (CPU, rayon) and
//! checksummed by an untrusted decoder (a worker process) at the same time; the
//! summary waits only for the count. Prints where each node ran, when it started and
//! ended, and the makespan next to the critical path.
//!
//! `cargo run --release --example dag` runs it; `-- --dot` prints the graph as
//! Graphviz DOT text instead (`... -- --dot | dot -Tsvg > dag.svg` draws it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use concurrency_runtime::{TaskKind, cpu_task, io_task, run_concurrently};

/// A node's name, where it ran, and when it started and ended.
type Span = (&'static str, Option<TaskKind>, Instant, Instant);

/// Every node's span, in the order they ended.
static TIMELINE: Mutex<Vec<Span>> = Mutex::new(Vec::new());

fn record<T>(name: &'static str, body: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let value = body();
    TIMELINE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push((name, TaskKind::current(), started, Instant::now()));
    value
}

/// Downloads a page (here: waits 40 ms, as a slow server would, and makes one up).
#[io_task]
async fn fetch(url: String) -> String {
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(40)).await;
    let page = format!(
        "{url}: {}",
        "the quick brown fox jumps over the lazy dog ".repeat(20_000)
    );
    TIMELINE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(("fetch", TaskKind::current(), started, Instant::now()));
    page
}

/// Keeps a copy on disk: blocking file I/O.
#[io_task]
fn store(page: String) -> usize {
    record("store", || {
        let path = std::env::temp_dir().join(format!("dag-example-{}.txt", std::process::id()));
        let written = std::fs::write(&path, page.as_bytes()).map_or(0, |()| page.len());
        let _ = std::fs::remove_file(&path);
        written
    })
}

/// Counts each word: CPU work for rayon's pool.
#[cpu_task]
fn count_words(page: String) -> HashMap<String, usize> {
    record("count_words", || {
        let mut counts = HashMap::new();
        for word in page.split_whitespace() {
            *counts.entry(word.to_owned()).or_insert(0) += 1;
        }
        counts
    })
}

/// A checksum by code we would rather not run in our own process: a worker process
/// (a crash there fails this node alone).
#[cpu_task(process)]
fn checksum(page: String) -> (u64, u32) {
    let hash = page.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash, std::process::id())
}

/// The most frequent words: a little more CPU work.
#[cpu_task]
fn summarize(counts: HashMap<String, usize>, top: usize) -> Vec<(String, usize)> {
    record("summarize", || {
        let mut words: Vec<(String, usize)> = counts.into_iter().collect();
        words.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        words.truncate(top);
        words
    })
}

fn main() {
    let url = String::from("https://example.com/fox");
    if std::env::args().any(|arg| arg == "--dot") {
        let dot: String = run_concurrently!(describe; dag {
            let page = fetch(url);
            let stored = store(page);
            let words = count_words(page);
            let digest = checksum(page);
            let summary = summarize(words, 3);
            (summary, digest, stored)
        });
        print!("{dot}");
        return;
    }
    let started = Instant::now();
    let (summary, digest, stored) = run_concurrently!(dag {
        let page = fetch(url);
        let stored = store(page);
        let words = count_words(page);
        let digest = checksum(page);
        let summary = summarize(words, 3);
        (summary, digest, stored)
    });
    let makespan = started.elapsed();

    let timeline = TIMELINE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    let offset = |at: Instant| at.duration_since(started).as_secs_f64() * 1e3;
    println!(
        "{:<12} {:<24} {:>9} {:>9}",
        "node", "ran on", "start ms", "end ms"
    );
    let mut took = HashMap::new();
    for (name, kind, from, to) in &timeline {
        let place = kind.map_or_else(|| "?".to_owned(), |kind| kind.to_string());
        println!(
            "{name:<12} {place:<24} {:>9.2} {:>9.2}",
            offset(*from),
            offset(*to)
        );
        took.insert(*name, *to - *from);
    }
    println!(
        "{:<12} {:<24} (process {}, checksum {:016x})",
        "checksum", "worker process", digest.1, digest.0
    );
    let time = |name: &str| took.get(name).copied().unwrap_or_default();
    // The longest chain of node times: fetch, then the slowest of its three branches
    // (the checksum's time is not measured here: it runs in another process).
    let critical = time("fetch") + (time("count_words") + time("summarize")).max(time("store"));
    println!(
        "top words: {summary:?}; stored {stored} bytes\nmakespan {:.2} ms; critical path through the timed nodes {:.2} ms",
        makespan.as_secs_f64() * 1e3,
        critical.as_secs_f64() * 1e3
    );
}
