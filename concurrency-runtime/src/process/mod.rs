//! Process tasks: `#[cpu_task(process)]` runs a task in a worker process.
//!
//! Workers are copies of the current executable, started with exec (never a bare
//! `fork()` of this multi-threaded program), kept in a pool and reused. See
//! `README.md` next to this file for the design: start-up, protocol, crash
//! detection, shutdown and limits.

mod handoff;
mod pool;
mod protocol;
pub(crate) mod registry;
mod shared_counter;
mod worker;

use std::fmt;

pub(crate) use pool::{Job, JobControl, run_here, submit};

/// Settings of the process pool. Apply them with [`configure`] before the first
/// process task runs.
///
/// ```
/// use concurrency_runtime::process::{self, PoolConfig};
///
/// process::configure(PoolConfig::default().workers(2).max_frame_bytes(64 << 20)).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolConfig {
    /// How many worker processes run at once (default: the available parallelism).
    pub workers: usize,
    /// The largest frame (arguments or result, serialized) either side accepts, in
    /// bytes (default: 1 GiB). A longer frame fails the task instead of allocating.
    pub max_frame_bytes: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_frame_bytes: 1 << 30,
        }
    }
}

impl PoolConfig {
    /// Sets [`PoolConfig::workers`].
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// Sets [`PoolConfig::max_frame_bytes`].
    pub fn max_frame_bytes(mut self, bytes: u64) -> Self {
        self.max_frame_bytes = bytes;
        self
    }
}

/// Why [`configure`] refused a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The pool already started (a process task ran): settings apply before that.
    AlreadyStarted,
    /// A pool needs at least one worker.
    ZeroWorkers,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::AlreadyStarted => f.write_str("the process pool has already started"),
            ConfigError::ZeroWorkers => f.write_str("the process pool needs at least one worker"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Sets the pool's size and frame limit. Call it before the first process task; the
/// pool starts lazily with the default settings otherwise.
pub fn configure(config: PoolConfig) -> Result<(), ConfigError> {
    pool::configure(config)
}

/// The process ids of the pool's live workers, e.g. for monitoring. Empty before the
/// first process task.
///
/// ```
/// assert!(concurrency_runtime::process::worker_pids().len() <= 64);
/// ```
pub fn worker_pids() -> Vec<u32> {
    pool::worker_pids()
}
