//! The parent side: a lazily started pool of worker processes.
//!
//! Each worker slot has a driver thread that lives as long as the program: it takes
//! jobs from the shared queue, sends each to its worker, waits for the answer, and
//! replaces the worker when it dies. Workers are spawned from these long-lived threads
//! because `PR_SET_PDEATHSIG` fires when the *thread* that spawned a child exits.

use std::collections::VecDeque;
use std::io::{BufReader, BufWriter, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use tokio::sync::oneshot;

use super::handoff;
use super::protocol::{self, FrameError};
use super::shared_counter::SharedCounter;
use super::worker::{ENV_FD, ENV_MAX_FRAME, ENV_PARENT, HANDOFF_FD, WORKER_HOOK};
use super::{ConfigError, PoolConfig};
use crate::error::{SerializationStage, TaskError};

/// One task sent to the pool.
pub(crate) struct Job {
    pub(crate) task_id: &'static str,
    pub(crate) name: &'static str,
    pub(crate) args: Vec<u8>,
    pub(crate) reply: oneshot::Sender<Result<Vec<u8>, TaskError>>,
    pub(crate) control: Arc<JobControl>,
}

/// Cancellation of one job, shared by the caller and the driver that runs it.
///
/// Once the job is sent to a worker, the control holds that worker's cancel line and
/// the request's id. Cancelling sends the id down the line, and the *worker* decides:
/// it skips the request if it has not started it, kills itself if it is running it,
/// and ignores the message if it has finished it. Only the worker knows which of its
/// batched requests it runs at this instant, so only it can stop exactly this job and
/// never the next one.
#[derive(Debug, Default)]
pub(crate) struct JobControl {
    state: Mutex<ControlState>,
}

#[derive(Debug, Default)]
struct ControlState {
    cancelled: bool,
    sent: Option<(Arc<CancelLine>, u64)>,
}

impl JobControl {
    fn lock(&self) -> std::sync::MutexGuard<'_, ControlState> {
        lock(&self.state)
    }

    /// Cancels the job: a queued job is never sent; a sent one is stopped by its
    /// worker (skipped, or the worker is killed if it is running it).
    pub(crate) fn cancel(&self) {
        let mut state = self.lock();
        state.cancelled = true;
        if let Some((line, id)) = state.sent.take() {
            line.cancel(id);
        }
    }

    fn is_cancelled(&self) -> bool {
        self.lock().cancelled
    }

    /// Records that request `id` on the worker behind `line` is this job, before it is
    /// written; `false` if the job was cancelled (then it is not sent).
    fn attach(&self, line: &Arc<CancelLine>, id: u64) -> bool {
        let mut state = self.lock();
        if state.cancelled {
            return false;
        }
        state.sent = Some((Arc::clone(line), id));
        true
    }

    /// The worker answered the job or died: there is nothing left to cancel there.
    fn detach(&self) {
        self.lock().sent = None;
    }
}

/// The parent's end of a worker's cancel line: a second socket on which the parent
/// writes the ids of cancelled requests (8 bytes each, little-endian).
#[derive(Debug)]
pub(crate) struct CancelLine {
    socket: Mutex<UnixStream>,
    /// How many ids were written, shared with the worker: it reads the line before a
    /// request only when this moved.
    written: SharedCounter,
}

impl CancelLine {
    fn cancel(&self, id: u64) {
        let socket = lock(&self.socket);
        let message = id.to_le_bytes();
        let mut sent = 0;
        while sent < message.len() {
            // SAFETY: the pointer and length describe the unsent rest of `message`,
            // which outlives the call; send only reads it. MSG_NOSIGNAL: a worker that
            // died must not raise SIGPIPE in a program that does not ignore it.
            let written = unsafe {
                libc::send(
                    socket.as_raw_fd(),
                    message[sent..].as_ptr().cast(),
                    message.len() - sent,
                    libc::MSG_NOSIGNAL,
                )
            };
            match written {
                -1 if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {
                }
                // The worker is gone: nothing runs there to stop. (A live worker's
                // thread drains the line as messages come, so this does not block.)
                -1 | 0 => return,
                written => sent += written.unsigned_abs(),
            }
        }
        // After the write: a worker that sees the new count finds the id on the line.
        self.written.increment();
    }
}

struct Shared {
    config: PoolConfig,
    queue: Mutex<VecDeque<Job>>,
    available: Condvar,
    pids: Mutex<Vec<Option<u32>>>,
    /// Each slot's worker while its driver is idle, so that a synchronous caller can
    /// borrow it (see `run_here`).
    parked: Vec<Mutex<Parked>>,
    returned: Condvar,
}

/// Where a slot's worker is while its driver does not use it.
enum Parked {
    /// Idle, ready to lend.
    Worker(Worker),
    /// Borrowed by a synchronous caller; the driver waits for it back.
    Lent,
    /// With the driver, or not started (or dead): nothing to lend.
    None,
}

static CONFIG: Mutex<Option<PoolConfig>> = Mutex::new(None);
static POOL: OnceLock<Arc<Shared>> = OnceLock::new();

pub(crate) fn configure(config: PoolConfig) -> Result<(), ConfigError> {
    if config.workers == 0 {
        return Err(ConfigError::ZeroWorkers);
    }
    let mut slot = CONFIG
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if POOL.get().is_some() {
        return Err(ConfigError::AlreadyStarted);
    }
    *slot = Some(config);
    Ok(())
}

/// Starts the pool with its first job already queued, so that the first driver to
/// run finds it without a wake-up.
fn start(first: Option<Job>) -> Arc<Shared> {
    let config = CONFIG
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
        .unwrap_or_default();
    let shared = Arc::new(Shared {
        queue: Mutex::new(first.into_iter().collect()),
        available: Condvar::new(),
        pids: Mutex::new(vec![None; config.workers]),
        parked: (0..config.workers)
            .map(|_| Mutex::new(Parked::None))
            .collect(),
        returned: Condvar::new(),
        config,
    });
    for slot in 0..shared.config.workers {
        let shared = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name(format!("concurrency-process-{slot}"))
            .spawn(move || drive(&shared, slot));
        if let Err(error) = spawned {
            panic!("concurrency-runtime: could not start a process-pool thread: {error}");
        }
    }
    shared
}

/// Queues a job; its result arrives on `job.reply`.
pub(crate) fn submit(job: Job) {
    // Keep the worker start-up hook linked into every program that runs a process task.
    std::hint::black_box(&WORKER_HOOK);
    let mut job = Some(job);
    let shared = POOL.get_or_init(|| start(job.take()));
    if let Some(job) = job {
        lock(&shared.queue).push_back(job);
        shared.available.notify_one();
    }
}

/// Runs one job on the calling thread with an idle worker, if the pool has one and
/// no job is queued: the caller writes the request and reads the answer itself,
/// which saves the hand-offs to and from a driver thread. `None` sends the caller to
/// the queue. Only for a synchronous caller that waits anyway, and for tasks that
/// cannot be cancelled (no timeout).
pub(crate) fn run_here(
    task_id: &'static str,
    name: &'static str,
    args: &[u8],
) -> Option<Result<Vec<u8>, TaskError>> {
    let shared = POOL.get()?;
    if !lock(&shared.queue).is_empty() {
        return None; // do not overtake queued jobs
    }
    let (slot, worker) = (0..shared.parked.len()).find_map(|slot| {
        let mut parked = lock(&shared.parked[slot]);
        match std::mem::replace(&mut *parked, Parked::Lent) {
            Parked::Worker(worker) => Some((slot, worker)),
            other => {
                *parked = other;
                None
            }
        }
    })?;
    let max_frame = shared.config.max_frame_bytes;
    let control = JobControl::default();
    let mut worker = worker;
    let id = worker.next_id();
    let (outcome, survivor) = match worker.send(id, task_id, name, args, max_frame) {
        Err(Unsent::Refused(error)) => (Err(error), Some(worker)),
        _ => {
            let _ = worker.flush(); // a broken channel shows in the read
            match worker.receive(id, name, &control, max_frame) {
                (outcome, After::Alive(worker)) => (outcome, Some(worker)),
                (outcome, After::Died | After::Killed) => (outcome, None),
            }
        }
    };
    if survivor.is_none() {
        shared.set_pid(slot, None);
    }
    shared.park(slot, survivor);
    Some(outcome)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The pids of the pool's live workers (empty before the first process task).
pub(crate) fn worker_pids() -> Vec<u32> {
    POOL.get()
        .map(|shared| {
            shared
                .pids
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .flatten()
                .copied()
                .collect()
        })
        .unwrap_or_default()
}

impl Shared {
    /// Waits for work, then takes a fair share of the queue (at least one job).
    fn next_batch(&self) -> Vec<Job> {
        // A caller that just got its answer often submits its next task within
        // microseconds: look for it briefly before sleeping (a sleep and wake-up
        // costs 10-25 µs on a small VM).
        let started = std::time::Instant::now();
        let mut queue = self
            .queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while queue.is_empty() && started.elapsed() < SPIN_FOR_JOBS {
            drop(queue);
            std::hint::spin_loop();
            queue = self
                .queue
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        while queue.is_empty() {
            queue = self
                .available
                .wait(queue)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        let take = (queue.len() / self.config.workers).clamp(1, MAX_BATCH);
        // The requests after the first must fit in the socket's buffer: the driver
        // reads no answer before it has written the whole batch, so a worker blocked
        // writing a large answer would otherwise wait for a driver blocked writing.
        let mut bytes = 0;
        let take = queue
            .iter()
            .take(take)
            .skip(1)
            .position(|job| {
                bytes += job.args.len() + job.task_id.len() + 32;
                bytes > MAX_BATCH_BYTES
            })
            .map_or(take, |over| over + 1);
        let batch: Vec<Job> = queue.drain(..take).collect();
        if !queue.is_empty() {
            self.available.notify_one();
        }
        batch
    }

    /// Puts jobs that never started back at the head of the queue, in order.
    fn requeue(&self, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        let mut queue = self
            .queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for job in jobs.into_iter().rev() {
            queue.push_front(job);
        }
        drop(queue);
        self.available.notify_all();
    }

    /// Takes the slot's worker back from the idle spot, waiting while a caller
    /// borrows it; `None` if there is none.
    fn take_parked(&self, slot: usize) -> Option<Worker> {
        let mut parked = lock(&self.parked[slot]);
        loop {
            match std::mem::replace(&mut *parked, Parked::None) {
                Parked::Worker(worker) => return Some(worker),
                Parked::None => return None,
                Parked::Lent => {
                    *parked = Parked::Lent;
                    parked = self
                        .returned
                        .wait(parked)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
            }
        }
    }

    /// Leaves the slot's worker (if it survived) where callers can borrow it.
    fn park(&self, slot: usize, worker: Option<Worker>) {
        *lock(&self.parked[slot]) = worker.map_or(Parked::None, Parked::Worker);
        self.returned.notify_all();
    }

    fn set_pid(&self, slot: usize, pid: Option<u32>) {
        self.pids
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())[slot] = pid;
    }
}

/// How long an idle driver looks for a new job before it sleeps.
const SPIN_FOR_JOBS: std::time::Duration = std::time::Duration::from_micros(50);

/// How long a driver polls for its worker's answer before it blocks.
const SPIN_FOR_ANSWER: std::time::Duration = std::time::Duration::from_micros(50);

/// Most jobs a driver sends to its worker at once.
const MAX_BATCH: usize = 64;

/// Most request bytes a driver sends to its worker at once, beyond a first request
/// (sent whatever its size): well inside a Unix socket's default send buffer (208 KiB).
const MAX_BATCH_BYTES: usize = 32 * 1024;

/// The driver loop of one worker slot. Never returns (see the module docs).
///
/// It takes a batch of queued jobs (one when the queue is short, more when many
/// wait, so that the worker never idles between tasks), sends them all, then reads
/// the answers in order. If the worker dies, the job it was running gets the crash
/// error and the jobs queued behind it, which never started, go back to the queue.
fn drive(shared: &Shared, slot: usize) {
    loop {
        let batch: Vec<Job> = shared
            .next_batch()
            .into_iter()
            .filter(|job| !job.reply.is_closed() && !job.control.is_cancelled())
            .collect();
        if batch.is_empty() {
            continue; // all cancelled before they started
        }
        let mut current = match shared.take_parked(slot) {
            Some(current) => current,
            None => match Worker::spawn(&shared.config) {
                Ok(spawned) => {
                    shared.set_pid(slot, Some(spawned.child.id()));
                    spawned
                }
                Err(error) => {
                    for job in batch {
                        let _ = job
                            .reply
                            .send(Err(TaskError::spawn_failed(job.name, error.to_string())));
                    }
                    continue;
                }
            },
        };
        let max_frame = shared.config.max_frame_bytes;
        let mut sent = VecDeque::with_capacity(batch.len());
        let mut unsent = Vec::new();
        let mut jobs = batch.into_iter();
        for job in jobs.by_ref() {
            let id = current.next_id();
            if !job.control.attach(&current.cancel_line, id) {
                continue; // cancelled since it was taken from the queue
            }
            match current.send(id, job.task_id, job.name, &job.args, max_frame) {
                Ok(()) => sent.push_back((id, job)),
                Err(Unsent::Refused(error)) => {
                    job.control.detach();
                    let _ = job.reply.send(Err(error));
                }
                Err(Unsent::Broken) => {
                    job.control.detach();
                    unsent.push(job);
                    break;
                }
            }
        }
        unsent.extend(jobs);
        if current.flush().is_err() {
            // The worker is gone; the reads below report it on the first job.
        }
        // The worker runs the batch in order and answers each request before it starts
        // the next: if it dies, the job whose answer is missing is the one it was
        // running, and the jobs behind it never started.
        let mut after = After::Alive(current);
        while let Some((id, job)) = sent.pop_front() {
            after = match after {
                After::Alive(current) => {
                    let (outcome, next) = current.receive(id, job.name, &job.control, max_frame);
                    let _ = job.reply.send(outcome);
                    next
                }
                After::Died => {
                    job.control.detach();
                    unsent.push(job);
                    After::Died
                }
                After::Killed => {
                    job.control.detach();
                    let _ = job.reply.send(Err(TaskError::protocol(
                        job.name,
                        "its worker was replaced after a protocol error while this task was \
                         sent to it; the task may have run"
                            .into(),
                    )));
                    After::Killed
                }
            };
        }
        let survivor = match after {
            After::Alive(worker) => Some(worker),
            After::Died | After::Killed => None,
        };
        if survivor.is_none() {
            shared.set_pid(slot, None);
        }
        shared.park(slot, survivor);
        shared.requeue(unsent);
    }
}

fn response_too_large(name: &'static str, length: u64, max: u64) -> TaskError {
    TaskError::protocol(
        name,
        format!(
            "the worker's response of {length} bytes exceeds the maximum frame size of {max} bytes"
        ),
    )
}

/// The worker after an answer was read.
enum After {
    /// Usable for the next request.
    Alive(Worker),
    /// It died without answering: the requests after this one never started.
    Died,
    /// Killed after a protocol error: it may have started the requests after this one.
    Killed,
}

enum Unsent {
    /// This job cannot be sent (its frame is too large); the worker is fine.
    Refused(TaskError),
    /// The channel broke: the worker is gone.
    Broken,
}

struct Worker {
    child: Child,
    reader: BufReader<UnixStream>,
    writer: BufWriter<UnixStream>,
    cancel_line: Arc<CancelLine>,
    /// The id of the last request sent: ids increase, so the worker can tell a stale
    /// cancellation (of a request it already answered) from a pending one.
    last_id: u64,
}

impl Worker {
    fn spawn(config: &PoolConfig) -> std::io::Result<Worker> {
        let (parent_end, child_end) = UnixStream::pair()?;
        let mut command = Command::new(std::env::current_exe()?);
        // The child's end travels in the stdin slot: the one place, besides stdout and
        // stderr, where `Command` maps a descriptor without a `pre_exec` closure, and
        // without one `Command` uses `posix_spawn` (a vfork-style clone) instead of
        // `fork`, whose cost grows with the parent's memory. The worker's start-up hook
        // moves the channel off fd 0 and puts `/dev/null` there before any task runs,
        // and sets its own death signal (see `worker.rs`).
        command
            .env(ENV_FD, HANDOFF_FD.to_string())
            .env(ENV_PARENT, std::process::id().to_string())
            .env(ENV_MAX_FRAME, config.max_frame_bytes.to_string())
            .stdin(Stdio::from(OwnedFd::from(child_end)));
        let child = command.spawn();
        // Close this process's copy of the child's end (the command holds it), so that
        // the worker's death shows here as end-of-file.
        drop(command);
        let mut child = child?;
        let read_half = match parent_end.try_clone() {
            Ok(read_half) => read_half,
            Err(error) => {
                // Not left behind as a zombie: the worker exits on its closed channel.
                drop(parent_end);
                let _ = child.kill();
                let _ = child.wait();
                return Err(error);
            }
        };
        // The worker's end of its cancel line goes over the channel before anything
        // else, so the worker reads it before its first request.
        let handed_off = UnixStream::pair().and_then(|(line, far_end)| {
            let (written, memory) = SharedCounter::create()?;
            handoff::send_fd(&parent_end, far_end.as_fd())?;
            handoff::send_fd(&parent_end, memory.as_fd())?;
            Ok(CancelLine {
                socket: Mutex::new(line),
                written,
            })
        });
        let cancel_line = match handed_off {
            Ok(cancel_line) => Arc::new(cancel_line),
            Err(error) => {
                drop((parent_end, read_half));
                let _ = child.kill();
                let _ = child.wait();
                return Err(error);
            }
        };
        let reader = BufReader::with_capacity(64 * 1024, read_half);
        Ok(Worker {
            child,
            reader,
            writer: BufWriter::with_capacity(64 * 1024, parent_end),
            cancel_line,
            last_id: 0,
        })
    }

    fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    /// Writes one request (buffered; see `flush`).
    fn send(
        &mut self,
        id: u64,
        task_id: &'static str,
        name: &'static str,
        args: &[u8],
        max_frame: u64,
    ) -> Result<(), Unsent> {
        let header = protocol::request_header(id, task_id);
        let length = (header.len() + args.len()) as u64;
        if length > max_frame {
            return Err(Unsent::Refused(TaskError::protocol(
                name,
                format!(
                    "the arguments' frame of {length} bytes exceeds the maximum frame size of {max_frame} bytes"
                ),
            )));
        }
        protocol::write_frame(&mut self.writer, &[&header, args]).map_err(|_| Unsent::Broken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }

    /// Reads the answer to request `id`. Returns the outcome and the worker if it is
    /// still usable.
    fn receive(
        mut self,
        id: u64,
        name: &'static str,
        control: &JobControl,
        max_frame: u64,
    ) -> (Result<Vec<u8>, TaskError>, After) {
        self.await_readable();
        let read = protocol::read_frame(&mut self.reader, max_frame);
        control.detach();
        let body = match read {
            Ok(body) => body,
            Err(FrameError::TooLarge { length, max }) => {
                return (Err(response_too_large(name, length, max)), self.kill());
            }
            // The channel broke: the worker died (or closed it). Report how.
            Err(_) => return (Err(self.crashed(name)), After::Died),
        };
        let Some(response) = protocol::parse_response(body).filter(|response| response.id == id)
        else {
            return (
                Err(TaskError::protocol(
                    name,
                    "malformed response from the worker".into(),
                )),
                self.kill(),
            );
        };
        let text = |payload: Vec<u8>| String::from_utf8_lossy(&payload).into_owned();
        let outcome = match response.status {
            protocol::OK => Ok(response.payload),
            protocol::PANICKED => Err(TaskError::panicked_with(name, text(response.payload))),
            protocol::CANCELLED => Err(TaskError::cancelled(name)),
            protocol::TOO_LARGE => Err(match response.payload.first_chunk::<8>() {
                Some(length) => response_too_large(name, u64::from_le_bytes(*length), max_frame),
                None => TaskError::protocol(name, "malformed response from the worker".into()),
            }),
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
        };
        (outcome, After::Alive(self))
    }

    /// Waits briefly, without sleeping, for the worker's answer. A trivial task
    /// answers within microseconds, while putting this thread to sleep and waking it
    /// again costs 10-25 µs on a small VM; past the budget the blocking read sleeps.
    fn await_readable(&self) {
        if !self.reader.buffer().is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        let mut poll = libc::pollfd {
            fd: self.reader.get_ref().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        while started.elapsed() < SPIN_FOR_ANSWER {
            // SAFETY: `poll` points to one valid pollfd for the duration of the call;
            // a zero timeout makes the call return at once.
            if unsafe { libc::poll(&mut poll, 1, 0) } != 0 {
                return;
            }
            std::hint::spin_loop();
        }
    }

    /// Kills and reaps a worker that can no longer be trusted; never reused.
    fn kill(mut self) -> After {
        let _ = self.child.kill();
        let _ = self.child.wait();
        After::Killed
    }

    /// Reaps a worker whose channel broke and describes how it ended.
    fn crashed(mut self, name: &'static str) -> TaskError {
        let pid = self.child.id();
        // The channel is closed: the worker is exiting or gone. If it closed the
        // channel but lingers, do not wait forever.
        drop(self.writer);
        drop(self.reader);
        let mut status = None;
        for _ in 0..100 {
            match self.child.try_wait() {
                Ok(Some(exited)) => {
                    status = Some(exited);
                    break;
                }
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(1)),
                Err(_) => break,
            }
        }
        if status.is_none() {
            let _ = self.child.kill();
            status = self.child.wait().ok();
        }
        TaskError::crashed(
            name,
            pid,
            status.and_then(|s| s.signal()),
            status.and_then(|s| s.code()),
        )
    }
}
