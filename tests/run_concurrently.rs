//! `run_concurrently!` and task values: results, callers, nesting, panics.

mod support;

use std::sync::{Arc, mpsc};
use std::time::Duration;

use concurrency_runtime::{Task, TaskKind, cpu_task, io_task, run_concurrently};
use support::{expect_panic, watchdog, whole_rayon_pool};

#[io_task]
async fn greet(name: String) -> String {
    tokio::time::sleep(Duration::from_millis(1)).await;
    format!("hello {name}")
}

#[io_task]
fn read_bytes(n: usize) -> Vec<u8> {
    vec![7; n]
}

#[cpu_task]
fn square(n: u64) -> u64 {
    n * n
}

#[cpu_task]
fn pair(a: bool, b: char) -> (bool, char) {
    (a, b)
}

#[io_task]
async fn identity(i: usize) -> usize {
    tokio::task::yield_now().await;
    i
}

#[io_task]
fn identity_blocking(i: usize) -> usize {
    i
}

#[cpu_task]
fn identity_cpu(i: usize) -> usize {
    i
}

#[test]
fn results_come_back_in_argument_order_with_mixed_types() {
    let (text, bytes, sq, tuple, unit) = watchdog(|| {
        run_concurrently!(
            greet("a".into()),
            read_bytes(3),
            square(9),
            pair(true, 'x'),
            read_bytes(0)
        )
    });
    assert_eq!(text, "hello a");
    assert_eq!(bytes, vec![7, 7, 7]);
    assert_eq!(sq, 81);
    assert_eq!(tuple, (true, 'x'));
    assert!(unit.is_empty());
}

/// A helper generic over tasks, as the `Task` trait's docs suggest writing.
fn both<A: Task, B: Task>(a: impl FnOnce() -> A, b: impl FnOnce() -> B) -> (A::Output, B::Output) {
    run_concurrently!(a(), b())
}

/// A task behind `impl Task`.
fn squared(n: u64) -> impl Task<Output = u64, Ok = u64> {
    square(n)
}

#[test]
fn generic_and_impl_task_helpers_keep_their_types_in_a_group() {
    let (text, n): (String, u64) = both(|| greet("generic".into()), || square(4));
    assert_eq!((text.as_str(), n), ("hello generic", 16));
    let (a, b): (u64, u64) = run_concurrently!(squared(2), squared(3));
    assert_eq!(a + b, 13);
    let tried: Result<(u64, u64), concurrency_runtime::TaskError> =
        run_concurrently!(try; squared(1), squared(5));
    assert_eq!(tried.ok(), Some((1, 25)));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sum = runtime.block_on(async {
        let (a, b) = run_concurrently!(async; std::convert::identity(squared(6)), squared(7)).await;
        a + b
    });
    assert_eq!(sum, 85);
}

#[test]
fn a_group_future_polled_after_it_completed_says_so() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut group = Box::pin(run_concurrently!(async; square(3), identity(4)));
    assert_eq!(runtime.block_on(&mut group), (9, 4));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = std::future::Future::poll(group.as_mut(), &mut cx);
    }));
    let payload = again.expect_err("a second poll panics");
    assert_eq!(
        support::panic_message(payload.as_ref()),
        "a `run_concurrently!` future was polled after it completed"
    );
}

#[test]
fn a_single_task_returns_its_value() {
    let value: u64 = watchdog(|| run_concurrently!(square(12)));
    assert_eq!(value, 144);
    let text: String = watchdog(|| run_concurrently!(greet("one".into()),));
    assert_eq!(text, "hello one");
}

#[test]
fn sixteen_tasks_in_one_call() {
    let all = watchdog(|| {
        run_concurrently!(
            identity(0),
            identity_blocking(1),
            identity_cpu(2),
            identity(3),
            identity_blocking(4),
            identity_cpu(5),
            identity(6),
            identity_blocking(7),
            identity_cpu(8),
            identity(9),
            identity_blocking(10),
            identity_cpu(11),
            identity(12),
            identity_blocking(13),
            identity_cpu(14),
            identity(15),
        )
    });
    let (a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15) = all;
    let all = [
        a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15,
    ];
    assert_eq!(all, std::array::from_fn::<usize, 16, _>(|i| i));
}

#[test]
fn collection_form_keeps_input_order_for_1000_tasks_of_each_kind() {
    let expected: Vec<usize> = (0..1000).collect();
    let (a, b, c) = watchdog(|| {
        (
            run_concurrently!(for (0..1000).map(identity)),
            run_concurrently!(for (0..1000).map(identity_blocking)),
            run_concurrently!(for (0..1000).map(identity_cpu)),
        )
    });
    assert_eq!(a, expected);
    assert_eq!(b, expected);
    assert_eq!(c, expected);
    let none: Vec<usize> = run_concurrently!(for Vec::<usize>::new().into_iter().map(identity_cpu));
    assert!(none.is_empty());
}

#[test]
fn a_task_runs_alone_in_sync_code_and_its_body_runs_inline() {
    watchdog(|| {
        assert_eq!(square(5).run(), 25);
        assert_eq!(read_bytes(2).run(), vec![7, 7]);
        assert_eq!(greet("x".into()).run(), "hello x");
        // The plain body, on this thread, for unit tests.
        assert_eq!(square(5).run_inline(), 25);
        assert_eq!(read_bytes(1).run_inline(), vec![7]);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        assert_eq!(runtime.block_on(greet("y".into()).run_inline()), "hello y");
        assert_eq!(square(5).name(), "square");
        assert_eq!(greet("z".into()).name(), "greet");
    });
}

#[tokio::test(flavor = "current_thread")]
async fn async_form_under_a_current_thread_runtime() {
    let (text, bytes, sq) = tokio::time::timeout(support::WATCHDOG, async {
        run_concurrently!(async; greet("ct".into()), read_bytes(1), square(3)).await
    })
    .await
    .expect("hang");
    assert_eq!((text.as_str(), bytes, sq), ("hello ct", vec![7], 9));
    // A task on its own is awaited.
    assert_eq!(square(4).await, 16);
    assert_eq!(greet("await".into()).await, "hello await");
    let all = run_concurrently!(async; for (0..100).map(identity)).await;
    assert_eq!(all, (0..100).collect::<Vec<_>>());
}

#[test]
fn sync_form_on_a_current_thread_runtime_thread_does_not_deadlock() {
    // The caller blocks its own runtime's only thread: the async task's timer must be
    // driven elsewhere.
    let (text, sq) = watchdog(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async { run_concurrently!(greet("ct-sync".into()), square(2)) })
    });
    assert_eq!((text.as_str(), sq), ("hello ct-sync", 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_forms_under_a_multi_thread_runtime() {
    let (text, sq) = run_concurrently!(async; greet("mt".into()), square(3)).await;
    assert_eq!((text.as_str(), sq), ("hello mt", 9));
    // The synchronous form also works here: it steps off the worker first.
    let (text, sq) = run_concurrently!(greet("sync".into()), square(4));
    assert_eq!((text.as_str(), sq), ("hello sync", 16));
}

#[test]
fn a_large_async_collection_in_a_tokio_task_yields_to_the_executor() {
    // 10,000 spawned tasks awaited from inside a tokio task: tokio's cooperative
    // budget runs out while the group polls them, and the group must yield then
    // (a group that kept polling spun forever here).
    let sum = watchdog(|| {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            tokio::spawn(async {
                run_concurrently!(async; for (0..10_000u64).map(|n| add_async(n, 1)))
                    .await
                    .into_iter()
                    .sum::<u64>()
            })
            .await
            .expect("join")
        })
    });
    assert_eq!(sum, (1..=10_000).sum::<u64>());
}

#[io_task]
async fn add_async(a: u64, b: u64) -> u64 {
    tokio::task::yield_now().await;
    a + b
}

#[io_task]
fn wait_for_signal(signal: Arc<std::sync::Mutex<mpsc::Receiver<u32>>>) -> u32 {
    signal.lock().expect("lock").recv().expect("signal")
}

#[test]
fn the_async_form_does_not_block_the_callers_reactor() {
    // The blocking task can only finish after a task spawned on the caller's own
    // single-threaded runtime has run: that needs the group's await to yield.
    let value = watchdog(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let (sender, receiver) = mpsc::channel();
            let receiver = Arc::new(std::sync::Mutex::new(receiver));
            tokio::spawn(async move { sender.send(42).expect("send") });
            run_concurrently!(async; wait_for_signal(receiver)).await
        })
    });
    assert_eq!(value, 42);
}

#[cpu_task]
fn cpu_that_runs_io(n: usize) -> (usize, usize, usize) {
    let (a, b, c) = run_concurrently!(identity(n), identity_blocking(n + 1), identity_cpu(n + 2));
    assert_eq!(TaskKind::current(), Some(TaskKind::Cpu));
    (a, b, c)
}

#[io_task]
fn blocking_that_runs_cpu(n: u64) -> u64 {
    let (a, b) = run_concurrently!(square(n), square(n + 1));
    a + b
}

#[io_task]
async fn async_that_runs_cpu(n: u64) -> u64 {
    let (a, b) = run_concurrently!(async; square(n), greet("nested".into())).await;
    a + b.len() as u64
}

#[test]
fn tasks_run_other_tasks() {
    let (a, b, c) = watchdog(|| {
        run_concurrently!(
            cpu_that_runs_io(1),
            blocking_that_runs_cpu(2),
            async_that_runs_cpu(3)
        )
    });
    assert_eq!(a, (1, 2, 3));
    assert_eq!(b, 4 + 9);
    assert_eq!(c, 9 + "hello nested".len() as u64);
}

#[cpu_task]
fn nested_fan_out(depth: u32) -> u64 {
    if depth == 0 {
        return 1;
    }
    let (a, b, c) = run_concurrently!(
        nested_fan_out(depth - 1),
        nested_fan_out(depth - 1),
        identity(1)
    );
    a + b + c as u64
}

#[test]
fn nested_groups_do_not_deadlock_a_saturated_rayon_pool() {
    let _pool = whole_rayon_pool();
    // Every rayon thread ends up waiting on a nested group whose cpu tasks need a
    // rayon thread: the waiting threads must run those jobs themselves.
    let threads = rayon::current_num_threads();
    let results =
        watchdog(move || run_concurrently!(for (0..threads * 4).map(|_| nested_fan_out(4))));
    // Each level: 2 children + 1 => f(d) = 2 f(d-1) + 1, f(0) = 1 => f(4) = 31.
    assert_eq!(results, vec![31; threads * 4]);
}

#[cpu_task(name = "explode")]
fn explodes(message: String) -> u64 {
    panic!("{message}")
}

#[io_task]
async fn explodes_async() -> u64 {
    tokio::task::yield_now().await;
    panic!("async boom")
}

#[io_task]
fn explodes_blocking() -> u64 {
    panic!("blocking boom")
}

#[io_task]
fn waits_for_release(
    release: Arc<std::sync::Mutex<mpsc::Receiver<()>>>,
    report: mpsc::Sender<bool>,
) -> u64 {
    // Blocks until the test releases it, then reports whether it was cancelled.
    let _ = release
        .lock()
        .expect("lock")
        .recv_timeout(support::WATCHDOG);
    let _ = report.send(concurrency_runtime::is_cancelled());
    1
}

#[cpu_task]
fn panics_now() -> u64 {
    panic!("now")
}

#[test]
fn a_panic_fails_fast_naming_the_task_and_cancels_the_siblings() {
    let (release, released) = mpsc::channel();
    let released = Arc::new(std::sync::Mutex::new(released));
    let (report, reports) = mpsc::channel();
    let message = watchdog(move || {
        expect_panic(|| {
            let _ = run_concurrently!(waits_for_release(released, report), panics_now());
        })
    });
    // The panic reached the caller while the sibling was still blocked...
    assert_eq!(message, "task `panics_now` panicked: now");
    drop(release);
    // ...and the sibling, a blocking task that cannot be stopped from outside, was
    // told through its cancellation flag.
    let cancelled = reports
        .recv_timeout(support::WATCHDOG)
        .expect("the sibling finishes once released");
    assert!(cancelled);
}

#[test]
fn panics_of_every_kind_name_their_task() {
    let cpu = watchdog(|| {
        expect_panic(|| {
            let _ = run_concurrently!(explodes("cpu boom".into()), square(1));
        })
    });
    assert_eq!(cpu, "task `explode` panicked: cpu boom");
    let io = watchdog(|| {
        expect_panic(|| {
            let _ = run_concurrently!(square(1), explodes_async());
        })
    });
    assert_eq!(io, "task `explodes_async` panicked: async boom");
    let blocking = watchdog(|| {
        expect_panic(|| {
            let _ = explodes_blocking().run();
        })
    });
    assert_eq!(blocking, "task `explodes_blocking` panicked: blocking boom");
    let each = watchdog(|| {
        expect_panic(|| drop(run_concurrently!(for ["a", "b"].map(|m| explodes(m.to_string())))))
    });
    // Fail-fast: whichever failed first is reported.
    assert!(
        each == "task `explode` panicked: a" || each == "task `explode` panicked: b",
        "{each}"
    );
    // The process and the runtime are fine afterwards.
    assert_eq!(
        watchdog(|| run_concurrently!(square(3), greet("after".into()))),
        (9, "hello after".into())
    );
}

#[tokio::test]
async fn an_awaited_task_that_panics_names_it() {
    let handle = tokio::spawn(async { explodes_async().await });
    let payload = handle.await.expect_err("panics").into_panic();
    assert_eq!(
        support::panic_message(payload.as_ref()),
        "task `explodes_async` panicked: async boom"
    );
}

/// Generic functions, associated functions and argument patterns.
#[cpu_task]
fn largest<T: PartialOrd + Copy + Send + 'static>(items: Vec<T>) -> Option<T> {
    items.into_iter().fold(None, |best, x| match best {
        Some(b) if b >= x => Some(b),
        _ => Some(x),
    })
}

struct Pipeline;

impl Pipeline {
    #[io_task]
    fn stage((a, b): (u32, u32), mut scale: u32) -> u32 {
        scale += 1;
        (a + b) * scale
    }

    #[cpu_task]
    fn new_value() -> Self {
        Pipeline
    }
}

#[test]
fn generic_functions_associated_functions_and_patterns_work() {
    let (max, staged, _pipeline) = watchdog(|| {
        run_concurrently!(
            largest(vec![3, 9, 2]),
            Pipeline::stage((1, 2), 1),
            Pipeline::new_value()
        )
    });
    assert_eq!(max, Some(9));
    assert_eq!(staged, 6);
}

#[io_task]
async fn runs_a_task_synchronously(n: u64) -> u64 {
    // A synchronous wait inside an async task: discouraged, but it must not panic.
    square(n).run()
}

#[test]
fn sync_waits_nest_inside_a_current_thread_runtime() {
    let value = watchdog(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async { run_concurrently!(runs_a_task_synchronously(3), identity(1)) })
    });
    assert_eq!(value, (9, 1));
}

#[test]
fn panics_in_the_async_forms_name_their_task() {
    let message = |joined: Result<(), tokio::task::JoinError>| {
        support::panic_message(joined.expect_err("panicked").into_panic().as_ref())
    };
    let (fixed, each) = watchdog(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let fixed = tokio::spawn(async {
                let _ = run_concurrently!(async; square(2), explodes_async()).await;
            });
            let each = tokio::spawn(async {
                let _ = run_concurrently!(async; for ["x"].map(|m| explodes(m.to_string()))).await;
            });
            (message(fixed.await), message(each.await))
        })
    });
    assert_eq!(fixed, "task `explodes_async` panicked: async boom");
    assert_eq!(each, "task `explode` panicked: x");
}

#[io_task]
fn blocking_fan_out(n: u64) -> u64 {
    let all = run_concurrently!(for (0..4u32).map(|i| nested_fan_out(i % 3)));
    all.iter().sum::<u64>() + n
}

#[test]
fn io_tasks_run_cpu_groups_while_rayon_is_saturated() {
    let _pool = whole_rayon_pool();
    let n = rayon::current_num_threads() as u64 * 2;
    let (cpu, io) = watchdog(move || {
        // Blocking tasks fan out nested cpu work while cpu tasks keep rayon busy.
        let (cpu, io) = run_concurrently!(cpu_sum(n), blocking_group(n),);
        (cpu, io)
    });
    // f(3) = 15 per cpu task; each blocking task: f(0) + f(1) + f(2) + f(0) = 12.
    assert_eq!(cpu, 15 * n);
    assert_eq!(io, (0..n).map(|i| 12 + i).collect::<Vec<_>>());
}

#[cpu_task]
fn cpu_sum(n: u64) -> u64 {
    run_concurrently!(for (0..n).map(|_| nested_fan_out(3)))
        .iter()
        .sum()
}

#[io_task]
fn blocking_group(n: u64) -> Vec<u64> {
    run_concurrently!(for (0..n).map(blocking_fan_out))
}

#[test]
fn thousands_of_cpu_tasks_waiting_on_io_do_not_exhaust_rayon_stacks() {
    let _pool = whole_rayon_pool();
    let all = watchdog(|| run_concurrently!(for (0..5000).map(cpu_that_runs_io)));
    assert_eq!(all.len(), 5000);
    assert!(all.iter().enumerate().all(|(n, r)| *r == (n, n + 1, n + 2)));
}

#[test]
fn try_run_returns_the_failure_as_a_value() {
    let error = watchdog(|| explodes("typed".into()).try_run()).expect_err("fails");
    assert_eq!(error.task(), "explode");
    assert!(matches!(
        error.kind(),
        concurrency_runtime::TaskErrorKind::Panicked { message } if message == "typed"
    ));
    assert_eq!(error.to_string(), "task `explode` panicked: typed");
    assert_eq!(watchdog(|| square(3).try_run()).expect("runs"), 9);
    assert_eq!(
        watchdog(|| greet("t".into()).try_run()).expect("runs"),
        "hello t"
    );
}

#[io_task]
async fn yields_then_answers(n: u64) -> u64 {
    tokio::task::yield_now().await;
    n + 1
}

#[test]
fn an_async_task_run_alone_inside_a_current_thread_runtime_does_not_hang() {
    // `.run()` and `.try_run()` from inside a user's single-threaded runtime: the task
    // must run elsewhere, as in `run_concurrently!(x)` (it hung: its wake-up was deferred
    // to the very scheduler the synchronous wait blocks).
    let (ran, tried, grouped) = watchdog(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let ran = yields_then_answers(1).run();
            let tried = yields_then_answers(2).try_run().expect("ok");
            let grouped = run_concurrently!(yields_then_answers(3));
            (ran, tried, grouped)
        })
    });
    assert_eq!((ran, tried, grouped), (2, 3, 4));
}
