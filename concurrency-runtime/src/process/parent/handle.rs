//! The parent's handle of one worker process: its process, its channel, its cancel
//! line, and turning its answers into task outcomes.

use std::io::{self, IoSlice, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::cancel_line::{CancelLine, Wake};
use super::spawn;
use crate::error::{SerializationStage, TaskError};
use crate::process::answer_ring::{AnswerRing, RingReader};
use crate::process::config::PoolConfig;
use crate::process::protocol::{self, FrameBuffer, Response};
use crate::process::settings::{CHANNEL_FD, ENV_WORKER, WorkerSettings};
use crate::process::shared_counter::SharedCounter;
use crate::process::sys::{self, ChildProcess, Ended};
use crate::process::{handoff, registry};

/// What every worker of a pool is started with.
#[derive(Debug)]
pub(crate) struct Blueprint {
    pub(crate) config: PoolConfig,
    /// The depth of this pool's workers (see `WorkerSettings::depth`).
    pub(crate) depth: u32,
    /// The worker's `argv[0]`: this program's path, for `ps`.
    pub(crate) argv0: std::ffi::OsString,
}

/// A live worker, as its parent sees it.
#[derive(Debug)]
pub(crate) struct WorkerHandle {
    pub(crate) process: ChildProcess,
    /// Non-blocking.
    channel: UnixStream,
    pub(crate) line: Arc<CancelLine>,
    /// Where the worker's answers arrive (the channel only wakes the parent, and ends
    /// when the worker does).
    answers: AnswerRing,
    /// Answers read but not taken yet.
    pub(crate) input: FrameBuffer,
    /// The id of the last request sent on this worker's slot, shared by the slot's
    /// successive workers: ids increase, so a worker can tell a stale cancellation (of
    /// a request it already answered, or one sent to the worker before it) from a
    /// pending one.
    last_id: Arc<AtomicU64>,
    /// The worker said it runs nothing more (see `protocol::RETIRING`).
    pub(crate) retiring: bool,
}

impl WorkerHandle {
    /// Starts a worker; `driver` is woken when one of its tasks is cancelled.
    pub(crate) fn spawn(
        blueprint: &Blueprint,
        driver: Arc<Wake>,
        last_id: Arc<AtomicU64>,
    ) -> io::Result<WorkerHandle> {
        let config = &blueprint.config;
        let (parent_end, child_end) = UnixStream::pair()?;
        let settings = WorkerSettings {
            fd: CHANNEL_FD,
            parent: std::process::id(),
            depth: blueprint.depth,
            max_frame: config.max_frame_bytes,
            max_depth: config.max_depth,
            nested_workers: config.nested_workers,
            max_tasks: config.max_tasks.unwrap_or(0),
            max_memory: config.max_memory.unwrap_or(0),
            registry: registry::fingerprint(),
        };
        let mut env = config
            .env
            .apply(std::env::vars_os().filter(|(key, _)| key != ENV_WORKER));
        env.push((ENV_WORKER.into(), settings.encode().into()));
        let process = spawn::spawn(
            None,
            &[blueprint.argv0.as_os_str()],
            &env,
            OwnedFd::from(child_end),
        )?;
        // The worker's end of its cancel line, and the memory of the line's count, go
        // over the channel before anything else, so the worker has them before its
        // first request. (If this fails, dropping `process` kills and reaps it.)
        let (line, far_end) = UnixStream::pair()?;
        let (written, memory) = SharedCounter::create()?;
        let (answers, ring) = AnswerRing::create()?;
        handoff::send_fd(&parent_end, far_end.as_fd())?;
        handoff::send_fd(&parent_end, memory.as_fd())?;
        handoff::send_fd(&parent_end, ring.as_fd())?;
        parent_end.set_nonblocking(true)?;
        Ok(WorkerHandle {
            process,
            channel: parent_end,
            line: Arc::new(CancelLine::new(line, written, driver)),
            answers,
            input: FrameBuffer::default(),
            last_id,
            retiring: false,
        })
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        // Only the worker's holder sends requests: the add is never contended.
        self.last_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn channel(&self) -> std::os::fd::BorrowedFd<'_> {
        self.channel.as_fd()
    }

    /// Writes what the channel takes now of `slices`, without blocking.
    pub(crate) fn write(&self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        sys::send_vectored(self.channel.as_fd(), slices)
    }

    /// Reads what the worker sent so far: see [`read_answers`].
    pub(crate) fn read(&mut self, channel_ready: bool) -> io::Result<bool> {
        read_answers(&self.channel, &self.answers, &mut self.input, channel_ready)
    }

    /// Whether answers wait in the ring (no system call).
    pub(crate) fn has_answers(&self) -> bool {
        self.answers.has_unread()
    }

    /// Before a wait that may sleep: asks the worker for a wake-up on the channel once
    /// it has answered request `id` (or runs out of requests); `false` if there is no
    /// need to sleep (see `AnswerRing::sleep_until`).
    pub(crate) fn before_sleep(&self, id: u64) -> bool {
        self.answers.sleep_until(id)
    }

    /// After a wait: no wake-up is needed any more.
    pub(crate) fn awake(&self) {
        self.answers.awake();
    }

    /// Waits (spinning briefly on the ring, then sleeping) until the worker answered
    /// request `id` or its channel ended.
    pub(crate) fn await_answer(&self, id: u64) -> io::Result<()> {
        let started = std::time::Instant::now();
        for round in 0u32.. {
            if started.elapsed() >= SPIN_FOR_ANSWER {
                break;
            }
            for _ in 0..16 {
                if self.has_answers() {
                    return Ok(());
                }
                pause(round);
            }
        }
        loop {
            if !self.before_sleep(id) {
                return Ok(());
            }
            let [ready] = sys::poll([(self.channel.as_fd(), libc::POLLIN)], None)?;
            self.awake();
            if ready != 0 {
                return Ok(());
            }
        }
    }

    /// Reaps a worker whose channel ended, and describes how it ended. If it closed
    /// the channel but lingers, it is killed after a short wait.
    pub(crate) fn reap(mut self) -> Option<Ended> {
        drop(self.channel);
        for _ in 0..100 {
            match self.process.try_wait() {
                Ok(Some(ended)) => return Some(ended),
                Ok(None) => std::thread::sleep(Duration::from_millis(1)),
                Err(_) => return None,
            }
        }
        self.process.kill();
        self.process.wait().ok()
    }

    /// Kills and reaps a worker that can no longer be trusted.
    pub(crate) fn kill(self) {
        self.process.kill();
        let _ = self.reap();
    }

    /// The crash of this worker, as the failure of task `name`.
    pub(crate) fn crashed(self, name: &'static str) -> TaskError {
        let pid = self.process.id();
        let ended = self.reap();
        TaskError::crashed(
            name,
            pid,
            ended.and_then(|ended| ended.signal),
            ended.and_then(|ended| ended.exit_code),
        )
    }
}

/// Reads what a worker sent so far into `input`: its wake-ups on `channel`, then its
/// answers from `ring` (in that order: a worker that ended published every answer
/// before). `Ok(false)` once the channel ended (the worker is gone or closed it),
/// `Ok(true)` otherwise; an error only if the worker broke its ring. The channel is
/// read only when `channel_ready` (a `poll` saw it readable): the answers in the ring
/// need no system call.
///
/// A channel that fails to read (a worker that died with requests unread in its end
/// makes the kernel report `ECONNRESET`, not the end of file) ended too: the ring is
/// still read to its end, so that every answer the worker published before it died
/// is delivered and only the task it was running is blamed.
fn read_answers(
    channel: &UnixStream,
    ring: &AnswerRing,
    input: &mut FrameBuffer,
    channel_ready: bool,
) -> io::Result<bool> {
    let mut alive = true;
    let mut wake_ups = [0u8; 64];
    if channel_ready {
        loop {
            match (&*channel).read(&mut wake_ups) {
                Ok(0) => {
                    alive = false;
                    break;
                }
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    alive = false;
                    break;
                }
            }
        }
    }
    loop {
        match input.fill(&mut RingReader(ring)) {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(alive),
            Err(error) => return Err(error),
        }
    }
}

/// How long a waiting thread polls for its worker's answer before it sleeps: a
/// trivial task answers within microseconds, while putting a thread to sleep and
/// waking it costs 10-25 µs on a small VM.
pub(crate) const SPIN_FOR_ANSWER: Duration = Duration::from_micros(50);

/// One pause of a thread that waits for an answer: a spin at first, then a yield of
/// its core (the worker that is to answer may need it: a machine may have fewer cores
/// than busy threads).
pub(crate) fn pause(round: u32) {
    if round < 4 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// The failure of a task whose answer was over the frame limit.
pub(crate) fn too_large(name: &'static str, what: &str, max: u64) -> TaskError {
    TaskError::protocol(
        name,
        format!("{what} exceeds the maximum frame size of {max} bytes"),
    )
}

/// A worker's answer to task `name`: its encoded result, or the task's failure.
pub(crate) fn outcome<'a>(
    name: &'static str,
    response: &Response<'a>,
    max_frame: u64,
) -> Result<&'a [u8], TaskError> {
    status_outcome(name, response.status, response.payload, max_frame)
}

/// What an answer's `status` and `payload` mean for task `name` (also for a worker
/// host's answers, which carry the same statuses).
pub(crate) fn status_outcome<'a>(
    name: &'static str,
    status: u8,
    payload: &'a [u8],
    max_frame: u64,
) -> Result<&'a [u8], TaskError> {
    let text = || String::from_utf8_lossy(payload).into_owned();
    match status & !protocol::RETIRING {
        protocol::OK => Ok(payload),
        protocol::PANICKED => Err(TaskError::panicked_with(name, text())),
        protocol::CANCELLED => Err(TaskError::cancelled(name)),
        protocol::TOO_LARGE => Err(too_large(name, "the task's result", max_frame)),
        protocol::ARGS_DECODE => Err(TaskError::serialization(
            name,
            SerializationStage::ArgumentsIn,
            text(),
        )),
        protocol::RESULT_ENCODE => Err(TaskError::serialization(
            name,
            SerializationStage::ResultOut,
            text(),
        )),
        protocol::UNKNOWN_TASK => Err(TaskError::protocol(
            name,
            format!("the worker has no process task number {}", text()),
        )),
        other => Err(TaskError::protocol(
            name,
            format!("unknown response status {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    /// A channel whose worker end is closed with a request unread in it.
    fn channel_of_a_worker_that_died() -> UnixStream {
        let (parent, worker) = UnixStream::pair().expect("pair");
        parent.set_nonblocking(true).expect("non-blocking");
        (&parent).write_all(b"unread request").expect("send");
        drop(worker);
        parent
    }

    #[test]
    fn a_worker_that_dies_with_requests_unread_still_has_its_published_answers_read() {
        // What the kernel reports for such a channel: a reset, not the end of file
        // (so the case below is the one a dying worker produces).
        let probe = channel_of_a_worker_that_died();
        let reset = (&probe).read(&mut [0u8; 1]).expect_err("reset");
        assert_eq!(reset.kind(), io::ErrorKind::ConnectionReset);

        let (ring, fd) = AnswerRing::create().expect("ring");
        let worker_ring = AnswerRing::map(fd.as_fd()).expect("map");
        for id in [1u64, 2] {
            let mut response = Vec::new();
            protocol::begin_response(&mut response);
            protocol::finish_response(&mut response, id, protocol::OK);
            assert_eq!(worker_ring.publish(&response), response.len());
        }
        let channel = channel_of_a_worker_that_died();
        let mut input = FrameBuffer::default();
        let alive = read_answers(&channel, &ring, &mut input, true).expect("read");
        assert!(!alive, "the channel ended");
        let mut ids = Vec::new();
        while let Some(frame) = input.next_frame(1 << 20).expect("frame") {
            ids.push(protocol::parse_response(frame).expect("response").id);
        }
        assert_eq!(
            ids,
            [1, 2],
            "every answer published before the death is read"
        );
    }
}
