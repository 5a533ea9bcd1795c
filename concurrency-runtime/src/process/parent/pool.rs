//! The pool: started lazily with its settings, one driver thread per worker slot.
//!
//! Each slot's driver thread lives as long as the program: it takes tasks from the
//! shared queue, streams them to its worker, and replaces the worker when it dies.
//! Workers are spawned from these long-lived threads because `PR_SET_PDEATHSIG` fires
//! when the *thread* that spawned a child exits.

use std::io::IoSlice;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use super::cancel_line::Wake;
use super::driver;
use super::handle::{self, Blueprint, WorkerHandle};
use super::queue::{Job, Outcome, Queue};
use super::slots::{Parked, Pool, Slot};
use crate::error::TaskError;
use crate::process::config::{ConfigError, PoolConfig};
use crate::process::protocol::{self, FrameError};
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

/// Starts the pool with its first job already queued, so that the first driver to
/// run finds it without a wake-up.
fn start(first: Option<Job>) -> Pool {
    let (config, depth) = settings();
    let workers = config.workers;
    let argv0 = std::env::current_exe()
        .map(Into::into)
        .unwrap_or_else(|_| "concurrency-worker".into());
    Pool {
        queue: Queue::new(workers, first),
        slots: (0..workers)
            .map(|_| Slot {
                parked: Mutex::new(Parked::None),
                pid: Mutex::new(None),
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

/// Queues a job; its outcome arrives on its ticket.
pub(crate) fn submit(job: Job) {
    // Keep the worker start-up hook linked into every program that runs a process task.
    std::hint::black_box(&worker::WORKER_HOOK);
    if let Err(error) = check_depth(job.name) {
        job.ticket.finish(Err(error));
        return;
    }
    let mut job = Some(job);
    let mut started = false;
    let pool = POOL.get_or_init(|| {
        started = true;
        start(job.take())
    });
    if started {
        start_drivers(pool);
    }
    if let Some(job) = job {
        pool.queue.push(job);
    }
}

/// Runs one task on the calling thread with an idle worker, if the pool has one and
/// no task is queued: the caller writes the request and reads the answer itself,
/// which saves the hand-offs to and from a driver thread. `None` sends the caller to
/// the queue. Only for a synchronous caller that waits anyway, and for tasks that
/// cannot be cancelled (no timeout).
pub(crate) fn run_here(name: &'static str, frame: &mut [u8]) -> Option<Outcome> {
    let pool = POOL.get()?;
    check_depth(name).ok()?;
    if !pool.queue.is_empty() {
        return None; // do not overtake queued tasks
    }
    let (slot, mut worker) = (0..pool.slots.len()).find_map(|slot| {
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
    let id = worker.next_id();
    protocol::set_request_id(frame, id);
    let (outcome, survivor) = round_trip(worker, name, frame, id, max_frame);
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
fn round_trip(
    mut worker: WorkerHandle,
    name: &'static str,
    frame: &[u8],
    id: u64,
    max_frame: u64,
) -> (Option<Outcome>, Option<WorkerHandle>) {
    let mut sent = 0;
    while sent < frame.len() {
        match worker.write(&[IoSlice::new(&frame[sent..])]) {
            Ok(count) => sent += count,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                let _ = sys::poll([(worker.channel(), libc::POLLOUT)], None);
            }
            Err(_) => break, // gone: the read below tells how
        }
    }
    loop {
        match worker.next_response(max_frame) {
            Ok(Some(response)) if response.id == id => {
                if response.status & protocol::RETIRING != 0 {
                    worker.retiring = true;
                }
                if response.status & !protocol::RETIRING == protocol::RETIRED {
                    worker.retiring = true;
                    return (None, Some(worker));
                }
                return (
                    Some(handle::outcome(name, response, max_frame)),
                    Some(worker),
                );
            }
            Ok(Some(_)) => {
                worker.kill();
                let error = TaskError::protocol(name, "malformed response from the worker".into());
                return (Some(Err(error)), None);
            }
            Ok(None) => {}
            Err(FrameError::TooLarge { .. } | FrameError::Closed | FrameError::Io(_)) => {
                worker.kill();
                let error = handle::too_large(name, "the worker's response", max_frame);
                return (Some(Err(error)), None);
            }
        }
        if worker.await_readable().is_err() || !worker.read().unwrap_or(false) {
            if sent < frame.len() {
                // It died before it had the whole request: the task never ran.
                let _ = worker.reap();
                return (None, None);
            }
            return (Some(Err(worker.crashed(name))), None);
        }
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
