//! Why a task did not produce its value.

use std::any::Any;
use std::fmt;

/// A task that failed: which task, and how.
///
/// `run_concurrently!` turns a failure back into a panic in the caller, with this
/// error's [`Display`](fmt::Display) text as the message, once every other task of
/// the group has finished.
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    task: &'static str,
    kind: TaskErrorKind,
}

/// How a task failed. More kinds may be added, so match with a wildcard arm.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskErrorKind {
    /// The task's body panicked; `message` is the panic's message (or a placeholder
    /// when the payload was not a string).
    Panicked {
        /// The panic message.
        message: String,
    },
    /// The task was stopped before it finished, e.g. because the runtime that ran
    /// it shut down.
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
    pub(crate) fn panicked(task: &'static str, payload: Box<dyn Any + Send>) -> Self {
        TaskError {
            task,
            kind: TaskErrorKind::Panicked {
                message: panic_message(payload.as_ref()),
            },
        }
    }

    pub(crate) fn panicked_with(task: &'static str, message: String) -> Self {
        TaskError {
            task,
            kind: TaskErrorKind::Panicked { message },
        }
    }

    pub(crate) fn crashed(
        task: &'static str,
        pid: u32,
        signal: Option<i32>,
        exit_code: Option<i32>,
    ) -> Self {
        TaskError {
            task,
            kind: TaskErrorKind::Crashed {
                pid,
                signal,
                exit_code,
            },
        }
    }

    pub(crate) fn serialization(
        task: &'static str,
        stage: SerializationStage,
        message: String,
    ) -> Self {
        TaskError {
            task,
            kind: TaskErrorKind::Serialization { stage, message },
        }
    }

    pub(crate) fn protocol(task: &'static str, message: String) -> Self {
        TaskError {
            task,
            kind: TaskErrorKind::Worker { message },
        }
    }

    pub(crate) fn spawn_failed(task: &'static str, message: String) -> Self {
        TaskError {
            task,
            kind: TaskErrorKind::Worker {
                message: format!("could not start a worker process: {message}"),
            },
        }
    }

    pub(crate) fn cancelled(task: &'static str) -> Self {
        TaskError {
            task,
            kind: TaskErrorKind::Cancelled,
        }
    }

    /// The task's name: the `name = "..."` option, or the function's name.
    pub fn task(&self) -> &'static str {
        self.task
    }

    /// How the task failed.
    pub fn kind(&self) -> &TaskErrorKind {
        &self.kind
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            TaskErrorKind::Panicked { message } => {
                write!(f, "task `{}` panicked: {message}", self.task)
            }
            TaskErrorKind::Cancelled => write!(f, "task `{}` was cancelled", self.task),
            TaskErrorKind::Crashed {
                pid,
                signal: Some(signal),
                ..
            } => write!(
                f,
                "task `{}` crashed: its worker process {pid} was killed by signal {signal} ({})",
                self.task,
                signal_name(*signal)
            ),
            TaskErrorKind::Crashed { pid, exit_code, .. } => write!(
                f,
                "task `{}` crashed: its worker process {pid} exited with code {} before returning a result",
                self.task,
                exit_code.map_or_else(|| "?".to_owned(), |code| code.to_string())
            ),
            TaskErrorKind::Serialization { stage, message } => {
                write!(f, "task `{}` failed {stage}: {message}", self.task)
            }
            TaskErrorKind::Worker { message } => {
                write!(f, "task `{}` failed in its worker: {message}", self.task)
            }
        }
    }
}

impl std::error::Error for TaskError {}

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
