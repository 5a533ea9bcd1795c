//! A [`Timeline`] as a Chrome trace event file (the JSON object format), which
//! Perfetto (<https://ui.perfetto.dev>) and `chrome://tracing` load.
//!
//! - The caller's process has one track per thread that ran tasks (tokio workers,
//!   blocking threads, rayon threads, the caller's own), with a slice per poll (an
//!   async task) or run (blocking, cpu); an async poll longer than the blocking
//!   detector's threshold is named `... (blocked its thread)`.
//! - Each worker process is a process of its own (its pid), with a slice per task it
//!   ran, timed by the worker on the machine's one monotonic clock.
//! - Each task call is an async track of its own (its call number as the id, so
//!   concurrent calls never merge): the call's whole span, and inside it each wait
//!   (for its `limit`, in the queue before an attempt ran, a backoff before a retry)
//!   apart from each attempt's run, named with its outcome (`attempt 2: crashed`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::path::Path;

use serde_json::{Value, json};

use super::record::{AttemptRecord, Timeline, Waited};
use crate::kind::TaskKind;

impl Timeline {
    /// The timeline as a Chrome trace event file: load it in Perfetto
    /// (<https://ui.perfetto.dev>) or `chrome://tracing`. See [`Recording`](super::Recording).
    pub fn to_chrome_trace(&self) -> String {
        let mut events: Vec<Value> = Vec::new();
        let pid = self.pid;
        let us = |at: u64| at.saturating_sub(self.started) as f64 / 1e3;
        let dur = |from: u64, to: u64| to.saturating_sub(from) as f64 / 1e3;
        let by_attempt: BTreeMap<(u64, u32), &AttemptRecord> = self
            .attempts
            .iter()
            .map(|attempt| ((attempt.call, attempt.attempt), attempt))
            .collect();

        events.push(metadata(
            "process_name",
            pid,
            None,
            &format!("caller (pid {pid})"),
        ));
        events.push(json!({"ph": "M", "name": "process_sort_index", "pid": pid,
                           "args": {"sort_index": 0}}));
        let threads: BTreeSet<u32> = self.slices.iter().map(|slice| slice.thread).collect();
        for thread in threads {
            let name = self
                .threads
                .get(thread as usize - 1)
                .map_or("thread", String::as_str);
            events.push(metadata(
                "thread_name",
                pid,
                Some(thread),
                &format!("{name} #{thread}"),
            ));
        }

        let threshold = super::detector::threshold_nanos();
        for slice in &self.slices {
            let attempt = by_attempt.get(&(slice.call, slice.attempt));
            let name = attempt.map_or("task", |attempt| attempt.task);
            let blocked = slice.placement == TaskKind::AsyncIo
                && threshold != 0
                && slice.end.saturating_sub(slice.start) > threshold;
            let name = if blocked {
                format!("{name} (blocked its thread)")
            } else {
                name.to_owned()
            };
            events.push(json!({
                "ph": "X", "pid": pid, "tid": slice.thread,
                "name": name, "cat": slice.placement.executor(),
                "ts": us(slice.start), "dur": dur(slice.start, slice.end),
                "args": {
                    "call": slice.call, "attempt": slice.attempt,
                    "call_site": attempt.map(|attempt| attempt.call_site.as_str()),
                    "outcome": attempt.map(|attempt| attempt.outcome),
                    "blocked": blocked,
                },
            }));
        }

        let mut workers = BTreeSet::new();
        for attempt in &self.attempts {
            let Some(worker) = attempt.worker else {
                continue;
            };
            if workers.insert(worker.pid) {
                let label = format!("worker process {}", worker.pid);
                events.push(metadata("process_name", worker.pid, None, &label));
                events.push(
                    json!({"ph": "M", "name": "process_sort_index", "pid": worker.pid,
                                   "args": {"sort_index": 1}}),
                );
                events.push(metadata(
                    "thread_name",
                    worker.pid,
                    Some(worker.pid),
                    &label,
                ));
            }
            // A crash leaves no worker-side times: the caller's are shown.
            let (from, to, times) = if worker.started != 0 {
                (worker.started, worker.ended, "the worker's")
            } else {
                (
                    attempt.at[0],
                    attempt.at[2],
                    "the caller's (the worker died)",
                )
            };
            events.push(json!({
                "ph": "X", "pid": worker.pid, "tid": worker.pid,
                "name": attempt_name(attempt), "cat": TaskKind::Process.executor(),
                "ts": us(from), "dur": dur(from, to),
                "args": {
                    "call": attempt.call, "attempt": attempt.attempt,
                    "call_site": attempt.call_site, "outcome": attempt.outcome,
                    "error": attempt.error, "times": times,
                },
            }));
        }

        self.call_tracks(&mut events, &us);
        let trace = json!({
            "traceEvents": events,
            "displayTimeUnit": "ms",
            "otherData": {
                "producer": "concurrency-runtime",
                "dropped_events": self.dropped,
            },
        });
        trace.to_string()
    }

    /// Writes [`to_chrome_trace`](Timeline::to_chrome_trace) to `path`.
    pub fn write_chrome_trace(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let mut file = io::BufWriter::new(std::fs::File::create(path)?);
        file.write_all(self.to_chrome_trace().as_bytes())?;
        file.flush()
    }

    /// One async track per call: its span, its waits and its attempts' runs.
    fn call_tracks(&self, events: &mut Vec<Value>, us: &dyn Fn(u64) -> f64) {
        // (start, end, name, args) of each piece of a call.
        type Piece = (u64, u64, String, Value);
        let mut calls: BTreeMap<u64, (&'static str, Vec<Piece>)> = BTreeMap::new();
        for attempt in &self.attempts {
            let [created, started, ended] = attempt.at;
            let pieces = &mut calls
                .entry(attempt.call)
                .or_insert((attempt.task, Vec::new()))
                .1;
            let ran = if started == 0 { ended } else { started };
            if ran > created {
                pieces.push((
                    created,
                    ran,
                    format!("queued (attempt {})", attempt.attempt),
                    json!({"wait": "queue"}),
                ));
            }
            pieces.push((
                ran,
                ended.max(ran),
                attempt_name(attempt),
                json!({
                    "attempt": attempt.attempt, "outcome": attempt.outcome,
                    "error": attempt.error, "call_site": attempt.call_site,
                    "placement": attempt.placement.executor(),
                    "worker_pid": attempt.worker.map(|worker| worker.pid),
                }),
            ));
        }
        for wait in &self.waits {
            if let Some((_, pieces)) = calls.get_mut(&wait.call) {
                let (name, what) = match wait.what {
                    Waited::Limit => ("waiting for its limit", "limit"),
                    Waited::Backoff => ("backoff before a retry", "backoff"),
                };
                pieces.push((wait.start, wait.end, name.to_owned(), json!({"wait": what})));
            }
        }
        for (call, (task, mut pieces)) in calls {
            pieces.sort_by_key(|piece| (piece.0, piece.1));
            let (Some(first), Some(last)) = (
                pieces.iter().map(|piece| piece.0).min(),
                pieces.iter().map(|piece| piece.1).max(),
            ) else {
                continue;
            };
            let id = format!("{call:#x}");
            let pid = self.pid;
            events.push(
                json!({"ph": "b", "cat": "call", "id": id, "pid": pid, "tid": 0,
                               "name": task, "ts": us(first), "args": {"call": call}}),
            );
            for (start, end, name, args) in pieces {
                events.push(
                    json!({"ph": "b", "cat": "call", "id": id, "pid": pid, "tid": 0,
                                   "name": name, "ts": us(start), "args": args}),
                );
                events.push(
                    json!({"ph": "e", "cat": "call", "id": id, "pid": pid, "tid": 0,
                                   "name": name, "ts": us(end)}),
                );
            }
            events.push(
                json!({"ph": "e", "cat": "call", "id": id, "pid": pid, "tid": 0,
                               "name": task, "ts": us(last)}),
            );
        }
    }
}

/// `attempt N: outcome`, with the task's name.
fn attempt_name(attempt: &AttemptRecord) -> String {
    format!(
        "{} attempt {}: {}",
        attempt.task, attempt.attempt, attempt.outcome
    )
}

fn metadata(kind: &str, pid: u32, tid: Option<u32>, name: &str) -> Value {
    match tid {
        Some(tid) => {
            json!({"ph": "M", "name": kind, "pid": pid, "tid": tid, "args": {"name": name}})
        }
        None => json!({"ph": "M", "name": kind, "pid": pid, "args": {"name": name}}),
    }
}
