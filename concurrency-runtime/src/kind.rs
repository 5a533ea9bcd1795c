//! Where a task runs: [`TaskKind`], and which kind of task body runs on this thread.

use std::cell::Cell;
use std::fmt;

/// Where a task runs, as chosen by its annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskKind {
    /// `#[io_task] async fn`: polled as an async task on tokio.
    AsyncIo,
    /// `#[io_task] fn`: a thread of tokio's blocking pool.
    BlockingIo,
    /// `#[cpu_task] fn`: rayon's work-stealing pool.
    Cpu,
    /// `#[cpu_task(process)] fn`: a worker process of the process pool.
    Process,
}

impl TaskKind {
    /// Whether the task is a future (and so needs a tokio runtime to be polled on).
    pub const fn is_async(self) -> bool {
        matches!(self, TaskKind::AsyncIo)
    }

    /// The kind of task whose body is running on the current thread right now, if
    /// any: handy for logging where work ran.
    ///
    /// ```
    /// use concurrency_runtime::{TaskKind, cpu_task};
    ///
    /// #[cpu_task]
    /// fn whereami() -> Option<TaskKind> {
    ///     TaskKind::current()
    /// }
    ///
    /// assert_eq!(whereami().run(), Some(TaskKind::Cpu));
    /// assert_eq!(TaskKind::current(), None);
    /// ```
    pub fn current() -> Option<TaskKind> {
        CURRENT.get()
    }

    /// Runs `f` with [`TaskKind::current`] reporting `self`.
    #[inline(always)]
    pub(crate) fn enter<R>(self, f: impl FnOnce() -> R) -> R {
        struct Restore(Option<TaskKind>);
        impl Drop for Restore {
            #[inline(always)]
            fn drop(&mut self) {
                CURRENT.set(self.0);
            }
        }
        let _restore = Restore(CURRENT.replace(Some(self)));
        f()
    }

    /// A short description of the executor, e.g. `"tokio async task"`.
    pub const fn executor(self) -> &'static str {
        match self {
            TaskKind::AsyncIo => "tokio async task",
            TaskKind::BlockingIo => "tokio blocking thread",
            TaskKind::Cpu => "rayon pool",
            TaskKind::Process => "worker process",
        }
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.executor())
    }
}

thread_local! {
    static CURRENT: Cell<Option<TaskKind>> = const { Cell::new(None) };
}
