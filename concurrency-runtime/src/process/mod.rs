//! Process tasks: `#[cpu_task(process)]` runs a task in a worker process.
//!
//! Workers are copies of the current executable, started with exec (never a bare
//! `fork()` of this multi-threaded program), kept in a pool and reused. See
//! `README.md` next to this file for the design: start-up, protocol, crash
//! detection, shutdown and limits.
//!
//! The parent's side is in `parent/` (queue, drivers, worker handles, spawning), the
//! worker's in `worker/`; both speak `protocol.rs` frames whose arguments and results
//! use the `wire.rs` format.

mod answer_ring;
pub(crate) mod codec;
mod config;
mod handoff;
pub(crate) mod parent;
pub(crate) mod protocol;
pub(crate) mod registry;
#[cfg(feature = "nats")]
pub mod remote;
mod settings;
mod shared_counter;
mod shared_memory;
mod sys;
pub(crate) mod wire;
mod worker;

pub use config::{ConfigError, PoolConfig};

/// Sets the pool's size, limits and isolation. Call it before the first process
/// task; the pool starts lazily with the default settings otherwise. Inside a worker
/// process it fails with [`ConfigError::InWorker`]: the pool there takes its settings
/// from the program's.
pub fn configure(config: PoolConfig) -> Result<(), ConfigError> {
    #[cfg(feature = "nats")]
    let mut config = config;
    #[cfg(feature = "nats")]
    let nats = config.nats.take();
    parent::configure(config)?;
    #[cfg(feature = "nats")]
    if let Some(nats) = nats {
        remote::configure(nats).map_err(|_| ConfigError::AlreadyStarted)?;
    }
    Ok(())
}

/// Sends process tasks to the pool, or to the worker hosts when NATS is configured.
pub(crate) fn submit(jobs: impl IntoIterator<Item = parent::Job>) {
    #[cfg(feature = "nats")]
    if remote::is_configured() {
        return remote::submit(jobs);
    }
    parent::submit(jobs);
}

/// Runs a process task on an idle local worker from this thread (see
/// `parent::run_here`); never with worker hosts.
pub(crate) fn run_here<T>(
    name: &'static str,
    body: &[u8],
    started: impl FnOnce(),
    decode: impl FnOnce(Result<&[u8], crate::error::TaskError>, parent::Ran) -> T,
) -> Option<T> {
    #[cfg(feature = "nats")]
    if remote::is_configured() {
        return None;
    }
    parent::run_here(name, body, started, decode)
}

/// The process ids of the pool's live workers, e.g. for monitoring. Empty before the
/// first process task.
///
/// ```
/// assert!(concurrency_runtime::process::worker_pids().len() <= 64);
/// ```
pub fn worker_pids() -> Vec<u32> {
    parent::worker_pids()
}
