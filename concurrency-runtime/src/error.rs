//! Why a task did not produce its value.

use std::any::Any;
use std::fmt;
use std::time::Duration;

/// The error type a task returning `Result<T, E>` reports through [`TaskError`]:
/// any `E` that converts into it (every `std::error::Error + Send + Sync`, `String`,
/// `&str`, `anyhow::Error`, `Box<dyn Error + Send + Sync>`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A task that failed: which task, and how.
///
/// `run_concurrently!(try; ...)`, `run_concurrently!(all; ...)` and `.try_run()`
/// return it; the plain `run_concurrently!(...)`, `.run()` and `.await` panic with its
/// [`Display`](fmt::Display) text. A task with `retries` that failed every attempt
/// reports the last failure, and the earlier ones in [`attempts`](TaskError::attempts).
///
/// ```
/// use concurrency_runtime::{TaskError, TaskErrorKind};
/// # fn check(error: &TaskError) {
/// match error.kind() {
///     TaskErrorKind::Panicked { message } => eprintln!("{} panicked: {message}", error.task()),
///     TaskErrorKind::Cancelled => eprintln!("{} was cancelled", error.task()),
///     _ => eprintln!("{error}"),
/// }
/// # }
/// ```
pub struct TaskError {
    // Boxed: a `Result<T, TaskError>` is then barely larger than `T`, and every
    // task's outcome is moved through a few layers of futures on the way back.
    inner: Box<Inner>,
}

struct Inner {
    task: &'static str,
    kind: TaskErrorKind,
    attempts: Vec<TaskError>,
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskError")
            .field("task", &self.inner.task)
            .field("kind", &self.inner.kind)
            .field("attempts", &self.inner.attempts)
            .finish()
    }
}

/// How a task failed. More kinds may be added, so match with a wildcard arm.
#[derive(Debug)]
#[non_exhaustive]
pub enum TaskErrorKind {
    /// The task returned `Err(error)` (a task whose return type is written
    /// `Result<T, E>`, seen through `try`, `all` or `.try_run()`). The error is kept:
    /// see [`TaskError::downcast`] and [`std::error::Error::source`].
    Failed {
        /// The task's own error.
        error: BoxError,
    },
    /// The task did not finish within its `timeout`. An async task was dropped at
    /// the deadline and a process task's worker killed; a blocking or cpu task was
    /// told through [`is_cancelled`](crate::is_cancelled) and left to finish.
    TimedOut {
        /// The timeout that expired.
        after: Duration,
    },
    /// The task's body panicked; `message` is the panic's message (or a placeholder
    /// when the payload was not a string).
    Panicked {
        /// The panic message.
        message: String,
    },
    /// The task was stopped before it finished: its group or its future was
    /// dropped, or the runtime that ran it shut down.
    Cancelled,
    /// The worker process running a process task ended before returning a result:
    /// it was killed by a signal (a crash such as `SIGSEGV` or `SIGABRT`, or a
    /// `SIGKILL` from outside) or exited.
    Crashed {
        /// The worker's process id.
        pid: u32,
        /// The signal that ended it, if any.
        signal: Option<i32>,
        /// Its exit code, if it exited.
        exit_code: Option<i32>,
    },
    /// A process task's arguments or result could not be (de)serialized.
    Serialization {
        /// Which step failed.
        stage: SerializationStage,
        /// The serializer's message.
        message: String,
    },
    /// The worker process could not be started, or broke the protocol (for example
    /// a frame over the configured maximum size).
    Worker {
        /// What went wrong.
        message: String,
    },
    /// The task did not run: it is a node of `run_concurrently!(all; dag { ... })`
    /// whose input failed. `node` and `task` name the root cause: the first node on
    /// the way that failed (its binding, and its task's name), however many nodes
    /// lie between.
    Upstream {
        /// The binding of the node that failed.
        node: &'static str,
        /// That node's task.
        task: &'static str,
    },
}

/// The step of a process task's round trip at which (de)serialization failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerializationStage {
    /// Serializing the arguments in the caller.
    ArgumentsOut,
    /// Deserializing the arguments in the worker.
    ArgumentsIn,
    /// Serializing the result in the worker.
    ResultOut,
    /// Deserializing the result in the caller.
    ResultIn,
}

impl fmt::Display for SerializationStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SerializationStage::ArgumentsOut => "serializing the arguments",
            SerializationStage::ArgumentsIn => "deserializing the arguments in the worker",
            SerializationStage::ResultOut => "serializing the result in the worker",
            SerializationStage::ResultIn => "deserializing the result",
        })
    }
}

impl TaskError {
    fn new(task: &'static str, kind: TaskErrorKind) -> Self {
        TaskError {
            inner: Box::new(Inner {
                task,
                kind,
                attempts: Vec::new(),
            }),
        }
    }

    pub(crate) fn panicked(task: &'static str, payload: Box<dyn Any + Send>) -> Self {
        TaskError::new(
            task,
            TaskErrorKind::Panicked {
                message: panic_message(payload.as_ref()),
            },
        )
    }

    #[cfg(all(feature = "process", target_os = "linux"))]
    pub(crate) fn panicked_with(task: &'static str, message: String) -> Self {
        TaskError::new(task, TaskErrorKind::Panicked { message })
    }

    #[cfg(all(feature = "process", target_os = "linux"))]
    pub(crate) fn crashed(
        task: &'static str,
        pid: u32,
        signal: Option<i32>,
        exit_code: Option<i32>,
    ) -> Self {
        TaskError::new(
            task,
            TaskErrorKind::Crashed {
                pid,
                signal,
                exit_code,
            },
        )
    }

    #[cfg(all(feature = "process", target_os = "linux"))]
    pub(crate) fn serialization(
        task: &'static str,
        stage: SerializationStage,
        message: String,
    ) -> Self {
        TaskError::new(task, TaskErrorKind::Serialization { stage, message })
    }

    #[cfg(all(feature = "process", target_os = "linux"))]
    pub(crate) fn protocol(task: &'static str, message: String) -> Self {
        TaskError::new(task, TaskErrorKind::Worker { message })
    }

    #[cfg(all(feature = "process", target_os = "linux"))]
    pub(crate) fn spawn_failed(task: &'static str, message: String) -> Self {
        TaskError::new(
            task,
            TaskErrorKind::Worker {
                message: format!("could not start a worker process: {message}"),
            },
        )
    }

    pub(crate) fn cancelled(task: &'static str) -> Self {
        TaskError::new(task, TaskErrorKind::Cancelled)
    }

    pub(crate) fn failed(task: &'static str, error: BoxError) -> Self {
        TaskError::new(task, TaskErrorKind::Failed { error })
    }

    pub(crate) fn timed_out(task: &'static str, after: Duration) -> Self {
        TaskError::new(task, TaskErrorKind::TimedOut { after })
    }

    /// This error, with the failures of the earlier attempts (oldest first).
    pub(crate) fn upstream(task: &'static str, node: &'static str, root: &'static str) -> Self {
        TaskError::new(task, TaskErrorKind::Upstream { node, task: root })
    }

    pub(crate) fn with_attempts(mut self, attempts: Vec<TaskError>) -> Self {
        self.inner.attempts = attempts;
        self
    }

    /// The task's name: the `name = "..."` option, or the function's name.
    pub fn task(&self) -> &'static str {
        self.inner.task
    }

    /// How the task failed.
    pub fn kind(&self) -> &TaskErrorKind {
        &self.inner.kind
    }

    /// How the task failed, by value (e.g. to take the task's own error out of
    /// [`TaskErrorKind::Failed`]).
    pub fn into_kind(self) -> TaskErrorKind {
        self.inner.kind
    }

    /// The failures of the earlier attempts of a task with `retries`, oldest first;
    /// empty when the task ran once. This error is the last attempt's.
    ///
    /// ```
    /// use concurrency_runtime::{TaskErrorKind, io_task};
    ///
    /// #[io_task(retries = 2)]
    /// fn always_fails() -> Result<u32, String> {
    ///     Err("no".into())
    /// }
    ///
    /// let error = always_fails().try_run().unwrap_err();
    /// assert_eq!(error.attempts().len(), 2); // three attempts in all
    /// assert_eq!(error.to_string(), "task `always_fails` failed: no (after 3 attempts)");
    /// ```
    pub fn attempts(&self) -> &[TaskError] {
        &self.inner.attempts
    }

    /// The task's own error by value, if it failed by returning `Err(E)` with this
    /// `E`; otherwise this error back.
    ///
    /// ```
    /// use concurrency_runtime::io_task;
    ///
    /// #[io_task]
    /// fn open(path: String) -> std::io::Result<std::fs::File> {
    ///     std::fs::File::open(path)
    /// }
    ///
    /// let error = open("/no/such/file".into()).try_run().unwrap_err();
    /// let io: std::io::Error = error.downcast().unwrap();
    /// assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    /// ```
    pub fn downcast<E: std::error::Error + Send + Sync + 'static>(
        mut self,
    ) -> Result<E, TaskError> {
        let kind = std::mem::replace(&mut self.inner.kind, TaskErrorKind::Cancelled);
        match kind {
            TaskErrorKind::Failed { error } => match error.downcast::<E>() {
                Ok(error) => Ok(*error),
                Err(error) => {
                    self.inner.kind = TaskErrorKind::Failed { error };
                    Err(self)
                }
            },
            kind => {
                self.inner.kind = kind;
                Err(self)
            }
        }
    }

    /// The task's own error, if it failed by returning `Err`.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match &self.inner.kind {
            TaskErrorKind::Failed { error } => error.downcast_ref::<E>(),
            _ => None,
        }
    }

    /// Whether the task ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(self.inner.kind, TaskErrorKind::TimedOut { .. })
    }

    /// Whether the task was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.inner.kind, TaskErrorKind::Cancelled)
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_kind(f)?;
        if !self.inner.attempts.is_empty() {
            write!(f, " (after {} attempts)", self.inner.attempts.len() + 1)?;
        }
        Ok(())
    }
}

impl TaskError {
    fn fmt_kind(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner.kind {
            TaskErrorKind::Failed { error } => {
                write!(f, "task `{}` failed: {error}", self.inner.task)
            }
            TaskErrorKind::TimedOut { after } => {
                write!(f, "task `{}` timed out after {after:?}", self.inner.task)
            }
            TaskErrorKind::Panicked { message } => {
                write!(f, "task `{}` panicked: {message}", self.inner.task)
            }
            TaskErrorKind::Cancelled => write!(f, "task `{}` was cancelled", self.inner.task),
            TaskErrorKind::Crashed {
                pid,
                signal: Some(signal),
                ..
            } => write!(
                f,
                "task `{}` crashed: its worker process {pid} was killed by signal {signal} ({})",
                self.inner.task,
                signal_name(*signal)
            ),
            TaskErrorKind::Crashed {
                pid,
                signal: None,
                exit_code: None,
            } => write!(
                f,
                "task `{}` crashed: its worker host (process {pid}) stopped answering before \
                 returning a result",
                self.inner.task
            ),
            TaskErrorKind::Crashed { pid, exit_code, .. } => write!(
                f,
                "task `{}` crashed: its worker process {pid} exited with code {} before returning a result",
                self.inner.task,
                exit_code.map_or_else(|| "?".to_owned(), |code| code.to_string())
            ),
            TaskErrorKind::Serialization { stage, message } => {
                write!(f, "task `{}` failed {stage}: {message}", self.inner.task)
            }
            TaskErrorKind::Worker { message } => {
                write!(
                    f,
                    "task `{}` failed in its worker: {message}",
                    self.inner.task
                )
            }
            TaskErrorKind::Upstream { node, task } => write!(
                f,
                "task `{}` did not run: its input `{node}` (task `{task}`) failed",
                self.inner.task
            ),
        }
    }
}

impl std::error::Error for TaskError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.inner.kind {
            TaskErrorKind::Failed { error } => Some(error.as_ref()),
            _ => None,
        }
    }
}

/// The text of a panic payload: `panic!` produces a `&'static str` or a `String`.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&'static str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}

/// The conventional name of a signal number, e.g. `SIGSEGV` for 11.
pub(crate) fn signal_name(signal: i32) -> &'static str {
    match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => "signal",
    }
}
