//! How a group reports its tasks' outcomes: one mode per form of `run_concurrently!`.

use std::convert::Infallible;

use crate::error::TaskError;
use crate::placement::Placement;

/// How a group reports its tasks' outcomes: one type per form of
/// `run_concurrently!`.
pub trait Mode<P: Placement> {
    /// What the group returns per task.
    type Item: Send + 'static;
    /// What stops the group early (`Infallible` for a group that never stops early).
    type Error: Send + 'static;
    /// Judges a finished task: `Err` stops the group (its other tasks are dropped,
    /// which cancels them).
    fn finish(
        name: &'static str,
        result: Result<P::Output, TaskError>,
        attempts: Vec<TaskError>,
    ) -> Result<Self::Item, Self::Error>;
}

/// `run_concurrently!(...)`: the functions' return values; the first failure (a
/// panic, timeout, crash...) stops the group.
#[derive(Debug)]
pub enum Values {}

impl<P: Placement> Mode<P> for Values {
    type Item = P::Output;
    type Error = TaskError;

    #[inline(always)]
    fn finish(
        _: &'static str,
        result: Result<P::Output, TaskError>,
        _: Vec<TaskError>,
    ) -> Result<P::Output, TaskError> {
        result
    }
}

/// `run_concurrently!(try; ...)`: success values; the first failure, including a
/// `Result`-returning task's `Err`, stops the group and is returned.
#[derive(Debug)]
pub enum FailFast {}

impl<P: Placement> Mode<P> for FailFast {
    type Item = P::Ok;
    type Error = TaskError;

    #[inline(always)]
    fn finish(
        name: &'static str,
        result: Result<P::Output, TaskError>,
        attempts: Vec<TaskError>,
    ) -> Result<P::Ok, TaskError> {
        settle::<P>(name, result, attempts)
    }
}

/// `run_concurrently!(all; ...)`: every task's outcome; nothing stops the group.
#[derive(Debug)]
pub enum CollectAll {}

impl<P: Placement> Mode<P> for CollectAll {
    type Item = Result<P::Ok, TaskError>;
    type Error = Infallible;

    #[inline(always)]
    fn finish(
        name: &'static str,
        result: Result<P::Output, TaskError>,
        attempts: Vec<TaskError>,
    ) -> Result<Self::Item, Infallible> {
        Ok(settle::<P>(name, result, attempts))
    }
}

/// The outcome of a finished task seen as success or failure: a `Result`-returning
/// task's `Err` becomes [`TaskErrorKind::Failed`](crate::TaskErrorKind::Failed),
/// carrying the failures of earlier attempts.
#[inline(always)]
pub(crate) fn settle<P: Placement>(
    name: &'static str,
    result: Result<P::Output, TaskError>,
    attempts: Vec<TaskError>,
) -> Result<P::Ok, TaskError> {
    result.and_then(|output| {
        P::split(output).map_err(|error| TaskError::failed(name, error).with_attempts(attempts))
    })
}

/// The plain form's outcome: the values, or the panic that names the failed task.
#[track_caller]
pub fn value<T>(result: Result<T, TaskError>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("{error}"),
    }
}

/// The `all;` form's outcome, which cannot be an error.
pub fn settled<T>(result: Result<T, Infallible>) -> T {
    match result {
        Ok(value) => value,
        Err(never) => match never {},
    }
}
