//! Helpers shared by the integration tests.

#![allow(dead_code, unreachable_pub)]

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

/// Generous: a hang fails the test instead of stalling the suite; never reached by a
/// passing test.
pub const WATCHDOG: Duration = Duration::from_secs(60);

/// Runs `f` on its own thread and fails the test if it does not finish in `limit`.
pub fn watchdog<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = mpsc::channel();
    thread::Builder::new()
        .name("test-body".into())
        .spawn(move || {
            let _ = sender.send(catch_unwind(AssertUnwindSafe(f)));
        })
        .expect("spawn test thread");
    match receiver.recv_timeout(WATCHDOG) {
        Ok(Ok(value)) => value,
        Ok(Err(payload)) => resume_unwind(payload),
        Err(_) => panic!("watchdog: the test did not finish within {WATCHDOG:?}; it hangs"),
    }
}

/// Tests that need every rayon thread at once take this lock, so that two of them in
/// the same test binary never wait on each other for threads.
pub fn whole_rayon_pool() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The message of a caught panic.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else if let Some(message) = payload.downcast_ref::<&'static str>() {
        (*message).to_owned()
    } else {
        "<non-string payload>".to_owned()
    }
}

/// Runs `f`, expects it to panic, and returns the panic message.
pub fn expect_panic(f: impl FnOnce()) -> String {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => panic!("expected a panic"),
        Err(payload) => panic_message(payload.as_ref()),
    }
}

/// A barrier whose wait gives up: `wait` is `true` once `count` threads have arrived,
/// `false` if `limit` passed first (so that a failing test does not hold threads
/// forever).
pub struct Meeting {
    arrived: Mutex<usize>,
    all_here: std::sync::Condvar,
    count: usize,
}

impl Meeting {
    pub fn new(count: usize) -> Self {
        Meeting {
            arrived: Mutex::new(0),
            all_here: std::sync::Condvar::new(),
            count,
        }
    }

    pub fn wait(&self, limit: Duration) -> bool {
        let mut arrived = self.arrived.lock().unwrap_or_else(|p| p.into_inner());
        *arrived += 1;
        self.all_here.notify_all();
        let (arrived, _) = self
            .all_here
            .wait_timeout_while(arrived, limit, |arrived| *arrived < self.count)
            .unwrap_or_else(|p| p.into_inner());
        *arrived >= self.count
    }
}
