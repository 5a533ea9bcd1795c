//! What a task's return value means: a plain value, or (for a function whose return
//! type is written `Result<T, E>`) a value or the task's own failure.

use crate::error::{BoxError, TaskError};
use crate::policy::Judge;

/// How a task's return value `R` splits into success and failure.
pub trait OutputKind<R>: Send + 'static {
    /// The success value: `R` itself, or `T` of `Result<T, E>`.
    type Ok: Send + 'static;
    /// `Err(e)` as the task's failure.
    fn split(output: R) -> Result<Self::Ok, BoxError>;
    /// Whether `output` is the task's failure.
    fn is_err(output: &R) -> bool;
}

/// A task whose return value is always a success.
#[derive(Debug)]
pub enum Value {}

impl<R: Send + 'static> OutputKind<R> for Value {
    type Ok = R;

    #[inline(always)]
    fn split(output: R) -> Result<R, BoxError> {
        Ok(output)
    }

    #[inline(always)]
    fn is_err(_: &R) -> bool {
        false
    }
}

/// A task declared to return `Result<T, E>`: `Err(e)` is its failure.
#[derive(Debug)]
pub enum Fallible {}

impl<T, E> OutputKind<Result<T, E>> for Fallible
where
    T: Send + 'static,
    E: TaskErrorType,
{
    type Ok = T;

    fn split(output: Result<T, E>) -> Result<T, BoxError> {
        output.map_err(Into::into)
    }

    fn is_err(output: &Result<T, E>) -> bool {
        output.is_err()
    }
}

/// Compile-time check that a task declared to return `Result<T, E>` can report `E`.
#[diagnostic::on_unimplemented(
    message = "the task's error type `{Self}` cannot be reported in a `TaskError`",
    label = "`{Self}` does not convert into `Box<dyn Error + Send + Sync>`",
    note = "a task returning `Result<T, E>` reports `Err(e)` as a failure: use an `E` that implements `std::error::Error + Send + Sync + 'static`, or `String`, `anyhow::Error`, `Box<dyn Error + Send + Sync>`"
)]
pub trait TaskErrorType: Into<BoxError> {}
impl<E: Into<BoxError>> TaskErrorType for E {}

/// The judge of a task's attempts for output kind `O` (see `policy::supervise`).
pub(crate) fn judge<O: OutputKind<R>, R>() -> Judge<R> {
    Judge {
        is_err: O::is_err,
        into_error: |name, output| match O::split(output) {
            Err(error) => TaskError::failed(name, error),
            // Only called for values `is_err` flagged.
            Ok(_) => TaskError::cancelled(name),
        },
    }
}
