//! A worker that stops answering (stopped by a signal, or stuck in the middle of an
//! answer) is killed, reaped and replaced at its task's deadline: no later task waits
//! on it, and the pool does not list it any more. One worker, so that every task after
//! the wedged one must go to the same slot.

mod support;

use std::sync::Mutex;

use concurrency_runtime::process::{self, PoolConfig};
use concurrency_runtime::{TaskError, cpu_task};
use support::watchdog;

/// The tests share the pool's one worker slot: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn setup() -> std::sync::MutexGuard<'static, ()> {
    static SETUP: std::sync::Once = std::sync::Once::new();
    SETUP.call_once(|| process::configure(PoolConfig::default().workers(1)).expect("configure"));
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

#[cpu_task(process)]
fn worker_pid() -> u32 {
    std::process::id()
}

/// Writes the start of an answer frame to the worker's channel (descriptor 3), then
/// stops the whole worker: it neither finishes the answer nor reacts to anything.
#[cpu_task(process, timeout = "300ms")]
fn half_an_answer_then_stop() -> u32 {
    let header = 1000u64.to_le_bytes();
    // SAFETY: writes 4 bytes (half of a frame's length) from a live buffer to descriptor 3,
    // the worker's channel.
    unsafe { libc::write(3, header.as_ptr().cast(), 4) };
    // SAFETY: raise takes a signal number and touches no memory.
    unsafe { libc::raise(libc::SIGSTOP) };
    0
}

#[cpu_task(process, timeout = "500ms")]
fn big_argument(data: Vec<u8>) -> usize {
    data.len()
}

fn assert_timed_out(error: TaskError) {
    assert!(error.is_timeout(), "{error}");
}

#[test]
fn a_worker_stuck_in_the_middle_of_an_answer_is_replaced_at_the_deadline() {
    let _slot = setup();
    let (wedged, after) = watchdog(|| {
        let wedged = worker_pid().run();
        assert_timed_out(half_an_answer_then_stop().try_run().expect_err("times out"));
        // The next task on the one slot runs, on a new worker.
        (wedged, worker_pid().run())
    });
    assert_ne!(wedged, after, "the wedged worker was replaced");
    assert!(
        !support::is_alive(wedged),
        "the wedged worker was killed and reaped"
    );
    assert_eq!(process::worker_pids(), [after]);
}

#[test]
fn a_stopped_worker_that_cannot_take_a_request_is_replaced_at_the_deadline() {
    let _slot = setup();
    let (stopped, after) = watchdog(|| {
        let stopped = worker_pid().run();
        // SAFETY: kill takes plain integers and touches no memory.
        assert_eq!(unsafe { libc::kill(stopped as i32, libc::SIGSTOP) }, 0);
        // 16 MiB: far more than the channel's buffer, so the driver's write waits on
        // the stopped worker.
        assert_timed_out(
            big_argument(vec![0; 16 << 20])
                .try_run()
                .expect_err("times out"),
        );
        (stopped, worker_pid().run())
    });
    assert_ne!(stopped, after, "the stopped worker was replaced");
    assert!(
        !support::is_alive(stopped),
        "the stopped worker was killed and reaped"
    );
    assert_eq!(process::worker_pids(), [after]);
    // And the replacement takes big requests.
    assert_eq!(watchdog(|| big_argument(vec![1; 16 << 20]).run()), 16 << 20);
}
