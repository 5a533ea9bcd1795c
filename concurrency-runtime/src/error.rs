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
