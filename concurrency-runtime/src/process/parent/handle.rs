//! The parent's handle of one worker process: its process, its channel, its cancel
//! line, and turning its answers into task outcomes.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use super::cancel_line::{CancelLine, Wake};
use super::queue::Outcome;
use super::spawn;
use crate::error::{SerializationStage, TaskError};
use crate::process::config::PoolConfig;
use crate::process::handoff;
use crate::process::protocol::{self, FrameBuffer, FrameError, Response};
use crate::process::settings::{CHANNEL_FD, ENV_WORKER, WorkerSettings};
use crate::process::shared_counter::SharedCounter;
use crate::process::sys::{self, ChildProcess, Ended};

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
    /// Answers read but not taken yet.
    pub(crate) input: FrameBuffer,
    /// The id of the last request sent: ids increase, so the worker can tell a stale
    /// cancellation (of a request it already answered) from a pending one.
    last_id: u64,
    /// The worker said it runs nothing more (see `protocol::RETIRING`).
    pub(crate) retiring: bool,
}

impl WorkerHandle {
    /// Starts a worker; `driver` is woken when one of its tasks is cancelled.
    pub(crate) fn spawn(blueprint: &Blueprint, driver: Arc<Wake>) -> io::Result<WorkerHandle> {
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
        handoff::send_fd(&parent_end, far_end.as_fd())?;
        handoff::send_fd(&parent_end, memory.as_fd())?;
        parent_end.set_nonblocking(true)?;
        Ok(WorkerHandle {
            process,
            channel: parent_end,
            line: Arc::new(CancelLine::new(line, written, driver)),
            input: FrameBuffer::default(),
            last_id: 0,
            retiring: false,
        })
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    pub(crate) fn channel(&self) -> std::os::fd::BorrowedFd<'_> {
        self.channel.as_fd()
    }

    /// Writes what the channel takes now of `slices`, without blocking.
    pub(crate) fn write(&self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        sys::send_vectored(self.channel.as_fd(), slices)
    }

    /// Reads what the worker sent so far: `Ok(false)` at end of file (the worker is
    /// gone or closed the channel), `Ok(true)` otherwise.
    pub(crate) fn read(&mut self) -> io::Result<bool> {
        loop {
            match self.input.fill(&mut &self.channel) {
                Ok(0) => return Ok(false),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// The next answer read, if a whole one is in.
    pub(crate) fn next_response(&mut self, max_frame: u64) -> Result<Option<Response>, FrameError> {
        self.input
            .next_frame(max_frame)
            .map(|body| body.and_then(protocol::parse_response))
    }

    /// Waits (spinning briefly, then sleeping) until the channel is readable.
    pub(crate) fn await_readable(&self) -> io::Result<()> {
        let started = std::time::Instant::now();
        loop {
            let spinning = started.elapsed() < SPIN_FOR_ANSWER;
            let timeout = spinning.then_some(Duration::ZERO);
            let [ready] = sys::poll([(self.channel.as_fd(), libc::POLLIN)], timeout)?;
            if ready != 0 {
                return Ok(());
            }
            std::hint::spin_loop();
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

/// How long a waiting thread polls for its worker's answer before it sleeps: a
/// trivial task answers within microseconds, while putting a thread to sleep and
/// waking it costs 10-25 µs on a small VM.
pub(crate) const SPIN_FOR_ANSWER: Duration = Duration::from_micros(50);

/// The failure of a task whose answer was over the frame limit.
pub(crate) fn too_large(name: &'static str, what: &str, max: u64) -> TaskError {
    TaskError::protocol(
        name,
        format!("{what} exceeds the maximum frame size of {max} bytes"),
    )
}

/// A worker's answer to task `name`, as its outcome.
pub(crate) fn outcome(name: &'static str, response: Response, max_frame: u64) -> Outcome {
    let text = |payload: Vec<u8>| String::from_utf8_lossy(&payload).into_owned();
    match response.status & !protocol::RETIRING {
        protocol::OK => Ok(response.payload),
        protocol::PANICKED => Err(TaskError::panicked_with(name, text(response.payload))),
        protocol::CANCELLED => Err(TaskError::cancelled(name)),
        protocol::TOO_LARGE => Err(too_large(name, "the task's result", max_frame)),
        protocol::ARGS_DECODE => Err(TaskError::serialization(
            name,
            SerializationStage::ArgumentsIn,
            text(response.payload),
        )),
        protocol::RESULT_ENCODE => Err(TaskError::serialization(
            name,
            SerializationStage::ResultOut,
            text(response.payload),
        )),
        protocol::UNKNOWN_TASK => Err(TaskError::protocol(
            name,
            format!(
                "the worker has no task registered as `{}`",
                text(response.payload)
            ),
        )),
        other => Err(TaskError::protocol(
            name,
            format!("unknown response status {other}"),
        )),
    }
}
