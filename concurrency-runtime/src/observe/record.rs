//! Recording a run: while a [`Recording`] is open, every task attempt, each poll or
//! run of it (on the thread where it ran), its worker process's run, and the waits
//! of its call (for a `limit`, a backoff) are kept in memory; closing the recording
//! gives them as a [`Timeline`].

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use super::{Site, clock};
use crate::kind::TaskKind;

/// How many recordings are open.
static OPEN: AtomicUsize = AtomicUsize::new(0);
/// The last call number given.
static CALLS: AtomicU64 = AtomicU64::new(0);
static LOG: Mutex<Log> = Mutex::new(Log::new());

/// At most this many events are kept (about 100 bytes each); later ones are counted
/// as dropped, and the timeline says how many.
const MAX_EVENTS: usize = 2_000_000;

/// Whether a recording is open (one relaxed load).
#[inline(always)]
pub(crate) fn is_open() -> bool {
    OPEN.load(Ordering::Relaxed) != 0
}

/// A new call number (from 1).
pub(crate) fn next_call() -> u64 {
    CALLS.fetch_add(1, Ordering::Relaxed) + 1
}

/// A worker process's run of an attempt: its pid, and when it started and ended the
/// body, on the machine's monotonic clock as the worker read it (0: not known, as
/// for a crash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerRun {
    /// The worker's process id.
    pub pid: u32,
    pub(crate) started: u64,
    pub(crate) ended: u64,
}

/// One ended attempt, as `span.rs` reports it.
#[derive(Debug)]
pub(crate) struct AttemptEvent {
    pub(crate) call: u64,
    pub(crate) name: &'static str,
    pub(crate) placement: TaskKind,
    pub(crate) number: u32,
    pub(crate) site: Site,
    pub(crate) created: u64,
    pub(crate) started: Option<u64>,
    pub(crate) ended: u64,
    pub(crate) outcome: &'static str,
    pub(crate) error: Option<String>,
    pub(crate) worker: Option<WorkerRun>,
}

/// What a call waited for, apart from its attempts' own queueing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waited {
    Limit,
    Backoff,
}

#[derive(Debug)]
enum Event {
    Attempt(Box<AttemptEvent>),
    Slice(Slice),
    Wait(Wait),
    /// The supervision's verdict on attempt `number` (a deadline that passed).
    Mark {
        call: u64,
        number: u32,
        what: &'static str,
    },
}

struct Log {
    events: Vec<Event>,
    /// The absolute index of `events[0]` (events are dropped once no recording is
    /// open).
    base: u64,
    dropped: u64,
    /// Each thread seen, by its number in this log (from 1).
    threads: Vec<String>,
    /// Bumped when the log is emptied: threads register again.
    generation: u32,
}

impl Log {
    const fn new() -> Self {
        Log {
            events: Vec::new(),
            base: 0,
            dropped: 0,
            threads: Vec::new(),
            generation: 1,
        }
    }

    fn push(&mut self, event: Event) {
        if self.events.len() < MAX_EVENTS {
            self.events.push(event);
        } else {
            self.dropped += 1;
        }
    }

    /// This thread's number in the log.
    fn thread(&mut self) -> u32 {
        thread_local! {
            static THREAD: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
        }
        let (generation, number) = THREAD.get();
        if generation == self.generation {
            return number;
        }
        let current = std::thread::current();
        let name = match (current.name(), rayon::current_thread_index()) {
            (Some(name), _) => name.to_owned(),
            // Rayon's own threads have no name.
            (None, Some(index)) => format!("rayon thread {index}"),
            (None, None) => "unnamed thread".to_owned(),
        };
        self.threads.push(name);
        let number = self.threads.len() as u32;
        THREAD.set((self.generation, number));
        number
    }
}

fn log() -> std::sync::MutexGuard<'static, Log> {
    LOG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Records a poll or run of attempt `number` of `call`, on this thread.
pub(crate) fn slice(call: u64, number: u32, placement: TaskKind, start: u64, end: u64) {
    if !is_open() {
        return;
    }
    let mut log = log();
    let thread = log.thread();
    log.push(Event::Slice(Slice {
        call,
        attempt: number,
        placement,
        thread,
        start,
        end,
    }));
}

/// Records an ended attempt.
pub(crate) fn attempt(event: AttemptEvent) {
    if is_open() {
        log().push(Event::Attempt(Box::new(event)));
    }
}

/// Records that `call` waited for `what` from `start` until now.
pub(crate) fn waited(call: u64, what: Waited, start: u64) {
    if call != 0 && is_open() {
        let end = clock::now();
        log().push(Event::Wait(Wait {
            call,
            what,
            start,
            end,
        }));
    }
}

/// Records the supervision's verdict `what` on attempt `number` of `call`.
pub(crate) fn mark(call: u64, number: u32, what: &'static str) {
    if call != 0 && is_open() {
        log().push(Event::Mark { call, number, what });
    }
}

/// An open recording of the tasks this process runs: every attempt of every task
/// (async, blocking, cpu, process), each poll or run on the thread where it ran, a
/// process task's run on its worker, and a call's waits for its `limit` and between
/// retries. [`finish`](Recording::finish) closes it and gives the [`Timeline`], which
/// writes a Chrome trace file ([`Timeline::write_chrome_trace`], for Perfetto or
/// `chrome://tracing`) and a self-contained HTML report
/// ([`Timeline::write_html_report`]).
///
/// Recordings may overlap (each sees what ran while it was open, including tasks of
/// other threads); a task called before a recording opened is recorded from its next
/// attempt (an async task polled in place, not at all). Cost while open: a lock and an event per poll or run and per attempt
/// (about 100 bytes each, at most two million events, later ones counted as
/// dropped); nothing once every recording is closed.
///
/// ```
/// use concurrency_runtime::{cpu_task, io_task, observe::Recording, run_concurrently};
///
/// #[io_task]
/// async fn fetch(n: u64) -> u64 { n }
///
/// #[cpu_task]
/// fn crunch(n: u64) -> u64 { n * n }
///
/// let recording = Recording::start();
/// let (a, b) = run_concurrently!(fetch(2), crunch(3));
/// let timeline = recording.finish();
/// assert_eq!((a, b), (2, 9));
/// assert!(timeline.attempts().iter().any(|attempt| attempt.task == "crunch"));
/// let dir = std::env::temp_dir();
/// timeline.write_chrome_trace(dir.join("doc-trace.json")).unwrap();
/// timeline.write_html_report(dir.join("doc-report.html")).unwrap();
/// ```
#[derive(Debug)]
#[must_use = "a recording records until `finish` is called"]
pub struct Recording {
    /// The absolute index of its first event.
    from: u64,
    started: u64,
    finished: bool,
}

impl Recording {
    /// Opens a recording.
    pub fn start() -> Recording {
        let log = log();
        // Under the log's lock, as `close` empties it: the index stays valid.
        OPEN.fetch_add(1, Ordering::SeqCst);
        let from = log.base + log.events.len() as u64;
        drop(log);
        Recording {
            from,
            started: clock::now(),
            finished: false,
        }
    }

    /// Closes the recording: what ran while it was open.
    pub fn finish(mut self) -> Timeline {
        self.finished = true;
        let ended = clock::now();
        let mut log = log();
        let skip = usize::try_from(self.from.saturating_sub(log.base)).unwrap_or(usize::MAX);
        let mut timeline = Timeline {
            started: self.started,
            ended,
            pid: std::process::id(),
            attempts: Vec::new(),
            slices: Vec::new(),
            waits: Vec::new(),
            threads: log.threads.clone(),
            dropped: log.dropped,
        };
        let mut marks = Vec::new();
        for event in log.events.iter().skip(skip) {
            match event {
                Event::Attempt(event) => timeline.attempts.push(AttemptRecord::from(event)),
                Event::Slice(slice) => timeline.slices.push(slice.clone()),
                Event::Wait(wait) => timeline.waits.push(wait.clone()),
                Event::Mark { call, number, what } => marks.push((*call, *number, *what)),
            }
        }
        // A deadline's verdict wins over what the attempt saw of it (a blocking or
        // cpu body runs on after its deadline and ends "ok").
        for (call, number, what) in marks {
            if let Some(attempt) = timeline
                .attempts
                .iter_mut()
                .find(|attempt| attempt.call == call && attempt.attempt == number)
            {
                attempt.outcome = what;
            }
        }
        close(&mut log);
        timeline
    }
}

/// One recording fewer; the last one empties the log.
fn close(log: &mut Log) {
    if OPEN.fetch_sub(1, Ordering::SeqCst) == 1 {
        log.base += log.events.len() as u64;
        log.events = Vec::new();
        log.threads.clear();
        log.dropped = 0;
        log.generation = log.generation.wrapping_add(1).max(1);
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if !self.finished {
            close(&mut log());
        }
    }
}

/// One attempt of a task, as a recording saw it. Times are from the recording's
/// start.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AttemptRecord {
    /// The task's name.
    pub task: &'static str,
    /// Where it ran.
    pub placement: TaskKind,
    /// The call it belongs to (its attempts share it; numbered from 1 in the process).
    pub call: u64,
    /// The attempt's number (1, 2, ... with `retries`).
    pub attempt: u32,
    /// Where the task was called (`file:line:column`).
    pub call_site: String,
    /// How it ended: `ok`, `failed`, `panicked`, `timed out`, `cancelled`, `crashed`,
    /// ... (as the span's `outcome` field).
    pub outcome: &'static str,
    /// The error's message, for an attempt that failed.
    pub error: Option<String>,
    /// When it was started (queued, or waiting for a thread).
    pub created: Duration,
    /// When it first ran (`None`: it never did).
    pub started: Option<Duration>,
    /// When it ended.
    pub ended: Duration,
    /// For a process task: the worker that ran it (or crashed running it).
    pub worker: Option<WorkerRun>,
    // Absolute monotonic nanoseconds, for the writers.
    pub(crate) at: [u64; 3],
}

impl AttemptRecord {
    fn from(event: &AttemptEvent) -> Self {
        AttemptRecord {
            task: event.name,
            placement: event.placement,
            call: event.call,
            attempt: event.number,
            call_site: event.site.map_or_else(String::new, ToString::to_string),
            outcome: event.outcome,
            error: event.error.clone(),
            created: Duration::ZERO,
            started: None,
            ended: Duration::ZERO,
            worker: event.worker,
            at: [event.created, event.started.unwrap_or(0), event.ended],
        }
    }

    /// How long it waited before it ran (all of it, if it never ran).
    pub fn wait(&self) -> Duration {
        self.started
            .unwrap_or(self.ended)
            .saturating_sub(self.created)
    }

    /// How long it ran (zero if it never did).
    pub fn run(&self) -> Duration {
        self.started
            .map_or(Duration::ZERO, |started| self.ended.saturating_sub(started))
    }

    /// Whether it ended `ok`.
    pub fn is_ok(&self) -> bool {
        self.outcome == "ok"
    }
}

impl WorkerRun {
    /// How long the worker ran the body (`None`: not known, as for a crash).
    pub fn run(&self) -> Option<Duration> {
        (self.started != 0).then(|| Duration::from_nanos(self.ended.saturating_sub(self.started)))
    }
}

/// A poll or run of attempt `attempt` of `call`, on thread `thread`.
#[derive(Debug, Clone)]
pub(crate) struct Slice {
    pub(crate) call: u64,
    pub(crate) attempt: u32,
    pub(crate) placement: TaskKind,
    pub(crate) thread: u32,
    pub(crate) start: u64,
    pub(crate) end: u64,
}

/// A call's wait for its limit or between retries.
#[derive(Debug, Clone)]
pub(crate) struct Wait {
    pub(crate) call: u64,
    pub(crate) what: Waited,
    pub(crate) start: u64,
    pub(crate) end: u64,
}

/// What a [`Recording`] saw: the attempts, where and when each ran, and the waits.
///
/// README's example (`no_run` here only because it writes files to the working
/// directory; [`Recording`]'s example runs):
///
/// ```no_run
/// use concurrency_runtime::observe::Recording;
/// use concurrency_runtime::{cpu_task, io_task, run_concurrently};
///
/// #[io_task]
/// async fn fetch(n: u64) -> u64 { n }
///
/// #[cpu_task]
/// fn crunch(n: u64) -> u64 { n * n }
///
/// fn main() -> std::io::Result<()> {
///     let recording = Recording::start();
///     let (a, b) = run_concurrently!(fetch(2), crunch(3));
///     let timeline = recording.finish();
///     assert_eq!((a, b), (2, 9));
///     timeline.write_chrome_trace("trace.json")?;  // Perfetto (ui.perfetto.dev) or chrome://tracing
///     timeline.write_html_report("report.html")?;  // any browser, no network needed
///     for function in timeline.functions() {
///         println!("{}: {} calls, p99 run {:?}", function.task, function.calls, function.run_p99);
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Timeline {
    pub(crate) started: u64,
    pub(crate) ended: u64,
    pub(crate) pid: u32,
    pub(crate) attempts: Vec<AttemptRecord>,
    pub(crate) slices: Vec<Slice>,
    pub(crate) waits: Vec<Wait>,
    /// Thread names by number (from 1).
    pub(crate) threads: Vec<String>,
    pub(crate) dropped: u64,
}

/// One function's attempts in a [`Timeline`] (see [`Timeline::functions`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FunctionStats {
    /// The task's name.
    pub task: &'static str,
    /// Where it ran.
    pub placement: TaskKind,
    /// How many calls (each of one or more attempts).
    pub calls: usize,
    /// How many attempts.
    pub attempts: usize,
    /// How many attempts did not end `ok`.
    pub failures: usize,
    /// Median and 99th percentile of the attempts' waits before running.
    pub wait_p50: Duration,
    /// See `wait_p50`.
    pub wait_p99: Duration,
    /// Median and 99th percentile of the attempts' run times.
    pub run_p50: Duration,
    /// See `run_p50`.
    pub run_p99: Duration,
}

impl Timeline {
    /// The recording's length.
    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.ended.saturating_sub(self.started))
    }

    /// Every attempt that ended while the recording was open, in the order they
    /// ended, with times from the recording's start.
    pub fn attempts(&self) -> Vec<AttemptRecord> {
        let since = |at: u64| Duration::from_nanos(at.saturating_sub(self.started));
        self.attempts
            .iter()
            .map(|attempt| {
                let [created, started, ended] = attempt.at;
                AttemptRecord {
                    created: since(created),
                    started: (started != 0).then(|| since(started)),
                    ended: since(ended),
                    ..attempt.clone()
                }
            })
            .collect()
    }

    /// How many events were dropped because the recording held its maximum (two
    /// million); zero normally.
    pub fn dropped_events(&self) -> u64 {
        self.dropped
    }

    /// Per function (task name and placement), in order of first appearance: calls,
    /// attempts, failures, and the 50th and 99th percentiles of wait and run time.
    pub fn functions(&self) -> Vec<FunctionStats> {
        let attempts = self.attempts();
        let mut order: Vec<(&'static str, TaskKind)> = Vec::new();
        for attempt in &attempts {
            if !order.contains(&(attempt.task, attempt.placement)) {
                order.push((attempt.task, attempt.placement));
            }
        }
        order
            .into_iter()
            .map(|(task, placement)| {
                let mine: Vec<&AttemptRecord> = attempts
                    .iter()
                    .filter(|attempt| attempt.task == task && attempt.placement == placement)
                    .collect();
                let mut calls: Vec<u64> = mine.iter().map(|attempt| attempt.call).collect();
                calls.sort_unstable();
                calls.dedup();
                let mut waits: Vec<Duration> = mine.iter().map(|attempt| attempt.wait()).collect();
                let mut runs: Vec<Duration> = mine.iter().map(|attempt| attempt.run()).collect();
                FunctionStats {
                    task,
                    placement,
                    calls: calls.len(),
                    attempts: mine.len(),
                    failures: mine.iter().filter(|attempt| !attempt.is_ok()).count(),
                    wait_p50: percentile(&mut waits, 50),
                    wait_p99: percentile(&mut waits, 99),
                    run_p50: percentile(&mut runs, 50),
                    run_p99: percentile(&mut runs, 99),
                }
            })
            .collect()
    }
}

/// The `p`th percentile (nearest rank) of `values`.
fn percentile(values: &mut [Duration], p: usize) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    values.sort_unstable();
    let rank = (p * values.len()).div_ceil(100).max(1);
    values[rank.min(values.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_by_nearest_rank() {
        let mut values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&mut values, 50), Duration::from_millis(50));
        assert_eq!(percentile(&mut values, 99), Duration::from_millis(99));
        let mut one = [Duration::from_millis(7)];
        assert_eq!(percentile(&mut one, 99), Duration::from_millis(7));
        assert_eq!(percentile(&mut [], 50), Duration::ZERO);
    }
}
