//! `#[io_task] fn`: blocking I/O on a thread of tokio's blocking pool.

use super::{Joined, Start, Task, TaskKind, task_common};
use crate::executor::{AbortOnDrop, runtime};

/// A blocking I/O task: returned by calling an `#[io_task] fn` (without `async`).
///
/// It runs on a thread of the embedded tokio runtime's blocking pool: never on an
/// async worker thread (where it would stall other tasks) nor on rayon's pool (where
/// it would take a core from CPU work). The pool grows past the number of cores, so
/// many blocking calls wait side by side.
///
/// ```
/// use concurrency_runtime::io_task;
///
/// #[io_task]
/// fn read_len(path: String) -> usize {
///     std::fs::read(&path).map(|bytes| bytes.len()).unwrap_or(0)
/// }
///
/// let on_pool = read_len("Cargo.toml".into()).run();
/// let here = read_len("Cargo.toml".into()).run_inline(); // the body, on this thread
/// assert_eq!(on_pool, here);
/// ```
#[must_use = "a task does nothing until it is awaited, `.run()`, or passed to `run_concurrently!`"]
pub struct BlockingIoTask<F> {
    name: &'static str,
    body: F,
}

impl<F, T> BlockingIoTask<F>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    /// Used by `#[io_task]`.
    #[doc(hidden)]
    pub fn new(name: &'static str, body: F) -> Self {
        BlockingIoTask { name, body }
    }

    /// Runs the body on the current thread, with no executor: for unit tests.
    pub fn run_inline(self) -> T {
        (self.body)()
    }
}

task_common!(BlockingIoTask<F>);

impl<F, T> Task for BlockingIoTask<F>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    type Output = T;
    type Running = Joined<T>;
    const KIND: TaskKind = TaskKind::BlockingIo;

    fn name(&self) -> &'static str {
        self.name
    }

    fn start(self, _: Start) -> Joined<T> {
        let body = self.body;
        let handle = runtime().spawn_blocking(move || TaskKind::BlockingIo.enter(body));
        Joined {
            handle: AbortOnDrop(handle),
            name: self.name,
        }
    }
}
