//! Process tasks that crash, exit, are killed, or whose data does not serialize:
//! each fails alone with an error that says how, and the pool carries on.

mod support;

use std::sync::Once;

use concurrency_runtime::process::{self, PoolConfig};
use concurrency_runtime::{SerializationStage, TaskKind, cpu_task, run_concurrently};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use support::{expect_panic, watchdog};

/// Frames over 1 MiB are refused in this test binary.
const MAX_FRAME: u64 = 1 << 20;

fn setup() {
    static SETUP: Once = Once::new();
    SETUP.call_once(|| {
        process::configure(PoolConfig::default().workers(2).max_frame_bytes(MAX_FRAME))
            .expect("configure")
    });
}

#[cpu_task(process)]
fn abort_now() -> u32 {
    std::process::abort()
}

#[cpu_task(process)]
fn segfault() -> u32 {
    // A real invalid memory access, not `raise(SIGSEGV)`.
    let null = std::hint::black_box(std::ptr::null_mut::<u32>());
    // SAFETY: not safe at all: this test wants the worker to crash with SIGSEGV.
    unsafe { null.write_volatile(1) };
    1
}

#[cpu_task(process)]
fn exit_with(code: i32) -> u32 {
    std::process::exit(code)
}

#[cpu_task(process)]
fn killed_from_outside() -> u32 {
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status();
    // Not reached: the signal is delivered before `kill` returns.
    std::thread::park();
    0
}

#[cpu_task(process)]
fn pid_of_worker() -> u32 {
    std::process::id()
}

#[cpu_task(process)]
fn echo_len(data: Vec<u8>) -> usize {
    data.len()
}

#[cpu_task(process)]
fn make_bytes(len: usize) -> Vec<u8> {
    vec![1; len]
}

/// Fails to serialize or deserialize in the places a test picks.
#[derive(Debug)]
struct Fragile {
    fail_serialize_in_worker: bool,
    fail_deserialize_in_worker: bool,
    fail_deserialize_in_parent: bool,
    fail_serialize_in_parent: bool,
}

fn in_worker() -> bool {
    TaskKind::current() == Some(TaskKind::Process)
}

impl Serialize for Fragile {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if (self.fail_serialize_in_worker && in_worker())
            || (self.fail_serialize_in_parent && !in_worker())
        {
            return Err(serde::ser::Error::custom("refused to serialize"));
        }
        (
            self.fail_serialize_in_worker,
            self.fail_deserialize_in_worker,
            self.fail_deserialize_in_parent,
            self.fail_serialize_in_parent,
        )
            .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Fragile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (a, b, c, d) = <(bool, bool, bool, bool)>::deserialize(deserializer)?;
        if (b && in_worker()) || (c && !in_worker()) {
            return Err(serde::de::Error::custom("refused to deserialize"));
        }
        Ok(Fragile {
            fail_serialize_in_worker: a,
            fail_deserialize_in_worker: b,
            fail_deserialize_in_parent: c,
            fail_serialize_in_parent: d,
        })
    }
}

#[cpu_task(process)]
fn pass_through(value: Fragile) -> Fragile {
    value
}

fn fragile(which: usize) -> Fragile {
    Fragile {
        fail_serialize_in_worker: which == 2,
        fail_deserialize_in_worker: which == 1,
        fail_deserialize_in_parent: which == 3,
        fail_serialize_in_parent: which == 0,
    }
}

/// Runs a failing task next to a healthy sibling; returns the failure's panic
/// message after checking the sibling and a later task were unaffected.
fn fails_alone(run: impl FnOnce() + Send + 'static) -> String {
    setup();
    let message = watchdog(move || expect_panic(run));
    assert_eq!(
        watchdog(|| run_concurrently!(echo_len(vec![0; 3]), echo_len(vec![0; 4]))),
        (3, 4)
    );
    message
}

#[test]
fn abort_is_reported_with_its_signal() {
    let message = fails_alone(|| {
        let _ = run_concurrently!(abort_now(), echo_len(vec![1]));
    });
    assert!(
        message.starts_with("task `abort_now` crashed: its worker process"),
        "{message}"
    );
    assert!(
        message.ends_with("was killed by signal 6 (SIGABRT)"),
        "{message}"
    );
}

#[test]
fn a_segfault_is_reported_with_its_signal() {
    let message = fails_alone(|| {
        let _ = run_concurrently!(echo_len(vec![1]), segfault());
    });
    assert!(
        message.ends_with("was killed by signal 11 (SIGSEGV)"),
        "{message}"
    );
}

#[test]
fn exit_mid_task_is_reported_with_its_code() {
    let zero = fails_alone(|| {
        let _ = exit_with(0).run();
    });
    assert!(
        zero.ends_with("exited with code 0 before returning a result"),
        "{zero}"
    );
    let three = fails_alone(|| {
        let _ = exit_with(3).run();
    });
    assert!(
        three.ends_with("exited with code 3 before returning a result"),
        "{three}"
    );
}

#[test]
fn a_worker_killed_from_outside_is_reported_and_replaced() {
    setup();
    let message = fails_alone(|| {
        let _ = killed_from_outside().run();
    });
    assert!(
        message.ends_with("was killed by signal 9 (SIGKILL)"),
        "{message}"
    );
    let after = watchdog(|| run_concurrently!(for (0..10).map(|_| pid_of_worker())));
    assert!(after.iter().all(|pid| *pid != std::process::id()));
}

#[test]
fn the_error_value_describes_the_crash() {
    setup();
    let (sibling, crashed) = watchdog(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let crash = tokio::spawn(async { exit_with(7).await });
            (echo_len(vec![9; 9]).await, crash.await)
        })
    });
    assert_eq!(sibling, 9);
    let payload = crashed
        .expect_err("the crash panics the awaiting task")
        .into_panic();
    let message = support::panic_message(payload.as_ref());
    assert!(message.contains("exited with code 7"), "{message}");
}

#[test]
fn serialization_faults_at_each_step_are_typed_and_leave_the_pool_usable() {
    let expected = [
        SerializationStage::ArgumentsOut,
        SerializationStage::ArgumentsIn,
        SerializationStage::ResultOut,
        SerializationStage::ResultIn,
    ];
    for (which, stage) in expected.into_iter().enumerate() {
        let message = fails_alone(move || {
            let _ = pass_through(fragile(which)).run();
        });
        // The message the impl gave is kept (it was once "Serde Serialization Error").
        let verb = if which % 2 == 0 {
            "serialize"
        } else {
            "deserialize"
        };
        assert_eq!(
            message,
            format!("task `pass_through` failed {stage}: refused to {verb}"),
        );
    }
    // serde's own messages too: a derived enum that gets a variant it does not have.
    let message = fails_alone(|| {
        let _ = decode_as_small(Small::First).run();
    });
    assert_eq!(
        message,
        "task `decode_as_small` failed deserializing the arguments in the worker: \
         invalid value: integer `2`, expected variant index 0 <= i < 2"
    );
}

/// Derived `Deserialize`, but serialized as a variant it does not have.
#[derive(Deserialize, Debug)]
enum Small {
    #[allow(dead_code)]
    First,
    #[allow(dead_code)]
    Second,
}

impl Serialize for Small {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_unit_variant("Small", 2, "Third")
    }
}

#[cpu_task(process)]
fn decode_as_small(value: Small) -> u8 {
    value as u8
}

/// Counts the elements that were serialized.
struct Counted(std::sync::Arc<std::sync::atomic::AtomicUsize>, usize);

impl Serialize for Counted {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.1))?;
        for _ in 0..self.1 {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            seq.serialize_element(&[7u8; 1024][..])?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Counted {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("never deserialized in this test"))
    }
}

#[cpu_task(process)]
fn takes_counted(value: Counted) -> usize {
    value.1
}

#[test]
fn an_argument_over_the_limit_is_refused_as_soon_as_it_passes_it() {
    // 64 MiB of 1 KiB elements against the 1 MiB limit: serializing stops at the limit
    // (about a thousand elements), not after all 65,536.
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&count);
    let message = fails_alone(move || {
        let _ = takes_counted(Counted(counted, 64 << 10)).run();
    });
    assert!(
        message.ends_with("exceeds the maximum frame size of 1048576 bytes"),
        "{message}"
    );
    let serialized = count.load(std::sync::atomic::Ordering::Relaxed);
    assert!(serialized <= 1100, "{serialized} elements serialized");
}

#[test]
fn frames_over_the_limit_fail_the_task_not_the_pool() {
    let big_args = fails_alone(|| {
        let _ = echo_len(vec![0; 2 << 20]).run();
    });
    assert!(
        big_args.contains("exceeds the maximum frame size of 1048576 bytes"),
        "{big_args}"
    );
    let big_result = fails_alone(|| {
        let _ = make_bytes(2 << 20).run();
    });
    assert!(
        big_result.contains("exceeds the maximum frame size of 1048576 bytes"),
        "{big_result}"
    );
    setup();
    assert_eq!(watchdog(|| make_bytes(1000).run()).len(), 1000);
}

#[cpu_task(process)]
fn crash_on(n: u64, crash_at: u64) -> u64 {
    if n == crash_at {
        std::process::abort();
    }
    n
}

#[test]
fn a_crash_in_a_busy_pool_fails_only_its_own_task() {
    setup();
    // 300 tasks queued at once reach the workers in batches; the tasks queued behind
    // the crashing one on its worker must still run, on a replacement.
    let results = watchdog(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let handles: Vec<_> = (0..300)
                .map(|n| tokio::spawn(async move { crash_on(n, 150).await }))
                .collect();
            let mut results = Vec::new();
            for handle in handles {
                results.push(handle.await.ok());
            }
            results
        })
    });
    for (n, result) in results.iter().enumerate() {
        if n == 150 {
            assert_eq!(*result, None, "the crashing task fails");
        } else {
            assert_eq!(*result, Some(n as u64), "task {n} is unaffected");
        }
    }
}
