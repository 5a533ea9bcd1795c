//! A recording of a run (feature `tracing`): the Chrome trace file, parsed back, has a
//! track per thread and per worker process and a slice per attempt; retries,
//! timeouts, crashes and waits are marked; the HTML report holds the timeline and the
//! table per function.
//!
//! Recordings see every task of the process, and the tests of this file run in
//! parallel: each looks only at its own task functions.

// Reading a parsed trace: a missing field fails the test at that line, which says why.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use concurrency_runtime::observe::{Recording, Timeline};
use concurrency_runtime::{TaskErrorKind, TaskKind, cpu_task, io_task, run_concurrently};
use serde_json::Value;
use support::watchdog;

#[io_task]
async fn tl_async(n: u64) -> u64 {
    // Two polls at least: the task gives way once.
    tokio::task::yield_now().await;
    n
}

#[io_task]
fn tl_blocking(n: u64) -> u64 {
    n + 1
}

#[cpu_task]
fn tl_cpu(n: u64) -> u64 {
    n * 2
}

#[cpu_task(process)]
fn tl_process(n: u64) -> (u64, u32) {
    (n, std::process::id())
}

/// The trace's events, parsed back from the file.
fn trace_events(timeline: &Timeline, file: &str) -> Vec<Value> {
    let path = std::env::temp_dir().join(format!("{file}-{}.json", std::process::id()));
    timeline.write_chrome_trace(&path).expect("write the trace");
    let text = std::fs::read_to_string(&path).expect("read the trace back");
    let _ = std::fs::remove_file(&path);
    let trace: Value = serde_json::from_str(&text).expect("the trace is JSON");
    trace["traceEvents"]
        .as_array()
        .expect("a traceEvents array")
        .clone()
}

fn is(event: &Value, ph: &str) -> bool {
    event["ph"] == ph
}

/// The name of one of our tasks a slice belongs to, if it is one of `names`.
fn task_of<'a>(event: &'a Value, names: &[&str]) -> Option<&'a str> {
    let name = event["name"].as_str()?;
    names
        .iter()
        .copied()
        .find(|task| name == *task)
        .map(|_| name)
}

#[test]
fn a_trace_has_a_track_per_thread_and_worker_and_a_slice_per_attempt() {
    let recording = Recording::start();
    let (a, b, c, d, e, f, g, h) = watchdog(|| {
        run_concurrently!(
            tl_async(1),
            tl_async(2),
            tl_blocking(3),
            tl_blocking(4),
            tl_cpu(5),
            tl_cpu(6),
            tl_process(7),
            tl_process(8),
        )
    });
    let timeline = recording.finish();
    assert_eq!((a, b, c, d, e, f), (1, 2, 4, 5, 10, 12));
    let worker_pids: BTreeSet<u32> = [g.1, h.1].into();
    assert!(!worker_pids.contains(&std::process::id()));

    let names = ["tl_async", "tl_blocking", "tl_cpu", "tl_process"];
    let mine: Vec<_> = timeline
        .attempts()
        .into_iter()
        .filter(|attempt| names.contains(&attempt.task))
        .collect();
    assert_eq!(mine.len(), 8, "{mine:#?}");
    assert!(
        mine.iter()
            .all(|attempt| attempt.is_ok() && attempt.attempt == 1)
    );

    let events = trace_events(&timeline, "tracks");
    let caller = std::process::id();
    // One named track per thread that ran a slice, in the caller's process.
    let named_threads: BTreeSet<(u64, u64)> = events
        .iter()
        .filter(|event| is(event, "M") && event["name"] == "thread_name")
        .map(|event| {
            (
                event["pid"].as_u64().unwrap(),
                event["tid"].as_u64().unwrap(),
            )
        })
        .collect();
    let slices: Vec<&Value> = events.iter().filter(|event| is(event, "X")).collect();
    for slice in &slices {
        let track = (
            slice["pid"].as_u64().unwrap(),
            slice["tid"].as_u64().unwrap(),
        );
        assert!(
            named_threads.contains(&track),
            "slice on an unnamed track: {slice}"
        );
    }

    // Blocking and cpu tasks: exactly one slice each, on a thread of the caller.
    for task in ["tl_blocking", "tl_cpu"] {
        let on_threads: Vec<&&Value> = slices
            .iter()
            .filter(|slice| task_of(slice, &[task]).is_some())
            .collect();
        assert_eq!(on_threads.len(), 2, "{task}: {on_threads:?}");
        assert!(on_threads.iter().all(|slice| slice["pid"] == caller));
        let calls: BTreeSet<u64> = on_threads
            .iter()
            .map(|slice| slice["args"]["call"].as_u64().unwrap())
            .collect();
        assert_eq!(calls.len(), 2, "one slice per call of {task}");
    }
    // The rayon tasks ran on rayon threads, the blocking ones on tokio's.
    let thread_name = |slice: &Value| {
        let track = (slice["pid"].clone(), slice["tid"].clone());
        events
            .iter()
            .find(|event| {
                is(event, "M")
                    && event["name"] == "thread_name"
                    && (event["pid"].clone(), event["tid"].clone()) == track
            })
            .map(|event| event["args"]["name"].as_str().unwrap().to_owned())
            .unwrap()
    };
    for slice in slices
        .iter()
        .filter(|slice| task_of(slice, &["tl_cpu"]).is_some())
    {
        assert!(
            thread_name(slice).starts_with("rayon"),
            "{}",
            thread_name(slice)
        );
    }

    // Async tasks: a slice per poll (at least two each), each on a caller thread.
    let polls = slices
        .iter()
        .filter(|slice| task_of(slice, &["tl_async"]).is_some())
        .count();
    assert!(polls >= 4, "{polls} polls of two tasks that yield once");

    // Process tasks: a slice per task on the track of the worker that ran it, which
    // is a process of its own, named.
    let process_slices: Vec<&&Value> = slices
        .iter()
        .filter(|slice| {
            slice["name"]
                .as_str()
                .unwrap_or("")
                .starts_with("tl_process attempt 1")
        })
        .collect();
    assert_eq!(process_slices.len(), 2, "{process_slices:?}");
    let slice_pids: BTreeSet<u32> = process_slices
        .iter()
        .map(|slice| slice["pid"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(slice_pids, worker_pids, "each on its worker's own track");
    for pid in &worker_pids {
        assert!(events.iter().any(|event| is(event, "M")
            && event["name"] == "process_name"
            && event["pid"] == *pid));
    }
    // A worker's run lies inside its call, on the caller's clock.
    for attempt in mine
        .iter()
        .filter(|attempt| attempt.placement == TaskKind::Process)
    {
        let worker = attempt.worker.expect("a process attempt knows its worker");
        assert!(worker_pids.contains(&worker.pid));
        let run = worker.run().expect("the worker timed the body");
        assert!(run <= attempt.ended - attempt.created, "{attempt:?}");
        assert!(
            attempt
                .started
                .is_some_and(|started| started >= attempt.created)
        );
    }

    // Every call is an async track of its own, with exactly one run per attempt.
    let mut runs: BTreeMap<String, usize> = BTreeMap::new();
    let mut outer: BTreeSet<String> = BTreeSet::new();
    for event in events.iter().filter(|event| is(event, "b")) {
        let name = event["name"].as_str().unwrap();
        let id = event["id"].as_str().unwrap().to_owned();
        if names.contains(&name) {
            assert!(outer.insert(id), "one outer span per call");
        } else if names
            .iter()
            .any(|task| name.starts_with(&format!("{task} attempt ")))
        {
            *runs.entry(id).or_default() += 1;
        }
    }
    let my_calls: BTreeSet<String> = mine
        .iter()
        .map(|attempt| format!("{:#x}", attempt.call))
        .collect();
    assert_eq!(my_calls.len(), 8, "eight calls, each with its own number");
    for call in &my_calls {
        assert!(outer.contains(call), "call {call} has its own track");
        assert_eq!(runs.get(call), Some(&1), "call {call}: one run per attempt");
    }
    // Every "b" has its "e".
    let begins = events.iter().filter(|event| is(event, "b")).count();
    let ends = events.iter().filter(|event| is(event, "e")).count();
    assert_eq!(begins, ends);
}

static FLAKY: AtomicUsize = AtomicUsize::new(0);

#[io_task(retries = 1, backoff = "5ms")]
fn tl_flaky() -> u64 {
    if FLAKY.fetch_add(1, Ordering::SeqCst) == 0 {
        panic!("the first attempt fails");
    }
    7
}

#[io_task(timeout = "30ms")]
async fn tl_too_slow() -> u64 {
    tokio::time::sleep(Duration::from_secs(30)).await;
    0
}

#[cpu_task(process)]
fn tl_crash() -> u64 {
    std::process::abort()
}

#[io_task(limit = 1)]
async fn tl_limited(n: u64) -> u64 {
    // Holds the only permit across a yield: the others wait for it.
    tokio::task::yield_now().await;
    n
}

#[test]
fn retries_timeouts_crashes_and_waits_are_marked() {
    let recording = Recording::start();
    let (flaky, slow, crash) =
        watchdog(|| run_concurrently!(all; tl_flaky(), tl_too_slow(), tl_crash()));
    assert_eq!(flaky.expect("the retry succeeds"), 7);
    assert!(matches!(
        slow.unwrap_err().kind(),
        TaskErrorKind::TimedOut { .. }
    ));
    let crash = crash.unwrap_err();
    let TaskErrorKind::Crashed { pid, .. } = *crash.kind() else {
        panic!("{crash}");
    };
    let limited = watchdog(|| run_concurrently!(for (0..3).map(tl_limited)));
    assert_eq!(limited, [0, 1, 2]);
    let timeline = recording.finish();

    let attempts = timeline.attempts();
    let outcome = |task: &str| -> Vec<(u32, &'static str)> {
        attempts
            .iter()
            .filter(|attempt| attempt.task == task)
            .map(|attempt| (attempt.attempt, attempt.outcome))
            .collect()
    };
    assert_eq!(outcome("tl_flaky"), [(1, "panicked"), (2, "ok")]);
    assert_eq!(outcome("tl_too_slow"), [(1, "timed out")]);
    assert_eq!(outcome("tl_crash"), [(1, "crashed")]);
    let crashed = attempts
        .iter()
        .find(|attempt| attempt.task == "tl_crash")
        .unwrap();
    assert_eq!(crashed.worker.map(|worker| worker.pid), Some(pid));
    assert!(
        crashed
            .error
            .as_deref()
            .is_some_and(|error| error.contains("crashed"))
    );

    let events = trace_events(&timeline, "marks");
    let names: Vec<&str> = events
        .iter()
        .filter(|event| is(event, "b"))
        .filter_map(|event| event["name"].as_str())
        .collect();
    for expected in [
        "tl_flaky attempt 1: panicked",
        "tl_flaky attempt 2: ok",
        "tl_too_slow attempt 1: timed out",
        "tl_crash attempt 1: crashed",
        "backoff before a retry",
        "waiting for its limit",
    ] {
        assert!(names.contains(&expected), "no `{expected}` in {names:?}");
    }
    // The backoff is in the flaky task's own track, between its two attempts.
    let flaky_call = attempts
        .iter()
        .find(|attempt| attempt.task == "tl_flaky")
        .unwrap()
        .call;
    let id = format!("{flaky_call:#x}");
    let in_track = |name: &str| {
        events
            .iter()
            .find(|event| is(event, "b") && event["id"] == id.as_str() && event["name"] == name)
            .and_then(|event| event["ts"].as_f64())
    };
    let (first, backoff, second) = (
        in_track("tl_flaky attempt 1: panicked").unwrap(),
        in_track("backoff before a retry").expect("the backoff is on the call's track"),
        in_track("tl_flaky attempt 2: ok").unwrap(),
    );
    assert!(first <= backoff && backoff <= second);
    // The crash is drawn on the worker's track.
    assert!(events.iter().any(|event| is(event, "X")
        && event["pid"] == pid
        && event["name"] == "tl_crash attempt 1: crashed"));

    // The report: the timeline, and a row per function with its counts.
    let html = timeline.to_html_report();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains(r#"<svg id="timeline""#));
    assert!(!html.contains("<script"), "self-contained, no script");
    assert!(
        !html.contains(" src=") && !html.contains("href="),
        "nothing outside the file"
    );
    let row = |task: &str| {
        html.lines()
            .find(|line| line.starts_with(&format!("<tr><td>{task}</td>")))
            .unwrap_or_else(|| panic!("no row for {task}"))
            .to_owned()
    };
    // calls, attempts, failures
    assert!(
        row("tl_flaky").contains("<td>1</td><td>2</td><td>1</td>"),
        "{}",
        row("tl_flaky")
    );
    assert!(
        row("tl_crash").contains("<td>1</td><td>1</td><td>1</td>"),
        "{}",
        row("tl_crash")
    );
    assert!(
        row("tl_limited").contains("<td>3</td><td>3</td><td>0</td>"),
        "{}",
        row("tl_limited")
    );
    let functions = timeline.functions();
    let flaky = functions
        .iter()
        .find(|function| function.task == "tl_flaky")
        .unwrap();
    assert_eq!((flaky.calls, flaky.attempts, flaky.failures), (1, 2, 1));
}

#[io_task]
fn tl_before() {}

#[io_task]
fn tl_during() {}

#[io_task]
fn tl_after() {}

#[test]
fn overlapping_recordings_each_see_what_ran_while_they_were_open() {
    let outer = Recording::start();
    watchdog(|| tl_before().run());
    let inner = Recording::start();
    watchdog(|| tl_during().run());
    let inner = inner.finish();
    watchdog(|| tl_after().run());
    let outer = outer.finish();
    let tasks = |timeline: &Timeline| -> Vec<&'static str> {
        timeline
            .attempts()
            .iter()
            .map(|attempt| attempt.task)
            .filter(|task| {
                task.starts_with("tl_") && ["tl_before", "tl_during", "tl_after"].contains(task)
            })
            .collect()
    };
    assert_eq!(tasks(&inner), ["tl_during"]);
    assert_eq!(tasks(&outer), ["tl_before", "tl_during", "tl_after"]);
    assert!(inner.duration() <= outer.duration());
}
