//! The pool: started lazily with its settings, one driver thread per worker slot.
//!
//! Each slot's driver thread lives as long as the program: it takes tasks from the
//! shared queue, streams them to its worker, and replaces the worker when it dies.
//! Workers are spawned from these long-lived threads because `PR_SET_PDEATHSIG` fires
//! when the *thread* that spawned a child exits.

use std::io::IoSlice;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use super::cancel_line::{self, Wake};
use super::driver;
use super::handle::{self, Blueprint, WorkerHandle};
use super::queue::{Job, Queue};
use super::slots::{Parked, Pool, Slot};
use crate::error::TaskError;
use crate::process::config::{ConfigError, PoolConfig};
use crate::process::protocol::{self, FrameError, Ran};
use crate::process::{sys, worker};
use crate::sync::lock;

static CONFIG: Mutex<Option<PoolConfig>> = Mutex::new(None);
static POOL: OnceLock<Pool> = OnceLock::new();

pub(crate) fn configure(config: PoolConfig) -> Result<(), ConfigError> {
    if worker::settings().is_some() {
        return Err(ConfigError::InWorker);
    }
    config.check()?;
    let mut slot = lock(&CONFIG);
    if POOL.get().is_some() {
        return Err(ConfigError::AlreadyStarted);
    }
    *slot = Some(config);
    Ok(())
}

/// The settings the pool runs (or will run) with: in a worker, those its parent
/// passed on for the pool inside it.
fn settings() -> (PoolConfig, u32) {
    if let Some(pool) = POOL.get() {
        return (pool.blueprint.config.clone(), pool.blueprint.depth);
    }
    match worker::settings() {
        Some(outer) => {
            let mut config = PoolConfig::default()
                .workers(outer.nested_workers)
                .max_frame_bytes(outer.max_frame)
                .max_depth(outer.max_depth)
                .nested_workers(outer.nested_workers);
            config.max_tasks = (outer.max_tasks > 0).then_some(outer.max_tasks);
            config.max_memory = (outer.max_memory > 0).then_some(outer.max_memory);
            (config, outer.depth + 1)
        }
        None => (lock(&CONFIG).clone().unwrap_or_default(), 1),
    }
}

/// The largest request body the pool accepts.
pub(crate) fn max_frame_bytes() -> u64 {
    match POOL.get() {
        Some(pool) => pool.blueprint.config.max_frame_bytes,
        None => settings().0.max_frame_bytes,
    }
}

/// A pool with its queue; its drivers start once the first jobs are queued, so that
/// the first driver to run finds them without a wake-up.
fn start() -> Pool {
    let (config, depth) = settings();
    let workers = config.workers;
    let argv0 = std::env::current_exe()
        .map(Into::into)
        .unwrap_or_else(|_| "concurrency-worker".into());
    Pool {
        queue: Queue::new(workers),
        slots: (0..workers)
            .map(|_| Slot {
                parked: Mutex::new(Parked::None),
                pid: Mutex::new(None),
                last_id: Arc::default(),
            })
            .collect(),
        returned: Condvar::new(),
        blueprint: Blueprint {
            config,
            depth,
            argv0,
        },
    }
}

/// Starts the driver threads of a pool just created.
fn start_drivers(pool: &'static Pool) {
    cancel_line::install(pool.slots.len());
    for slot in 0..pool.slots.len() {
        let wake = match Wake::new() {
            Ok(wake) => Arc::new(wake),
            Err(error) => {
                panic!("concurrency-runtime: could not start a process-pool thread: {error}")
            }
        };
        let spawned = std::thread::Builder::new()
            .name(format!("concurrency-process-{slot}"))
            .spawn(move || driver::drive(pool, slot, wake));
        if let Err(error) = spawned {
            panic!("concurrency-runtime: could not start a process-pool thread: {error}");
        }
    }
}

/// Whether a process task called here may run: `Err` if it would run deeper than the
/// pool's `max_depth`.
pub(crate) fn check_depth(name: &'static str) -> Result<(), TaskError> {
    let (depth, max_depth) = match (POOL.get(), worker::settings()) {
        (Some(pool), _) => (pool.blueprint.depth, pool.blueprint.config.max_depth),
        (None, Some(outer)) => (outer.depth + 1, outer.max_depth),
        (None, None) => (
            1,
            lock(&CONFIG)
                .as_ref()
                .map_or(crate::process::config::DEFAULT_MAX_DEPTH, |c| c.max_depth),
        ),
    };
    if depth <= max_depth {
        return Ok(());
    }
    Err(TaskError::protocol(
        name,
        format!(
            "process tasks nest at most {max_depth} deep (`PoolConfig::max_depth`): this call, \
             in a worker at depth {}, would run at depth {depth}",
            depth - 1
        ),
    ))
}

/// Queues jobs, in order; each one's answer goes to its sink.
pub(crate) fn submit(jobs: impl IntoIterator<Item = Job>) {
    // Keep the worker start-up hook linked into every program that runs a process task.
    std::hint::black_box(&worker::WORKER_HOOK);
    let mut jobs = jobs.into_iter().peekable();
    let Some(first) = jobs.peek() else {
        return;
    };
    if check_depth(first.name()).is_err() {
        for job in jobs {
            if let Err(error) = check_depth(job.name()) {
                job.fail(error);
            }
        }
        return;
    }
    let mut started = false;
    let pool = POOL.get_or_init(|| {
        started = true;
        start()
    });
    pool.queue.push(jobs);
    if started {
        start_drivers(pool);
    }
}

/// Runs one task on the calling thread with an idle worker, if the pool has one and
/// no task is queued: the caller writes the request and reads the answer itself,
/// which saves the hand-offs to and from a driver thread. `decode` turns the answer
/// into the task's outcome. `None` sends the caller to the queue. Only for a
/// synchronous caller that waits anyway, and for tasks that cannot be cancelled (no
/// timeout).
pub(crate) fn run_here<T>(
    name: &'static str,
    body: &[u8],
    started: impl FnOnce(),
    decode: impl FnOnce(Result<&[u8], TaskError>, Ran) -> T,
) -> Option<T> {
    let pool = POOL.get()?;
    check_depth(name).ok()?;
    if !pool.queue.is_empty() {
        return None; // do not overtake queued tasks
    }
    let (slot, worker) = (0..pool.slots.len()).find_map(|slot| {
        let mut parked = lock(&pool.slots[slot].parked);
        match std::mem::replace(&mut *parked, Parked::Lent) {
            Parked::Worker(worker) => Some((slot, worker)),
            other => {
                *parked = other;
                None
            }
        }
    })?;
    let max_frame = pool.blueprint.config.max_frame_bytes;
    started();
    let (outcome, survivor) = round_trip(worker, name, body, max_frame, decode);
    let survivor = match survivor {
        Some(worker) if worker.retiring => {
            let _ = worker.reap();
            None
        }
        other => other,
    };
    if survivor.is_none() {
        pool.set_pid(slot, None);
    }
    pool.park(slot, survivor);
    outcome
}

/// Sends one request to an idle worker and reads its answer, on this thread. `None`
/// as the outcome: the task did not run (send it to the queue).
fn round_trip<T>(
    mut worker: WorkerHandle,
    name: &'static str,
    body: &[u8],
    max_frame: u64,
    decode: impl FnOnce(Result<&[u8], TaskError>, Ran) -> T,
) -> (Option<T>, Option<WorkerHandle>) {
    let id = worker.next_id();
    let header = protocol::request_header(id, body.len());
    let total = header.len() + body.len();
    let mut sent = 0;
    while sent < total {
        let slices = match header.get(sent..) {
            Some(rest) if !rest.is_empty() => [IoSlice::new(rest), IoSlice::new(body)],
            _ => [
                IoSlice::new(&body[sent - header.len()..]),
                IoSlice::new(&[]),
            ],
        };
        match worker.write(&slices) {
            Ok(count) => sent += count,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                let _ = sys::poll([(worker.channel(), libc::POLLOUT)], None);
            }
            Err(_) => break, // gone: the read below tells how
        }
    }
    let mut ended = false;
    loop {
        let broken = match worker.input.next_frame(max_frame) {
            Ok(Some(frame)) => match protocol::parse_response(frame) {
                Some(response) if response.id == id => {
                    let status = response.status;
                    let ran = Ran {
                        pid: worker.process.id(),
                        ..response.ran
                    };
                    let value = (status & !protocol::RETIRING != protocol::RETIRED)
                        .then(|| decode(handle::outcome(name, &response, max_frame), ran));
                    if status & protocol::RETIRING != 0 || value.is_none() {
                        worker.retiring = true;
                    }
                    return (value, Some(worker));
                }
                _ => TaskError::protocol(name, "malformed response from the worker".into()),
            },
            Ok(None) if ended => {
                if sent < total {
                    // It died before it had the whole request: the task never ran.
                    let _ = worker.reap();
                    return (None, None);
                }
                return (
                    Some(decode(Err(worker.crashed(name)), Ran::default())),
                    None,
                );
            }
            Ok(None) => {
                // At the end of the channel, an answer read with it is still taken.
                // The channel is read only if the wait ended without an answer: it
                // ended, or a wake-up came for an answer that is in the ring by now.
                ended = worker.await_answer(id).is_err()
                    || !worker.read(!worker.has_answers()).unwrap_or(false);
                continue;
            }
            Err(FrameError { .. }) => handle::too_large(name, "the worker's response", max_frame),
        };
        worker.kill();
        return (Some(decode(Err(broken), Ran::default())), None);
    }
}

/// The pids of the pool's live workers (empty before the first process task).
pub(crate) fn worker_pids() -> Vec<u32> {
    POOL.get()
        .map(|pool| {
            pool.slots
                .iter()
                .filter_map(|slot| *lock(&slot.pid))
                .collect()
        })
        .unwrap_or_default()
}
