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

/// Fails the test unless `/proc` describes this process: a check that reads `/proc`
/// and finds nothing there must never pass for that reason.
fn proc_works() {
    static CHECKED: std::sync::Once = std::sync::Once::new();
    CHECKED.call_once(|| {
        let stat = std::fs::read_to_string("/proc/self/stat")
            .unwrap_or_else(|error| panic!("this test needs /proc: {error}"));
        assert!(
            stat.starts_with(&format!("{} (", std::process::id())),
            "/proc/self/stat does not describe this process: {stat}"
        );
    });
}

/// The state (`R`, `S`, `T`, `Z`...) and parent of a process, from `/proc/<pid>/stat`;
/// `None` if there is no such process.
pub fn process_stat(pid: u32) -> Option<(char, u32)> {
    proc_works();
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => parse_stat(&stat),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => panic!("cannot read /proc/{pid}/stat: {error}"),
    }
}

fn parse_stat(stat: &str) -> Option<(char, u32)> {
    // `pid (name) state ppid ...`; the name may hold spaces and parentheses.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

/// Whether a process exists and has not died (a zombie has).
pub fn is_alive(pid: u32) -> bool {
    matches!(process_stat(pid), Some((state, _)) if state != 'Z')
}

/// This process's children and their states, from a scan of every `/proc/<pid>/stat`
/// (this kernel has no `/proc/<pid>/task/<tid>/children`).
pub fn children() -> Vec<(u32, char)> {
    proc_works();
    let me = std::process::id();
    let mut children = Vec::new();
    let mut saw_self = false;
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let entry = entry.expect("a /proc entry");
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // A process may end while the directory is read.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (state, parent) = parse_stat(&stat).expect("a /proc/<pid>/stat line");
        saw_self |= pid == me;
        if parent == me {
            children.push((pid, state));
        }
    }
    assert!(saw_self, "the scan of /proc did not find this process");
    children
}

/// This process's zombie children.
pub fn zombies() -> Vec<u32> {
    children()
        .into_iter()
        .filter(|(_, state)| *state == 'Z')
        .map(|(pid, _)| pid)
        .collect()
}

/// Polls `future` once: its output if it is ready.
pub async fn poll_once<F: std::future::Future>(
    mut future: std::pin::Pin<&mut F>,
) -> Option<F::Output> {
    std::future::poll_fn(|context| match future.as_mut().poll(context) {
        std::task::Poll::Ready(output) => std::task::Poll::Ready(Some(output)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

/// A real `nats-server` and worker hosts, for the remote tests.
#[cfg(feature = "nats")]
pub mod nats;

/// This machine's monotonic clock in nanoseconds: one clock for every process here,
/// so that times taken in worker processes compare.
#[cfg(feature = "nats")]
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// The most intervals (`[start, end)`) that overlap at one instant.
#[cfg(feature = "nats")]
pub fn most_at_once(intervals: &[(u64, u64)]) -> usize {
    let mut events: Vec<(u64, i32)> = intervals
        .iter()
        .flat_map(|&(start, end)| [(start, 1), (end, -1)])
        .collect();
    // Ends before starts at the same instant: touching is not overlapping.
    events.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, change) in events {
        now += change;
        most = most.max(now);
    }
    most as usize
}
