//! What the side-by-side benchmarks share: rounds of alternating samples of the
//! library and the hand-written code, each round a ratio of medians, and the table
//! of those ratios (min, median and max over the rounds).

#![allow(dead_code)] // each benchmark uses the parts it needs

use std::future::Future;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// One round of a row: each side's median.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ratio {
    pub(crate) ours: Duration,
    pub(crate) theirs: Duration,
}

impl Ratio {
    pub(crate) fn value(&self) -> f64 {
        self.ours.as_secs_f64() / self.theirs.as_secs_f64()
    }
}

/// How many rounds: `ROUNDS` from the environment, else `default`.
pub(crate) fn rounds(default: usize) -> usize {
    std::env::var("ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(default)
}

/// Runs `ours` and `theirs` alternately `samples` times, with `pause` before each
/// sample (so that neither side's threads are still busy, or spinning, when the other
/// starts); returns both medians.
pub(crate) fn alternate(
    samples: usize,
    pause: Duration,
    mut ours: impl FnMut(),
    mut theirs: impl FnMut(),
) -> Ratio {
    let mut times = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for _ in 0..samples {
        std::thread::sleep(pause);
        let started = Instant::now();
        ours();
        times.0.push(started.elapsed());
        std::thread::sleep(pause);
        let started = Instant::now();
        theirs();
        times.1.push(started.elapsed());
    }
    Ratio {
        ours: median(times.0),
        theirs: median(times.1),
    }
}

/// As `alternate`, for async sides, in the calling task (each sample runs a side
/// `inner` times, so that the clock's cost does not count).
pub(crate) async fn alternate_async<A: Future, B: Future>(
    samples: usize,
    inner: u32,
    mut ours: impl FnMut() -> A,
    mut theirs: impl FnMut() -> B,
) -> Ratio {
    let mut times = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for _ in 0..samples {
        let started = Instant::now();
        for _ in 0..inner {
            black_box(ours().await);
        }
        times.0.push(started.elapsed() / inner);
        let started = Instant::now();
        for _ in 0..inner {
            black_box(theirs().await);
        }
        times.1.push(started.elapsed() / inner);
    }
    Ratio {
        ours: median(times.0),
        theirs: median(times.1),
    }
}

pub(crate) fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// The rows of a benchmark: each row's ratio in every round, in the order the rows
/// first came.
#[derive(Default)]
pub(crate) struct Table {
    rows: Vec<(&'static str, &'static str, Vec<Ratio>)>,
}

impl Table {
    /// One round of row `name` against `baseline`.
    pub(crate) fn record(&mut self, name: &'static str, baseline: &'static str, ratio: Ratio) {
        match self
            .rows
            .iter_mut()
            .find(|(known, by_hand, _)| (*known, *by_hand) == (name, baseline))
        {
            Some((_, _, ratios)) => ratios.push(ratio),
            None => self.rows.push((name, baseline, vec![ratio])),
        }
    }

    /// Prints each row: the medians over the rounds of each side's time, and the
    /// min, median and max of the per-round ratios.
    pub(crate) fn print(&self, rounds: usize) {
        println!("{rounds} rounds; each side's median per round, the two sides alternating");
        println!(
            "{:<46} {:<24} {:>10} {:>10}   ratio per round: min  median  max",
            "row", "hand-written", "library", "by hand"
        );
        for (name, baseline, ratios) in &self.rows {
            let mut values: Vec<f64> = ratios.iter().map(Ratio::value).collect();
            values.sort_by(f64::total_cmp);
            let ours = median(ratios.iter().map(|ratio| ratio.ours).collect());
            let theirs = median(ratios.iter().map(|ratio| ratio.theirs).collect());
            println!(
                "{name:<46} {baseline:<24} {ours:>10.1?} {theirs:>10.1?}   {:.2}  {:.2}  {:.2}",
                values[0],
                values[values.len() / 2],
                values[values.len() - 1],
            );
        }
    }
}
