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
    parent::configure(config)
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
