//! A collection of process tasks (`run_concurrently!(for ...)`) sent as one batch.
//!
//! Sent one by one, each process task costs its own shared record and request buffer
//! (two allocations), a queue hand-off and a wake-up of its caller. A batch encodes
//! every task's request into one buffer, queues all of them with one lock, and gives
//! the drivers one sink for all of them: a driver delivers each answer in place
//! (decoded and judged on the driver's thread), and the caller is woken once, when
//! the last task is done or at the first failure that stops the group.
//!
//! What stays as for a single task: each task has its own cancellation (a task never
//! sent is never run; a running one is stopped by its worker, and no other task is
//! touched), a crash fails only its task, the frame limits apply to each request and
//! answer, and each task runs at most once. A failure in a fail-fast group, or
//! dropping the group, cancels the tasks not done yet. Tasks with options (timeout,
//! retries, limit) keep the one by one path, which knows how to supervise them.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use super::cpu_batch::{BatchFuture, Finish};
use crate::error::{SerializationStage, TaskError};
use crate::observe::Attempt;
use crate::process::parent::{self, Answer, Control, Job, Ran, Sink};
use crate::process::registry::ProcessEntry;
use crate::process::wire;
use crate::progress::Reporter;
use crate::sync::{WakerCell, lock};

/// How a task's result is decoded.
pub(crate) type DecodeResult<R> = fn(&[u8]) -> Result<R, wire::Error>;

/// A task's result from its worker's answer: decoded on the driver thread that read
/// it, with a panic in a `Deserialize` impl caught as the task's.
pub(crate) fn decoded<R>(
    name: &'static str,
    decode: DecodeResult<R>,
    bytes: &[u8],
) -> Result<R, TaskError> {
    match catch_unwind(AssertUnwindSafe(|| decode(bytes))) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(TaskError::serialization(
            name,
            SerializationStage::ResultIn,
            error.to_string(),
        )),
        Err(payload) => Err(TaskError::panicked(name, payload)),
    }
}

/// Tells `attempt` which worker ran it, and when (if a worker did).
#[inline]
pub(crate) fn ran_on_worker(attempt: &mut Attempt, ran: Ran) {
    if ran.pid != 0 {
        attempt.ran_on_worker(ran.pid, ran.started, ran.ended);
    }
}

/// The registry number of the last entry looked up, for a collection whose tasks are
/// mostly of one function.
pub(crate) type KnownEntry = Option<(&'static ProcessEntry, u32)>;

/// A task of a batch, as the batch sees it (implemented by `process.rs`).
pub(crate) trait Request {
    fn name(&self) -> &'static str;
    /// The span of the task's attempt.
    #[cfg(feature = "tracing")]
    fn attempt(&self) -> Attempt;
    /// Appends the body of the task's request to `out`, within `max_frame`.
    fn encode(
        &self,
        out: &mut Vec<u8>,
        max_frame: u64,
        known: &mut KnownEntry,
    ) -> Result<(), TaskError>;
}

/// Tasks whose requests are encoded, then queued, together: the drivers start on the
/// first ones while the caller encodes the rest.
const CHUNK: usize = 128;

/// Starts the batch of the `count` tasks `tasks`, whose results `decode` decodes;
/// `finish` judges each outcome for the group.
pub(crate) fn start<T, R, I, E>(
    count: usize,
    tasks: impl Iterator<Item = T>,
    decode: DecodeResult<R>,
    finish: Finish<R, I, E>,
    reporter: Option<Arc<Reporter>>,
) -> BatchFuture<I, E>
where
    T: Request,
    R: Send + 'static,
    I: Send + 'static,
    E: Send + 'static,
{
    if count == 0 {
        return Box::pin(std::future::ready(Ok(Vec::new())));
    }
    let max_frame = parent::max_frame_bytes();
    let batch = Arc::new(Batch {
        chunks: (0..count.div_ceil(CHUNK))
            .map(|_| OnceLock::new())
            .collect(),
        controls: (0..count).map(|_| Control::default()).collect(),
        #[cfg(feature = "tracing")]
        attempts: (0..count).map(|_| Mutex::new(None)).collect(),
        items: (0..count).map(|_| Mutex::new(None)).collect(),
        decode,
        finish,
        done: AtomicUsize::new(0),
        stopped: AtomicBool::new(false),
        failure: Mutex::new(None),
        waker: WakerCell::default(),
        reporter,
    });
    let sink: Arc<dyn Sink> = Arc::clone(&batch) as Arc<dyn Sink>;
    let mut tasks = tasks.into_iter();
    let mut queued = Vec::with_capacity(CHUNK);
    let mut known = None;
    for (number, slot) in batch.chunks.iter().enumerate() {
        let first = number * CHUNK;
        let len = CHUNK.min(count - first);
        let mut chunk = Chunk {
            names: Vec::with_capacity(len),
            ends: Vec::with_capacity(len),
            bodies: Vec::new(),
        };
        for (offset, task) in tasks.by_ref().take(len).enumerate() {
            let index = first + offset;
            #[cfg(feature = "tracing")]
            {
                *lock(&batch.attempts[index]) = Some(task.attempt());
            }
            let start = chunk.bodies.len();
            let encoded = task.encode(&mut chunk.bodies, max_frame, &mut known);
            if offset == 0 {
                // Tasks of one collection tend to have requests of a size.
                chunk.bodies.reserve(chunk.bodies.len() * (len - 1));
            }
            match encoded {
                Ok(()) => queued.push(index),
                // A request that cannot be sent is the task's outcome at once.
                Err(error) => {
                    chunk.bodies.truncate(start);
                    batch.judge(task.name(), index, Err(error));
                    batch.done.fetch_add(1, Ordering::AcqRel);
                }
            }
            chunk.names.push(task.name());
            chunk.ends.push(chunk.bodies.len());
        }
        if batch.stopped.load(Ordering::Acquire) {
            break; // a failure stopped the group: send nothing more
        }
        // Set before its tasks are queued: a driver finds it.
        let _ = slot.set(chunk);
        crate::process::submit(queued.drain(..).map(|index| Job {
            sink: Arc::clone(&sink),
            index,
        }));
    }
    Box::pin(Waiting { batch })
}

/// The requests of `CHUNK` consecutive tasks of a batch.
struct Chunk {
    names: Vec<&'static str>,
    /// Where each task's request body ends in `bodies` (it starts where the previous
    /// one's ends).
    ends: Vec<usize>,
    /// The request bodies, back to back.
    bodies: Vec<u8>,
}

struct Batch<R, I, E> {
    /// Each chunk's requests, set before its tasks are queued.
    chunks: Box<[OnceLock<Chunk>]>,
    controls: Box<[Control]>,
    /// Each task's attempt span, until its answer (only with the feature: a batch may
    /// hold a million tasks).
    #[cfg(feature = "tracing")]
    attempts: Box<[Mutex<Option<Attempt>>]>,
    /// Each task's judged outcome, once it is done.
    items: Box<[Mutex<Option<I>>]>,
    /// How the tasks' results are decoded (all of them return `R`).
    decode: DecodeResult<R>,
    finish: Finish<R, I, E>,
    /// How many tasks are done.
    done: AtomicUsize,
    /// Raised by a failure that stops the group, or when the group is dropped.
    stopped: AtomicBool,
    /// The failure that stopped the group.
    failure: Mutex<Option<E>>,
    waker: WakerCell,
    /// `progress(..)`: told of the tasks that end, per read of answers.
    reporter: Option<Arc<Reporter>>,
}

impl<R, I, E> Batch<R, I, E> {
    /// Cancels every task not done yet (once).
    fn stop(&self) {
        if !self.stopped.swap(true, Ordering::AcqRel) {
            for control in &self.controls {
                control.cancel();
            }
        }
    }

    /// Keeps task `index`'s judged outcome, or stops the group at its failure.
    fn judge(&self, name: &'static str, index: usize, outcome: Result<R, TaskError>) {
        match (self.finish)(name, outcome, Vec::new()) {
            Ok(item) => *lock(&self.items[index]) = Some(item),
            Err(error) => {
                lock(&self.failure).get_or_insert(error);
                self.stop();
            }
        }
    }

    fn is_complete(&self) -> bool {
        self.done.load(Ordering::Acquire) == self.controls.len()
    }

    /// The chunk of task `index`, and the task's place in it (a task is queued only
    /// once its chunk is set).
    fn chunk(&self, index: usize) -> Option<(&Chunk, usize)> {
        let chunk = self.chunks.get(index / CHUNK)?.get()?;
        Some((chunk, index % CHUNK))
    }
}

impl<R, I, E> Sink for Batch<R, I, E>
where
    R: Send + 'static,
    I: Send + 'static,
    E: Send + 'static,
{
    fn name(&self, index: usize) -> &'static str {
        self.chunk(index)
            .and_then(|(chunk, at)| chunk.names.get(at).copied())
            .unwrap_or("(unknown)")
    }

    fn body(&self, index: usize) -> &[u8] {
        let Some((chunk, at)) = self.chunk(index) else {
            return &[];
        };
        let start = at.checked_sub(1).map_or(0, |previous| chunk.ends[previous]);
        &chunk.bodies[start..chunk.ends[at]]
    }

    fn control(&self, index: usize) -> &Control {
        &self.controls[index]
    }

    fn deliver(&self, index: usize, answer: Answer<'_>, ran: Ran) {
        let name = self.name(index);
        let outcome = match answer {
            Answer::Ok(bytes) => decoded(name, self.decode, bytes),
            Answer::Err(error) => Err(error),
        };
        #[cfg(feature = "tracing")]
        if let Some(mut attempt) = lock(&self.attempts[index]).take() {
            ran_on_worker(&mut attempt, ran);
            attempt.finish_with(&outcome);
        }
        #[cfg(not(feature = "tracing"))]
        let _ = ran;
        self.judge(name, index, outcome);
    }

    fn settle(&self, count: usize) -> Option<Waker> {
        if let Some(reporter) = &self.reporter {
            reporter.ended(count);
        }
        // Counted once per driver's read, not per task: the drivers share this word.
        let done = self.done.fetch_add(count, Ordering::AcqRel) + count;
        if done == self.controls.len() || self.stopped.load(Ordering::Acquire) {
            self.waker.take()
        } else {
            None
        }
    }

    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}

/// The waiting side of a batch. Dropping it before the batch is done cancels the
/// tasks not done yet.
struct Waiting<R, I, E> {
    batch: Arc<Batch<R, I, E>>,
}

impl<R, I, E> Future for Waiting<R, I, E> {
    type Output = Result<Vec<I>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let batch = &self.batch;
        // Registered before looking, so a task that ends meanwhile wakes us.
        batch.waker.register(cx.waker());
        if let Some(error) = lock(&batch.failure).take() {
            return Poll::Ready(Err(error));
        }
        if !batch.is_complete() {
            return Poll::Pending;
        }
        let items = batch
            .items
            .iter()
            .map(|item| {
                lock(item).take().unwrap_or_else(|| {
                    unreachable!("a batch's tasks are all done, each gave an item")
                })
            })
            .collect();
        Poll::Ready(Ok(items))
    }
}

impl<R, I, E> Drop for Waiting<R, I, E> {
    fn drop(&mut self) {
        if !self.batch.is_complete() {
            self.batch.stop();
        }
    }
}
