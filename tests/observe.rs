//! The blocking detector (feature `tracing`): a poll that blocks its executor thread
//! is reported once per call site, with the task's name and call site; ordinary
//! tasks are not reported.

mod support;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use concurrency_runtime::{io_task, observe, run_concurrently};
use support::watchdog;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// The warnings of the detector, as `(task, call site, message)`.
static REPORTS: Mutex<Vec<(String, String, String)>> = Mutex::new(Vec::new());

/// A subscriber that keeps the detector's events (a real `tracing` subscriber,
/// installed for the whole test binary).
struct Recorder;

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Id::from_u64(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        if event.metadata().target() != "concurrency_runtime::blocking" {
            return;
        }
        #[derive(Default)]
        struct Fields {
            task: String,
            call_site: String,
            message: String,
        }
        impl Visit for Fields {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                let text = format!("{value:?}");
                match field.name() {
                    "task" => self.task = text.trim_matches('"').to_owned(),
                    "call_site" => self.call_site = text,
                    "message" => self.message = text,
                    _ => {}
                }
            }

            fn record_str(&mut self, field: &Field, value: &str) {
                if field.name() == "task" {
                    self.task = value.to_owned();
                }
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        REPORTS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((fields.task, fields.call_site, fields.message));
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
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
