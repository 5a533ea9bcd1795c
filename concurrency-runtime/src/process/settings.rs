//! What a parent tells a worker it starts: one environment variable, written by the
//! parent (`parent/spawn.rs`) and read by the worker's start-up hook (`worker/`).

use std::fmt::Write;

/// The marker: its presence makes a program a worker; its value holds the settings.
pub(crate) const ENV_WORKER: &str = "CONCURRENCY_RUNTIME_WORKER";

/// The descriptor a worker's channel arrives on.
pub(crate) const CHANNEL_FD: i32 = 3;

/// A worker's settings, from its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkerSettings {
    /// The channel's descriptor.
    pub(crate) fd: i32,
    /// The parent's pid: a worker whose parent already died exits at once.
    pub(crate) parent: u32,
    /// How deep this worker is: the pool's workers are at 1, the workers of a pool
    /// inside a worker at 2, and so on.
    pub(crate) depth: u32,
    /// The largest frame either side accepts.
    pub(crate) max_frame: u64,
    /// The deepest a process task may run (see `PoolConfig::max_depth`).
    pub(crate) max_depth: u32,
    /// Workers of a pool inside a worker.
    pub(crate) nested_workers: usize,
    /// Tasks a worker runs before it is replaced (0: no limit).
    pub(crate) max_tasks: u64,
    /// Resident bytes past which a worker is replaced (0: no limit).
    pub(crate) max_memory: u64,
    /// The parent's registry of process tasks (`registry::fingerprint`): requests name
    /// tasks by their number in it, so the worker's must be the same.
    pub(crate) registry: u64,
}

impl WorkerSettings {
    /// The variable's value.
    pub(crate) fn encode(&self) -> String {
        let mut value = String::new();
        let _ = write!(
            value,
            "fd={} parent={} depth={} max_frame={} max_depth={} nested={} tasks={} memory={} \
             registry={:x}",
            self.fd,
            self.parent,
            self.depth,
            self.max_frame,
            self.max_depth,
            self.nested_workers,
            self.max_tasks,
            self.max_memory,
            self.registry
        );
        value
    }

    /// The settings in the variable's value, or what is wrong with it.
    pub(crate) fn decode(value: &str) -> Result<WorkerSettings, String> {
        let mut fields: [Option<&str>; 9] = [None; 9];
        const NAMES: [&str; 9] = [
            "fd",
            "parent",
            "depth",
            "max_frame",
            "max_depth",
            "nested",
            "tasks",
            "memory",
            "registry",
        ];
        for pair in value.split_whitespace() {
            let (key, field) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}` is not a `key=value` setting"))?;
            let index = NAMES
                .iter()
                .position(|name| *name == key)
                .ok_or_else(|| format!("unknown setting `{key}`"))?;
            fields[index] = Some(field);
        }
        fn number<T: std::str::FromStr>(
            fields: &[Option<&str>; 9],
            index: usize,
        ) -> Result<T, String> {
            let name = NAMES[index];
            let text = fields[index].ok_or_else(|| format!("the setting `{name}` is missing"))?;
            text.parse()
                .map_err(|_| format!("the setting `{name}={text}` is not a number"))
        }
        Ok(WorkerSettings {
            fd: number(&fields, 0)?,
            parent: number(&fields, 1)?,
            depth: number(&fields, 2)?,
            max_frame: number(&fields, 3)?,
            max_depth: number(&fields, 4)?,
            nested_workers: number(&fields, 5)?,
            max_tasks: number(&fields, 6)?,
            max_memory: number(&fields, 7)?,
            registry: {
                let text = fields[8].ok_or("the setting `registry` is missing")?;
                u64::from_str_radix(text, 16)
                    .map_err(|_| format!("the setting `registry={text}` is not a hex number"))?
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_mistakes_are_named() {
        let settings = WorkerSettings {
            fd: 3,
            parent: 4242,
            depth: 1,
            max_frame: 1 << 30,
            max_depth: 2,
            nested_workers: 1,
            max_tasks: 0,
            max_memory: 512 << 20,
            registry: 0xfeed_beef,
        };
        assert_eq!(WorkerSettings::decode(&settings.encode()), Ok(settings));
        let missing = WorkerSettings::decode("fd=3 depth=1").expect_err("refused");
        assert!(missing.contains("`parent` is missing"), "{missing}");
        let bad = WorkerSettings::decode("fd=x").expect_err("refused");
        assert!(bad.contains("`fd=x` is not a number"), "{bad}");
        assert!(
            WorkerSettings::decode("fd")
                .expect_err("refused")
                .contains("key=value")
        );
        assert!(
            WorkerSettings::decode("color=red")
                .expect_err("refused")
                .contains("unknown")
        );
    }
}
