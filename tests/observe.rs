//! The blocking detector (feature `tracing`): a poll that blocks its executor thread
//! is reported once per call site, with the task's name and call site; ordinary
//! tasks are not reported.

mod support;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use concurrency_runtime::{cpu_task, io_task, observe, run_concurrently};
use support::watchdog;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// The warnings of the detector, as `(task, call site, message)`.
static REPORTS: Mutex<Vec<(String, String, String)>> = Mutex::new(Vec::new());

/// A span as the recorder saw it: its name, fields and parent.
#[derive(Debug, Clone)]
struct SpanRecord {
    name: String,
    fields: HashMap<String, String>,
    parent: Option<u64>,
    metadata: &'static Metadata<'static>,
}

/// Every span, by id; and each event's message with the span it happened in.
static SPANS: Mutex<Vec<SpanRecord>> = Mutex::new(Vec::new());
static EVENTS: Mutex<Vec<(String, Option<u64>)>> = Mutex::new(Vec::new());

thread_local! {
    /// The spans entered on this thread, innermost last.
    static ENTERED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// A subscriber that keeps spans and events (a real `tracing` subscriber, installed
/// for the whole test binary).
struct Recorder;

/// The fields of a span, an event or a record, as text.
#[derive(Default)]
struct Fields(HashMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

fn current() -> Option<u64> {
    ENTERED.with(|entered| entered.borrow().last().copied())
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attributes: &Attributes<'_>) -> Id {
        let mut fields = Fields::default();
        attributes.record(&mut fields);
        let parent = if let Some(parent) = attributes.parent() {
            Some(parent.into_u64())
        } else if attributes.is_contextual() {
            current()
        } else {
            None
        };
        let mut spans = SPANS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        spans.push(SpanRecord {
            name: attributes.metadata().name().to_owned(),
            fields: fields.0,
            parent,
            metadata: attributes.metadata(),
        });
        Id::from_u64(spans.len() as u64)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut fields = Fields::default();
        values.record(&mut fields);
        let mut spans = SPANS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(record) = spans.get_mut(span.into_u64() as usize - 1) {
            record.fields.extend(fields.0);
        }
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if event.metadata().target() != "concurrency_runtime::blocking" {
            let message = fields.0.remove("message").unwrap_or_default();
            EVENTS
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push((message, current()));
            return;
        }
        let mut fields = fields.0;
        let mut take = |name: &str| fields.remove(name).unwrap_or_default();
        let (task, call_site, message) = (take("task"), take("call_site"), take("message"));
        REPORTS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((task, call_site, message));
    }

    fn enter(&self, span: &Id) {
        ENTERED.with(|entered| entered.borrow_mut().push(span.into_u64()));
    }

    fn exit(&self, span: &Id) {
        ENTERED.with(|entered| {
            let mut entered = entered.borrow_mut();
            if let Some(at) = entered.iter().rposition(|id| *id == span.into_u64()) {
                entered.remove(at);
            }
        });
    }

    fn current_span(&self) -> tracing_core::span::Current {
        let Some(id) = current() else {
            return tracing_core::span::Current::none();
        };
        let spans = SPANS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match spans.get(id as usize - 1) {
            Some(record) => tracing_core::span::Current::new(Id::from_u64(id), record.metadata),
            None => tracing_core::span::Current::none(),
        }
    }
}

fn setup() -> std::sync::MutexGuard<'static, ()> {
    static SETUP: std::sync::Once = std::sync::Once::new();
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    SETUP.call_once(|| {
        tracing::subscriber::set_global_default(Recorder).expect("the only subscriber");
    });
    let guard = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    REPORTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clear();
    guard
}

fn reports() -> Vec<(String, String, String)> {
    REPORTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

#[io_task]
async fn sleeps_in_async(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms)); // the mistake the detector finds
    ms
}

#[io_task]
async fn well_behaved(n: u64) -> u64 {
    tokio::task::yield_now().await;
    n
}

#[test]
fn a_blocking_sleep_in_an_async_task_is_reported_once_per_call_site_with_its_name_and_line() {
    let _setup = setup();
    observe::set_blocking_threshold(Duration::from_millis(1));
    let line = line!() + 4;
    watchdog(|| {
        for _ in 0..3 {
            // One call site, three calls: one report.
            assert_eq!(run_concurrently!(sleeps_in_async(5)), 5);
        }
    });
    let first = reports();
    assert_eq!(first.len(), 1, "{first:?}");
    let (task, call_site, message) = &first[0];
    assert_eq!(task, "sleeps_in_async");
    assert!(
        call_site.ends_with(&format!("observe.rs:{line}:42")),
        "call site {call_site}, expected line {line}"
    );
    assert!(message.contains("blocked its executor thread"), "{message}");
    assert!(message.contains("#[io_task] fn"), "{message}");
    // Another call site is reported on its own, also for a spawned (collection) task.
    watchdog(|| run_concurrently!(for (0..2).map(|_| sleeps_in_async(5))));
    assert_eq!(reports().len(), 2, "{:?}", reports());
    // A function passed by name has no call site of its own: once per task name.
    watchdog(|| run_concurrently!(for [5, 5].into_iter().map(sleeps_in_async)));
    watchdog(|| run_concurrently!(for [5].into_iter().map(sleeps_in_async)));
    let all = reports();
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(
        all[2].1.is_empty() && all[2].2.contains("`sleeps_in_async` blocked"),
        "{all:?}"
    );
}

#[test]
fn ten_thousand_ordinary_tasks_give_no_report_and_a_zero_threshold_turns_it_off() {
    let _setup = setup();
    // Their polls take microseconds; the margin is for a machine that is busy with
    // other work (the clock is the wall clock).
    observe::set_blocking_threshold(Duration::from_millis(50));
    let values = watchdog(|| run_concurrently!(for (0..10_000).map(well_behaved)));
    assert_eq!(values.len(), 10_000);
    assert!(reports().is_empty(), "{:?}", reports());
    observe::set_blocking_threshold(Duration::ZERO);
    watchdog(|| run_concurrently!(sleeps_in_async(20)));
    assert!(reports().is_empty(), "off: {:?}", reports());
    observe::set_blocking_threshold(Duration::from_millis(10));
}

// ---- spans ---------------------------------------------------------------------------

fn task_spans() -> Vec<SpanRecord> {
    SPANS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
        .filter(|span| span.name == "task")
        .cloned()
        .collect()
}

fn span_count() -> usize {
    SPANS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .len()
}

#[io_task]
async fn async_step(n: u64) -> u64 {
    tracing::info!("inside async_step");
    n + 1
}

#[io_task]
fn blocking_step(n: u64) -> u64 {
    tracing::info!("inside blocking_step");
    n + 2
}

#[cpu_task]
fn cpu_step(n: u64) -> u64 {
    tracing::info!("inside cpu_step");
    n + 3
}

#[cpu_task(process)]
fn process_step(n: u64) -> u64 {
    n + 4
}

#[test]
fn each_attempt_is_a_span_under_the_caller_s_span_with_its_fields_and_outcome() {
    let _setup = setup();
    let before = span_count();
    let first_line = line!();
    let values = watchdog(|| {
        let user = tracing::info_span!("user_work");
        let _entered = user.enter();
        run_concurrently!(
            async_step(0),
            blocking_step(0),
            cpu_step(0),
            process_step(0)
        )
    });
    let last_line = line!();
    assert_eq!(values, (1, 2, 3, 4));
    let spans = SPANS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    let user = spans[before..]
        .iter()
        .position(|span| span.name == "user_work")
        .map(|at| (before + at + 1) as u64)
        .expect("the user's span");
    for (task, placement) in [
        ("async_step", "tokio async task"),
        ("blocking_step", "tokio blocking thread"),
        ("cpu_step", "rayon pool"),
        ("process_step", "worker process"),
    ] {
        let (index, span) = spans
            .iter()
            .enumerate()
            .skip(before)
            .find(|(_, span)| {
                span.name == "task" && span.fields.get("task").map(String::as_str) == Some(task)
            })
            .unwrap_or_else(|| panic!("no span for {task}: {spans:?}"));
        let field = |name: &str| span.fields.get(name).cloned().unwrap_or_default();
        assert_eq!(
            span.parent,
            Some(user),
            "{task}'s span is under the caller's"
        );
        assert_eq!(field("placement"), placement);
        assert_eq!(field("attempt"), "1");
        let call_site = field("call_site");
        let called_at: u32 = call_site
            .strip_prefix("tests/observe.rs:")
            .and_then(|rest| rest.split(':').next())
            .and_then(|line| line.parse().ok())
            .unwrap_or_else(|| panic!("{task}: call site {call_site}"));
        assert!(
            (first_line..last_line).contains(&called_at),
            "{task}: call site {call_site}"
        );
        assert_eq!(field("outcome"), "ok", "{task}");
        assert!(field("wait_us").parse::<u64>().is_ok() && field("run_us").parse::<u64>().is_ok());
        // The body ran inside its attempt's span (the process task's runs in its worker).
        if task != "process_step" {
            let events = EVENTS
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let inside = events
                .iter()
                .find(|(message, _)| message == &format!("inside {task}"))
                .unwrap_or_else(|| panic!("no event from {task}: {events:?}"));
            assert_eq!(
                inside.1,
                Some(index as u64 + 1),
                "{task}'s body ran in its span"
            );
        }
    }
}

static TRIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[cpu_task(retries = 1)]
fn flaky_cpu(n: u64) -> u64 {
    if TRIES.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
        panic!("first try");
    }
    n
}

#[io_task(timeout = "20ms")]
async fn too_slow() -> u64 {
    tokio::time::sleep(Duration::from_secs(5)).await;
    0
}

#[test]
fn a_retry_is_a_second_attempt_and_failures_close_with_their_kind() {
    let _setup = setup();
    let before = task_spans().len();
    assert_eq!(watchdog(|| flaky_cpu(5).run()), 5);
    assert!(watchdog(|| too_slow().try_run()).is_err());
    let spans = task_spans()[before..].to_vec();
    let outcomes: Vec<(String, String, String)> = spans
        .iter()
        .map(|span| {
            let field = |name: &str| span.fields.get(name).cloned().unwrap_or_default();
            (field("task"), field("attempt"), field("outcome"))
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("flaky_cpu".into(), "1".into(), "panicked".into()),
            ("flaky_cpu".into(), "2".into(), "ok".into()),
            ("too_slow".into(), "1".into(), "timed out".into()),
        ],
        "{spans:?}"
    );
}

#[test]
fn a_collection_of_process_tasks_has_a_span_per_task() {
    let _setup = setup();
    let before = task_spans().len();
    let values = watchdog(|| run_concurrently!(for (0..5).map(|n| process_step(n))));
    assert_eq!(values, [4, 5, 6, 7, 8]);
    let spans = task_spans()[before..].to_vec();
    assert_eq!(spans.len(), 5, "{spans:?}");
    assert!(
        spans.iter().all(
            |span| span.fields.get("outcome").map(String::as_str) == Some("ok")
                && span.fields.get("placement").map(String::as_str) == Some("worker process")
        ),
        "{spans:?}"
    );
    // The worker's pid and its own timing of the body, reported with the answer.
    for span in &spans {
        let pid: u32 = span.fields["worker_pid"].parse().expect("a worker pid");
        assert!(pid != 0 && pid != std::process::id(), "{span:?}");
        let _: u64 = span.fields["worker_run_us"]
            .parse()
            .expect("the worker's run time");
    }
}

#[io_task]
async fn spawned_panic() -> u64 {
    panic!("a spawned async task panics")
}

#[test]
fn a_spawned_async_task_s_panic_closes_its_span_as_panicked() {
    let _setup = setup();
    let before = task_spans().len();
    // A collection's async tasks are spawned as tokio tasks of their own.
    let outcomes = watchdog(|| run_concurrently!(all; for (0..1).map(|_| spawned_panic())));
    assert!(outcomes[0].is_err());
    let spans = task_spans()[before..].to_vec();
    let span = spans
        .iter()
        .find(|span| span.fields.get("task").map(String::as_str) == Some("spawned_panic"))
        .unwrap_or_else(|| panic!("no span: {spans:?}"));
    assert_eq!(span.fields["outcome"], "panicked", "{span:?}");
}

#[cpu_task(process)]
fn process_crash() -> u64 {
    std::process::abort()
}

#[test]
fn a_crashed_worker_closes_its_task_s_span_with_the_crash_and_the_worker_s_pid() {
    let _setup = setup();
    let before = task_spans().len();
    let error = watchdog(|| process_crash().try_run()).expect_err("the worker crashes");
    let concurrency_runtime::TaskErrorKind::Crashed { pid, .. } = *error.kind() else {
        panic!("{error}");
    };
    let spans = task_spans()[before..].to_vec();
    let span = spans
        .iter()
        .find(|span| span.fields.get("task").map(String::as_str) == Some("process_crash"))
        .unwrap_or_else(|| panic!("no span: {spans:?}"));
    assert_eq!(span.fields["outcome"], "crashed");
    assert_eq!(span.fields["worker_pid"], pid.to_string());
    assert!(
        !span.fields.contains_key("worker_run_us"),
        "the worker never answered"
    );
}
