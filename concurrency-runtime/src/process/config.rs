//! The process pool's settings, as users write them.

use std::ffi::{OsStr, OsString};
use std::fmt;

/// Settings of the process pool. Apply them with [`configure`](super::configure)
/// before the first process task runs.
///
/// ```
/// use concurrency_runtime::process::{self, PoolConfig};
///
/// process::configure(
///     PoolConfig::default()
///         .workers(2)
///         .max_frame_bytes(64 << 20)
///         // Workers see only these variables of this process's environment.
///         .env_clear()
///         .env_allow("PATH")
///         .env_allow("LANG")
///         // A worker is replaced after 1,000 tasks or once it holds 512 MiB.
///         .max_tasks_per_worker(1_000)
///         .max_worker_memory(512 << 20),
/// )
/// .unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolConfig {
    /// How many worker processes run at once (default: the available parallelism).
    pub workers: usize,
    /// The largest frame (arguments or result, serialized) either side accepts, in
    /// bytes (default: 1 GiB). A longer frame fails the task instead of allocating.
    pub max_frame_bytes: u64,
    pub(crate) env: Environment,
    pub(crate) max_tasks: Option<u64>,
    pub(crate) max_memory: Option<u64>,
    pub(crate) max_depth: u32,
    pub(crate) nested_workers: usize,
    #[cfg(feature = "nats")]
    pub(crate) nats: Option<super::remote::NatsConfig>,
}

/// Which variables of the parent's environment a worker gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Environment {
    /// Start from nothing (then only `allow` and `set`), not from the whole environment.
    pub(crate) clear: bool,
    pub(crate) allow: Vec<OsString>,
    pub(crate) remove: Vec<OsString>,
    pub(crate) set: Vec<(OsString, OsString)>,
}

impl Environment {
    /// The variables a worker starts with, from `parent` (the parent's environment).
    pub(crate) fn apply(
        &self,
        parent: impl Iterator<Item = (OsString, OsString)>,
    ) -> Vec<(OsString, OsString)> {
        let removed = |key: &OsStr| self.remove.iter().any(|name| name == key);
        let mut vars: Vec<(OsString, OsString)> = parent
            .filter(|(key, _)| {
                (!self.clear || self.allow.iter().any(|name| name == key)) && !removed(key)
            })
            .collect();
        for (key, value) in &self.set {
            vars.retain(|(existing, _)| existing != key);
            if !removed(key) {
                vars.push((key.clone(), value.clone()));
            }
        }
        vars
    }
}

/// Default for [`PoolConfig::max_depth`].
pub(crate) const DEFAULT_MAX_DEPTH: u32 = 2;

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_frame_bytes: 1 << 30,
            env: Environment::default(),
            max_tasks: None,
            max_memory: None,
            max_depth: DEFAULT_MAX_DEPTH,
            nested_workers: 1,
            #[cfg(feature = "nats")]
            nats: None,
        }
    }
}

impl PoolConfig {
    /// Sends this program's process tasks to worker hosts through the NATS server of
    /// `config` instead of the local pool (Cargo feature `nats`; see
    /// [`remote`](super::remote)).
    #[cfg(feature = "nats")]
    pub fn nats(mut self, config: super::remote::NatsConfig) -> Self {
        self.nats = Some(config);
        self
    }

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

    /// Workers start with an empty environment instead of a copy of this process's:
    /// they get only the variables named by [`env_allow`](Self::env_allow) and set
    /// by [`env`](Self::env). Like `std::process::Command::env_clear`.
    pub fn env_clear(mut self) -> Self {
        self.env.clear = true;
        self
    }

    /// After [`env_clear`](Self::env_clear), passes this variable of this process's
    /// environment (as it is when each worker starts) to workers.
    pub fn env_allow(mut self, name: impl AsRef<OsStr>) -> Self {
        self.env.allow.push(name.as_ref().to_owned());
        self
    }

    /// Never passes this variable to workers, whatever else is set (for secrets that
    /// the tasks do not need).
    pub fn env_remove(mut self, name: impl AsRef<OsStr>) -> Self {
        self.env.remove.push(name.as_ref().to_owned());
        self
    }

    /// Sets a variable in every worker's environment.
    pub fn env(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .set
            .push((name.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Replaces a worker after it has run this many tasks (like Python's
    /// `max_tasks_per_child`): the worker finishes its task and runs nothing more,
    /// the tasks sent to it behind that one go to its replacement, and none runs
    /// twice. Default: no limit.
    pub fn max_tasks_per_worker(mut self, tasks: u64) -> Self {
        self.max_tasks = Some(tasks);
        self
    }

    /// Replaces a worker once its resident memory (RSS) exceeds `bytes`, checked after
    /// each task, as for [`max_tasks_per_worker`](Self::max_tasks_per_worker): a task
    /// that leaks cannot grow a worker without bound. Default: no limit.
    pub fn max_worker_memory(mut self, bytes: u64) -> Self {
        self.max_memory = Some(bytes);
        self
    }

    /// How deep process tasks nest: a process task that calls process tasks runs them
    /// in its worker's own pool, whose workers are one level deeper. The program is at
    /// depth 0 and the pool's workers at depth 1; a call that would run deeper than
    /// `depth` fails with [`TaskErrorKind::Worker`](crate::TaskErrorKind::Worker)
    /// naming the depth, so that a runaway recursion cannot fill the machine with
    /// processes. Default: 2 (a process task may call process tasks once more); 1
    /// forbids nesting.
    pub fn max_depth(mut self, depth: u32) -> Self {
        self.max_depth = depth;
        self
    }

    /// How many workers the pool inside a worker has, for process tasks that a process
    /// task calls (default: 1; the outer pool already uses the cores).
    pub fn nested_workers(mut self, workers: usize) -> Self {
        self.nested_workers = workers;
        self
    }

    /// Checks the settings (see [`ConfigError`]).
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        let invalid = |option: &'static str, reason: &str| {
            Err(ConfigError::Invalid {
                option,
                reason: reason.to_owned(),
            })
        };
        if self.workers == 0 {
            return Err(ConfigError::ZeroWorkers);
        }
        if self.max_tasks == Some(0) {
            return invalid("max_tasks_per_worker", "a worker must be allowed one task");
        }
        if self.max_depth == 0 {
            return invalid("max_depth", "the pool's own workers are at depth 1");
        }
        if self.nested_workers == 0 {
            return invalid("nested_workers", "a nested pool needs at least one worker");
        }
        if self.max_memory.is_some() && std::fs::File::open("/proc/self/statm").is_err() {
            return invalid(
                "max_worker_memory",
                "this system has no /proc/self/statm to read a worker's memory from",
            );
        }
        Ok(())
    }
}

/// Why [`configure`](super::configure) refused a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The pool already started (a process task ran): settings apply before that.
    AlreadyStarted,
    /// A pool needs at least one worker.
    ZeroWorkers,
    /// Called inside a worker process: the pool there takes its settings from the
    /// program's configuration ([`PoolConfig::nested_workers`], [`PoolConfig::max_depth`]).
    InWorker,
    /// A setting is out of range or cannot be honoured here.
    Invalid {
        /// The `PoolConfig` method.
        option: &'static str,
        /// Why.
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::AlreadyStarted => f.write_str("the process pool has already started"),
            ConfigError::ZeroWorkers => f.write_str("the process pool needs at least one worker"),
            ConfigError::InWorker => f.write_str(
                "a worker process's pool takes its settings from the program's configuration",
            ),
            ConfigError::Invalid { option, reason } => write!(f, "invalid `{option}`: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn the_environment_policy_keeps_allows_removes_and_sets() {
        let parent = vars(&[("PATH", "/bin"), ("SECRET", "x"), ("HOME", "/h")]);
        let all = PoolConfig::default();
        assert_eq!(all.env.apply(parent.clone().into_iter()), parent);
        let cleared = PoolConfig::default()
            .env_clear()
            .env_allow("PATH")
            .env_allow("MISSING")
            .env("MODE", "worker");
        assert_eq!(
            cleared.env.apply(parent.clone().into_iter()),
            vars(&[("PATH", "/bin"), ("MODE", "worker")])
        );
        let removed = PoolConfig::default()
            .env_remove("SECRET")
            .env("HOME", "/w")
            .env("SECRET", "y");
        assert_eq!(
            removed.env.apply(parent.into_iter()),
            vars(&[("PATH", "/bin"), ("HOME", "/w")])
        );
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        assert_eq!(PoolConfig::default().check(), Ok(()));
        assert_eq!(
            PoolConfig::default().workers(0).check(),
            Err(ConfigError::ZeroWorkers)
        );
        for config in [
            PoolConfig::default().max_tasks_per_worker(0),
            PoolConfig::default().max_depth(0),
            PoolConfig::default().nested_workers(0),
        ] {
            assert!(matches!(config.check(), Err(ConfigError::Invalid { .. })));
        }
        assert_eq!(
            PoolConfig::default().max_worker_memory(1 << 30).check(),
            Ok(())
        );
    }
}
