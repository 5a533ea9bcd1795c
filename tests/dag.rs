//! `run_concurrently!(dag { ... })`: each node on its own executor, started once its
//! inputs are ready and not later (proved with recorded order and meetings, not
//! timing), values shared by clones, and failures by mode.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use concurrency_runtime::{
    TaskError, TaskErrorKind, TaskKind, cpu_task, io_task, run_concurrently,
};
use support::{expect_panic, watchdog};

/// Start and finish events, in the order they happened.
struct Log(Mutex<Vec<String>>);

impl Log {
    const fn new() -> Self {
        Log(Mutex::new(Vec::new()))
    }

    fn push(&self, event: String) {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(event);
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }
}

/// The position of `event` in `events`.
fn at(events: &[String], event: &str) -> usize {
    events
        .iter()
        .position(|seen| seen == event)
        .unwrap_or_else(|| panic!("no `{event}` in {events:?}"))
}

// ---- placement -------------------------------------------------------------------

#[io_task]
async fn fetch(n: u64) -> (String, Option<TaskKind>) {
    tokio::task::yield_now().await;
    (format!("page {n} has five words"), TaskKind::current())
}

#[cpu_task]
fn count_words(page: (String, Option<TaskKind>)) -> (usize, Option<TaskKind>, bool) {
    (
        page.0.split_whitespace().count(),
        TaskKind::current(),
        rayon::current_thread_index().is_some(),
    )
}

#[io_task]
fn store(page: (String, Option<TaskKind>)) -> (usize, Option<TaskKind>) {
    (page.0.len(), TaskKind::current())
}

#[cpu_task(process)]
fn digest(text: String) -> (u64, u32) {
    (text.bytes().map(u64::from).sum(), std::process::id())
}

#[test]
fn each_node_runs_on_the_executor_its_function_names() {
    let (page, words, stored, digested) = watchdog(|| {
        run_concurrently!(dag {
            let page = fetch(3);
            let words = count_words(page);
            let stored = store(page);
            let digested = digest(page.0.clone());
            (page, words, stored, digested)
        })
    });
    assert_eq!(page.1, Some(TaskKind::AsyncIo));
    assert_eq!((words.0, words.1, words.2), (5, Some(TaskKind::Cpu), true));
    assert_eq!(
        stored,
        ("page 3 has five words".len(), Some(TaskKind::BlockingIo))
    );
    assert_eq!(
        digested.0,
        "page 3 has five words".bytes().map(u64::from).sum::<u64>()
    );
    assert_ne!(
        digested.1,
        std::process::id(),
        "the process node ran in a worker"
    );
}

// ---- edges and earliest start ----------------------------------------------------

static ORDER: Log = Log::new();

#[io_task]
async fn step_async(name: &'static str, input: u64) -> u64 {
    ORDER.push(format!("start {name}"));
    tokio::task::yield_now().await;
    ORDER.push(format!("end {name}"));
    input + 1
}

#[cpu_task]
fn step_cpu(name: &'static str, left: u64, right: u64) -> u64 {
    ORDER.push(format!("start {name}"));
    ORDER.push(format!("end {name}"));
    left + right
}

#[io_task]
fn step_blocking(name: &'static str, input: u64) -> u64 {
    ORDER.push(format!("start {name}"));
    std::thread::yield_now();
    ORDER.push(format!("end {name}"));
    input * 2
}

#[test]
fn a_node_starts_only_after_every_node_it_uses_has_finished() {
    let _serial = serial();
    ORDER.take();
    let (chain, joined) = watchdog(|| {
        run_concurrently!(dag {
            // A chain of five, and a diamond over its first node.
            let a = step_async("a", 0);
            let b = step_blocking("b", a);
            let c = step_async("c", b);
            let d = step_blocking("d", c);
            let e = step_async("e", d);
            let left = step_async("left", a);
            let right = step_blocking("right", a);
            let joined = step_cpu("joined", left, right);
            (e, joined)
        })
    });
    // a = 1, b = 2, c = 3, d = 6, e = 7; left = 2, right = 2, joined = 4.
    assert_eq!((chain, joined), (7, 4));
    let events = ORDER.take();
    for (from, to) in [
        ("a", "b"),
        ("b", "c"),
        ("c", "d"),
        ("d", "e"),
        ("a", "left"),
        ("a", "right"),
        ("left", "joined"),
        ("right", "joined"),
    ] {
        assert!(
            at(&events, &format!("end {from}")) < at(&events, &format!("start {to}")),
            "`{to}` started before `{from}`, which it uses, ended: {events:?}"
        );
    }
}

/// A flag that one node raises and another waits for.
struct Signal {
    raised: Mutex<bool>,
    changed: Condvar,
}

static SIGNAL: Signal = Signal {
    raised: Mutex::new(false),
    changed: Condvar::new(),
};

#[io_task]
fn wait_for_signal(_: u64) -> bool {
    let raised = SIGNAL
        .raised
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (raised, _) = SIGNAL
        .changed
        .wait_timeout_while(raised, Duration::from_secs(20), |raised| !*raised)
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    *raised
}

#[io_task]
fn raise_signal(_: u64) -> bool {
    *SIGNAL
        .raised
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = true;
    SIGNAL.changed.notify_all();
    true
}

#[io_task]
async fn quick(n: u64) -> u64 {
    n + 1
}

#[test]
fn a_node_never_waits_for_a_sibling_it_does_not_use() {
    // `slow` runs until `raise` has run; `raise` uses only `fast`. If `raise` waited
    // for `slow` (a stage barrier), `slow` would give up after 20 s and say so.
    let (slow, raised) = watchdog(|| {
        run_concurrently!(dag {
            let source = quick(0);
            let slow = wait_for_signal(source);
            let fast = quick(source);
            let raised = raise_signal(fast);
            (slow, raised)
        })
    });
    assert!(raised);
    assert!(
        slow,
        "`raise_signal` started while `wait_for_signal`, its sibling, ran"
    );
}

// ---- values ------------------------------------------------------------------------

static CLONES: AtomicUsize = AtomicUsize::new(0);

/// Counts its clones.
#[derive(Debug, PartialEq, Eq)]
struct Counted(u64);

impl Clone for Counted {
    fn clone(&self) -> Self {
        CLONES.fetch_add(1, Ordering::SeqCst);
        Counted(self.0)
    }
}

#[io_task]
async fn make_counted(n: u64) -> Counted {
    Counted(n)
}

#[cpu_task]
fn read_counted(value: Counted) -> u64 {
    value.0
}

#[test]
fn a_binding_is_cloned_for_all_its_users_but_the_last_and_a_lone_user_gets_it_moved() {
    let _serial = serial();
    CLONES.store(0, Ordering::SeqCst);
    let (a, b, c, only) = watchdog(|| {
        run_concurrently!(dag {
            let shared = make_counted(5);
            let a = read_counted(shared);
            let b = read_counted(shared);
            let c = read_counted(shared);
            let alone = make_counted(9);
            let only = read_counted(alone);
            (a, b, c, only)
        })
    });
    assert_eq!((a, b, c, only), (5, 5, 5, 9));
    assert_eq!(CLONES.load(Ordering::SeqCst), 2, "three users: two clones");
}

#[test]
fn bindings_shadow_as_in_plain_code_and_outer_variables_are_borrowed_or_moved() {
    let offset = 10u64;
    let label = String::from("moved in");
    let (value, text) = watchdog(move || {
        run_concurrently!(dag {
            let value = quick(offset);
            let value = quick(value);
            let text = label_task(label, value);
            (value, text)
        })
    });
    assert_eq!(value, 12);
    assert_eq!(text, "moved in 12");
}

#[io_task]
async fn label_task(label: String, n: u64) -> String {
    format!("{label} {n}")
}

#[test]
fn a_single_binding_is_the_value_and_an_unused_node_still_runs() {
    let _serial = serial();
    ORDER.take();
    let value = watchdog(|| {
        run_concurrently!(dag {
            let first = step_async("first", 1);
            let _unused = step_blocking("unused", first);
            let last = step_async("last", first);
            last
        })
    });
    assert_eq!(value, 3);
    let events = ORDER.take();
    at(&events, "end unused");
}

// ---- collections -------------------------------------------------------------------

#[io_task]
async fn page_of(n: u64) -> u64 {
    tokio::task::yield_now().await;
    n * 10
}

#[cpu_task]
fn total(values: Vec<u64>) -> u64 {
    values.iter().sum()
}

#[test]
fn a_collection_node_gives_a_vec_in_order_to_the_nodes_that_use_it() {
    let ids = [1u64, 2, 3, 4];
    let (pages, sum) = watchdog(move || {
        run_concurrently!(dag {
            let pages = for ids.iter().copied().map(page_of);
            let doubled = for pages.iter().copied().map(page_of);
            let sum = total(doubled);
            (pages, sum)
        })
    });
    assert_eq!(pages, [10, 20, 30, 40]);
    assert_eq!(sum, 1000);
}

// ---- forms and callers -------------------------------------------------------------

#[test]
fn the_async_form_is_a_future_awaited_in_a_tokio_task() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (words, stored) = watchdog(move || {
        runtime.block_on(async {
            tokio::spawn(async {
                run_concurrently!(async; dag {
                    let page = fetch(1);
                    let words = count_words(page);
                    let stored = store(page);
                    (words.0, stored.0)
                })
                .await
            })
            .await
            .expect("the spawned task")
        })
    });
    assert_eq!((words, stored), (5, "page 1 has five words".len()));
}

#[test]
fn the_sync_form_works_under_a_current_thread_runtime_and_inside_a_task() {
    let _serial = serial();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let inside = watchdog(move || {
        runtime.block_on(async {
            run_concurrently!(dag {
                let a = quick(1);
                let b = step_cpu("sum", a, a);
                b
            })
        })
    });
    assert_eq!(inside, 4);
    assert_eq!(watchdog(|| nested_dag(5).run()), 7);
}

/// A cpu task whose body is a dag: it runs on a rayon thread.
#[cpu_task]
fn nested_dag(n: u64) -> u64 {
    run_concurrently!(dag {
        let a = quick(n);
        let b = quick(a);
        b
    })
}

// ---- failures ----------------------------------------------------------------------

#[io_task]
async fn boom(n: u64) -> u64 {
    if n > 0 {
        panic!("boom {n}");
    }
    n
}

#[io_task]
fn fallible(n: u64) -> Result<u64, String> {
    if n == 0 {
        Err("zero".to_owned())
    } else {
        Ok(n)
    }
}

#[test]
fn the_plain_form_panics_with_the_failure_and_nothing_below_it_runs() {
    let _serial = serial();
    ORDER.take();
    let message = expect_panic(|| {
        watchdog(|| {
            let value: u64 = run_concurrently!(dag {
                let bad = boom(1);
                let after = step_async("after", bad);
                after
            });
            value
        });
    });
    assert!(
        message.contains("task `boom` panicked: boom 1"),
        "{message}"
    );
    assert!(
        ORDER.take().is_empty(),
        "the node below the failure never started"
    );
}

#[test]
fn try_returns_the_first_failure_and_a_task_s_err_is_one() {
    let outcome = watchdog(|| {
        run_concurrently!(try; dag {
            let n = fallible(0);
            let next = quick(n);
            next
        })
    });
    let error: TaskError = outcome.expect_err("fallible(0) fails");
    assert_eq!(error.task(), "fallible");
    assert!(
        matches!(error.kind(), TaskErrorKind::Failed { .. }),
        "{error}"
    );
    // And a success gives the `Ok` value to the node below.
    let value = watchdog(|| {
        run_concurrently!(try; dag {
            let n = fallible(4);
            let next = quick(n);
            next
        })
    });
    assert_eq!(value.expect("no failure"), 5);
}

#[test]
fn all_names_the_root_cause_five_levels_down_and_runs_the_other_branch() {
    let (first, fifth, other) = watchdog(|| {
        run_concurrently!(all; dag {
            let root = boom(2);
            let second = quick(root);
            let third = quick(second);
            let fourth = quick(third);
            let fifth = quick(fourth);
            let other = quick(40);
            (root, fifth, other)
        })
    });
    let root = first.expect_err("the root fails");
    assert!(
        matches!(root.kind(), TaskErrorKind::Panicked { .. }),
        "{root}"
    );
    let fifth = fifth.expect_err("the fifth never runs");
    assert_eq!(fifth.task(), "quick");
    match fifth.kind() {
        TaskErrorKind::Upstream { node, task } => assert_eq!((*node, *task), ("root", "boom")),
        other => panic!("expected an upstream failure, got {other:?}"),
    }
    assert_eq!(
        fifth.to_string(),
        "task `quick` did not run: its input `root` (task `boom`) failed"
    );
    assert_eq!(other.expect("the independent branch runs"), 41);
}

static ATTEMPTS: AtomicUsize = AtomicUsize::new(0);

#[io_task(retries = 2)]
async fn flaky(n: u64) -> u64 {
    if ATTEMPTS.fetch_add(1, Ordering::SeqCst) == 0 {
        panic!("first attempt fails");
    }
    n
}

#[test]
fn a_retried_node_passes_its_successful_attempt_on_once() {
    let _serial = serial();
    ATTEMPTS.store(0, Ordering::SeqCst);
    ORDER.take();
    let value = watchdog(|| {
        run_concurrently!(dag {
            let n = flaky(7);
            let next = step_async("next", n);
            next
        })
    });
    assert_eq!(value, 8);
    assert_eq!(ATTEMPTS.load(Ordering::SeqCst), 2);
    let events = ORDER.take();
    assert_eq!(
        events,
        ["start next", "end next"],
        "the node below ran once"
    );
}

/// Tests that share `ORDER`, `CLONES` or `ATTEMPTS` run one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---- pipelines ---------------------------------------------------------------------

/// How many items of the first stage may finish (items at or below it).
static TURN: Signal = Signal {
    raised: Mutex::new(false),
    changed: Condvar::new(),
};

/// First stage: item 0 goes at once; the others wait until item 0 of the second stage
/// has finished (or give up after 20 s and say so).
#[io_task]
fn first_stage(index: u64) -> (u64, bool) {
    if index == 0 {
        return (0, true);
    }
    let turn = TURN
        .raised
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (turn, _) = TURN
        .changed
        .wait_timeout_while(turn, Duration::from_secs(20), |turn| !*turn)
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    (index, *turn)
}

/// Second stage: item 0 lets the rest of the first stage go.
#[cpu_task]
fn second_stage(item: (u64, bool)) -> (u64, bool) {
    if item.0 == 0 {
        *TURN
            .raised
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = true;
        TURN.changed.notify_all();
    }
    (item.0 * 10, item.1)
}

#[test]
fn a_pipelined_stage_starts_item_i_as_soon_as_item_i_of_the_stage_before_is_ready() {
    let _serial = serial();
    let results = watchdog(|| {
        run_concurrently!(dag {
            let firsts = for (0..4u64).map(first_stage);
            let seconds = for firsts.into_iter().map(second_stage);
            let thirds = for seconds.into_iter().map(|item: (u64, bool)| quick(item.0));
            thirds
        })
    });
    // Items 1-3 of the first stage waited for item 0 of the second: only a pipeline
    // lets it run before the whole first stage has finished.
    assert_eq!(results, vec![1, 11, 21, 31]);
    let flags = watchdog(|| {
        *TURN
            .raised
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = false;
        run_concurrently!(dag {
            let firsts = for (0..4u64).map(first_stage);
            let seconds = for firsts.into_iter().map(second_stage);
            seconds
        })
    });
    assert_eq!(
        flags,
        [(0, true), (10, true), (20, true), (30, true)],
        "no item of the first stage gave up waiting"
    );
}

#[test]
fn in_all_a_failed_item_fails_only_its_counterpart_downstream() {
    let outcomes = watchdog(|| {
        run_concurrently!(all; dag {
            let firsts = for (0..3u64).map(|n| boom(u64::from(n == 1)));
            let seconds = for firsts.into_iter().map(quick);
            seconds
        })
    });
    let outcomes = outcomes.expect("the stage itself runs");
    assert_eq!(outcomes[0].as_ref().ok(), Some(&1));
    assert_eq!(outcomes[2].as_ref().ok(), Some(&1));
    let failed = outcomes[1].as_ref().expect_err("item 1 failed upstream");
    match failed.kind() {
        TaskErrorKind::Upstream { node, task } => assert_eq!((*node, *task), ("firsts", "boom")),
        other => panic!("expected an upstream failure, got {other:?}"),
    }
}

// ---- the graph ---------------------------------------------------------------------

#[test]
fn describe_gives_the_graph_as_dot_without_running_anything() {
    let _serial = serial();
    ORDER.take();
    let url = 3;
    let dot: String = run_concurrently!(describe; dag {
        let page = fetch(url);
        let words = count_words(page);
        let stored = store(page);
        let pieces = for (0..2u64).map(page_of);
        let sum = step_cpu("sum", words.0 as u64, stored.0 as u64);
        (sum, pieces)
    });
    assert!(ORDER.take().is_empty(), "nothing ran");
    for line in [
        "n0 [label=\"page = fetch(..)\\ntokio async task\"];",
        "n1 [label=\"words = count_words(..)\\nrayon pool\"];",
        "n2 [label=\"stored = store(..)\\ntokio blocking thread\"];",
        "n3 [label=\"pieces = for .. page_of\\ntokio async task\", peripheries=2];",
        "n4 [label=\"sum = step_cpu(..)\\nrayon pool\"];",
        "n0 -> n1;",
        "n0 -> n2;",
        "n1 -> n4;",
        "n2 -> n4;",
        "n4 -> value;",
        "n3 -> value;",
    ] {
        assert!(dot.contains(line), "`{line}` missing from:\n{dot}");
    }
    assert!(
        dot.starts_with("digraph dag {") && dot.ends_with("}\n"),
        "{dot}"
    );
    assert_eq!(dot.matches("->").count(), 6, "{dot}");
    let _ = url;
}
