//! Waiting for a task that runs as its own tokio task.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::task::JoinHandle;

use crate::error::TaskError;

/// A spawned tokio task (async or blocking), seen as a task result. Dropping it
/// aborts the tokio task: an async task is cancelled at its next `.await`, and a
/// blocking task that has not started yet never starts.
pub(crate) struct Joined<T> {
    pub(crate) handle: AbortOnDrop<T>,
    /// One pointer: a collection holds one of these per task.
    pub(crate) name: &'static &'static str,
}

impl<T> Future for Joined<T> {
    type Output = Result<T, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let name = *self.name;
        Pin::new(&mut self.handle).poll(cx).map(|joined| {
            joined.map_err(|error| match error.try_into_panic() {
                Ok(payload) => TaskError::panicked(name, payload),
                Err(_) => TaskError::cancelled(name),
            })
        })
    }
}

impl<T> std::fmt::Debug for Joined<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Joined")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A `JoinHandle` that aborts its task when dropped: a dropped group cancels its
/// async tasks and keeps queued blocking tasks from starting.
pub(crate) struct AbortOnDrop<T>(pub(crate) JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}
