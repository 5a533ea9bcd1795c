//! The machinery behind `run_concurrently!`: starting a group's tasks, polling them
//! together, and turning their results into values.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::TaskError;
use crate::task::{Start, Task};

pin_project_lite::pin_project! {
    /// One task of a fixed group: running, then holding its result until taken.
    #[doc(hidden)]
    #[project = ChildProj]
    pub enum Child<R, T> {
        Running { #[pin] running: R },
        Done { result: Option<Result<T, TaskError>> },
    }
}

impl<R, T> Child<R, T>
where
    R: Future<Output = Result<T, TaskError>>,
{
    /// Starts `task` (thread and cpu tasks begin at once; an async task at its
    /// first poll, which follows immediately).
    pub fn start<K: Task<Running = R, Output = T>>(task: K) -> Self {
        // A synchronous caller that cannot poll async tasks itself (a rayon worker, or
        // a thread inside another runtime's context) has them spawned instead.
        let start = if crate::executor::spawn_async_on_embedded() {
            Start::Spawned
        } else {
            Start::Inline
        };
        Child::Running {
            running: task.start(start),
        }
    }

    /// Polls the task if it is still running; `true` once it has finished.
    pub fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        let result = match self.as_mut().project() {
            ChildProj::Running { running } => match running.poll(cx) {
                Poll::Ready(result) => result,
                Poll::Pending => return false,
            },
            ChildProj::Done { .. } => return true,
        };
        self.set(Child::Done {
            result: Some(result),
        });
        true
    }

    /// The task's result, once `poll_ready` returned `true`.
    pub fn take(self: Pin<&mut Self>) -> Result<T, TaskError> {
        match self.project() {
            ChildProj::Done { result } => result.take(),
            ChildProj::Running { .. } => None,
        }
        // Only reachable through a bug in the generated code; report it as a
        // cancellation rather than panicking.
        .unwrap_or_else(|| Err(TaskError::cancelled("<unknown>")))
    }
}

/// Starts every task at once, then waits for each in input order. Dropping this
/// future aborts its async tasks and keeps queued thread, cpu and process tasks from
/// starting; those already running finish.
pub async fn run_all<K: Task>(tasks: Vec<K>) -> Vec<Result<K::Output, TaskError>> {
    let running: Vec<K::Running> = tasks
        .into_iter()
        .map(|task| task.start(Start::Spawned))
        .collect();
    let mut results = Vec::with_capacity(running.len());
    for task in running {
        results.push(task.await);
    }
    results
}

/// The value of a finished task, or the panic that names the task.
#[track_caller]
pub fn value<T>(result: Result<T, TaskError>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("{error}"),
    }
}

/// The values of a finished collection, in input order, or the first failure's panic.
#[track_caller]
pub fn values<T>(results: Vec<Result<T, TaskError>>) -> Vec<T> {
    if let Some(error) = results.iter().find_map(|result| result.as_ref().err()) {
        panic!("{error}");
    }
    results.into_iter().filter_map(Result::ok).collect()
}
