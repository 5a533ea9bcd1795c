//! `#[io_task] async fn`: a future polled on tokio.

use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::runtime::Handle;

use super::joined::{AbortOnDrop, Joined};
use super::output::{OutputKind, Value, judge};
use super::seam::{Placement, Start, TaskValue};
use crate::error::{BoxError, TaskError};
use crate::kind::TaskKind;
use crate::observe::{Attempt, Origin, Watch};
use crate::policy::{self, Bodies, Named, Options, Policied, Policy};
use crate::runtime::{self, in_tokio_context, runtime};

pin_project_lite::pin_project! {
    /// Where an `#[io_task] async fn` runs: its future, polled on tokio.
    ///
    /// Awaited, or in `run_concurrently!(async; ...)`, the future is polled as part of
    /// the caller's tokio task, exactly like `tokio::join!` does, with each poll guarded
    /// so a panic fails only this task. From synchronous code on a plain thread it is
    /// polled on that thread inside the embedded runtime's context, like
    /// `Runtime::block_on`. It is spawned as its own tokio task in the collection form
    /// (`run_concurrently!(for ...)`, like a `JoinSet`) and when a synchronous caller is a
    /// rayon worker or sits inside a tokio context; a spawned task is the body alone
    /// (tokio catches its panic, and the join handle reports it under the task's name).
    /// Either way it is polled inside a tokio runtime context.
    pub struct AsyncIo<F, O = Value> {
        // Pinned only when a group polls the task in place (`poll_in_place`).
        #[pin]
        future: Bodies<F>,
        output: PhantomData<fn() -> O>,
    }
}

impl<F, O> AsyncIo<F, O>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    O: OutputKind<F::Output>,
{
    /// Used by `#[io_task]` for a task without options.
    #[inline]
    #[track_caller]
    pub fn new(name: &'static &'static str, future: F) -> TaskValue<Self> {
        TaskValue::plain(name, Self::of(Bodies::once(future)))
    }

    /// Used by `#[io_task(..)]` for a task with options.
    #[track_caller]
    pub fn with_policy(name: &'static &'static str, policy: Policy, future: F) -> TaskValue<Self> {
        TaskValue::with(name, policy, Self::of(Bodies::once(future)))
    }

    /// Used by `#[io_task(retries = N)]`: `make` builds each attempt's future.
    #[track_caller]
    pub fn retrying(
        name: &'static &'static str,
        policy: Policy,
        make: impl FnMut() -> F + Send + 'static,
    ) -> TaskValue<Self> {
        TaskValue::with(name, policy, Self::of(Bodies::repeating(make)))
    }

    #[inline]
    fn of(future: Bodies<F>) -> Self {
        AsyncIo {
            future,
            output: PhantomData,
        }
    }
}

impl<F, O> TaskValue<AsyncIo<F, O>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    O: OutputKind<F::Output>,
{
    /// The body's future itself, without the runtime context or the panic guard
    /// that running it as a task adds: `.await` it to test the body's logic.
    ///
    /// ```
    /// use concurrency_runtime::io_task;
    ///
    /// #[io_task]
    /// async fn greet(name: String) -> String {
    ///     tokio::task::yield_now().await;
    ///     format!("hello {name}")
    /// }
    ///
    /// // From synchronous code:
    /// assert_eq!(greet("sync".into()).run(), "hello sync");
    /// // The body alone, e.g. in a `#[tokio::test]`:
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// assert_eq!(greet("test".into()).run_inline().await, "hello test");
    /// # });
    /// ```
    pub fn run_inline(self) -> F {
        self.placement.future.into_first()
    }
}

impl<F, O> Placement for AsyncIo<F, O>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    O: OutputKind<F::Output>,
{
    type Output = F::Output;
    type Ok = O::Ok;
    type Running = Policied<AsyncRunning<F>, F::Output>;
    type Detached = Policied<Detached<F::Output>, F::Output>;
    const KIND: TaskKind = TaskKind::AsyncIo;

    #[inline]
    fn start(task: TaskValue<Self>, start: Start) -> Self::Running {
        Policied::Plain {
            attempt: attempt(
                task.name,
                task.options.origin(),
                1,
                task.placement.future.into_first(),
                start,
            ),
        }
    }

    fn start_supervised(task: TaskValue<Self>, start: Start) -> Self::Running {
        let (name, origin) = (task.name, task.options.origin().clone());
        // What the group knew about the tokio context holds for its first poll; each
        // attempt of a task with options (a retry, polled later) looks again.
        let start = match start {
            Start::InContext => Start::Inline,
            start => start,
        };
        // The permit of a `limit` is held while the future runs, then dropped.
        policy::start_supervised(
            name,
            origin.call(),
            task.options,
            task.placement.future,
            judge::<O, F::Output>(),
            move |future, _permit, number| attempt(name, &origin, number, future, start),
        )
    }

    #[inline(always)]
    fn in_place(task: &TaskValue<Self>, start: Start) -> bool {
        start != Start::Spawned && task.options.is_plain()
    }

    #[inline(always)]
    fn poll_in_place(
        task: Pin<&mut TaskValue<Self>>,
        cx: &mut Context<'_>,
        start: Start,
    ) -> Poll<Result<F::Output, TaskError>> {
        let task = task.project();
        let placement = task.placement.project();
        let name = *task.name;
        let has_context = start == Start::InContext;
        // Nobody observed the call (no subscriber, no recording when it was made): the
        // same poll as without the feature, and nothing else.
        if task.options.is_observed() {
            return poll_observed(
                placement.future.first_pinned(),
                cx,
                name,
                task.options,
                has_context,
            );
        }
        poll_guarded(placement.future.first_pinned(), cx, name, has_context)
    }

    fn detach(task: TaskValue<Self>) -> Self::Detached {
        Policied::Plain {
            attempt: Detached {
                joined: spawn(
                    task.name,
                    task.options.origin(),
                    1,
                    task.placement.future.into_first(),
                ),
            },
        }
    }

    fn detach_supervised(task: TaskValue<Self>) -> Self::Detached {
        let (name, origin) = (task.name, task.options.origin().clone());
        policy::start_supervised(
            name,
            origin.call(),
            task.options,
            task.placement.future,
            judge::<O, F::Output>(),
            move |future, _permit, number| Detached {
                joined: spawn(name, &origin, number, future),
            },
        )
    }

    fn split(output: F::Output) -> Result<O::Ok, BoxError> {
        O::split(output)
    }
}

/// Starts one attempt of an async task.
#[inline]
fn attempt<F>(
    name: &'static &'static str,
    origin: &Origin,
    number: u32,
    future: F,
    start: Start,
) -> AsyncRunning<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match start {
        Start::Inline | Start::InContext => AsyncRunning::Inline {
            guarded: Guarded {
                future,
                name,
                attempt: Attempt::new(origin, name, TaskKind::AsyncIo, number),
                has_context: (start == Start::InContext).then_some(true),
            },
        },
        // Rare in a tuple group (a synchronous caller on a rayon thread or inside a
        // tokio context): spawned boxed, so that tokio's task machinery is compiled
        // once per output type rather than once per task (a collection's tasks, which
        // are always spawned, are not boxed: see `detach`).
        Start::Spawned => AsyncRunning::Spawned {
            joined: spawn(
                name,
                origin,
                number,
                Box::pin(future) as Pin<Box<dyn Future<Output = F::Output> + Send>>,
            ),
        },
    }
}

/// Spawns an async task as its own tokio task, on the caller's runtime, or on the
/// embedded one when there is none or the caller must not use it (see
/// `spawn_async_on_embedded`).
///
/// The spawned future is the body and nothing else (see [`InTask`]): tokio catches a
/// panic, and the join handle, which knows the task's name, reports it.
fn spawn<F>(
    name: &'static &'static str,
    origin: &Origin,
    number: u32,
    future: F,
) -> Joined<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let future = InTask {
        future,
        watch: Watch::new(name),
        attempt: Attempt::new(origin, name, TaskKind::AsyncIo, number),
    };
    let handle = match Handle::try_current() {
        Ok(handle) if !runtime::spawn_async_on_embedded() => handle.spawn(future),
        _ => runtime().spawn(future),
    };
    Joined {
        handle: AbortOnDrop(handle),
        name,
    }
}

pin_project_lite::pin_project! {
    /// A spawned async task's future: the body, polled with [`TaskKind::current`]
    /// reporting an async task. No bigger than the body, so the tokio task is as
    /// large as a hand-spawned one (tokio's task cells come in 128-byte steps).
    struct InTask<F> {
        #[pin]
        future: F,
        // For the blocking detector and the attempt's span (feature `tracing`;
        // nothing otherwise).
        watch: Watch,
        attempt: Attempt,
    }
}

impl<F: Future> Future for InTask<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (future, watch) = (this.future, *this.watch);
        let site = this.attempt.site();
        // (A panic of the body unwinds through here: the attempt notes it, and says
        // it panicked when tokio, which caught the panic, drops the task.)
        if !this.attempt.is_observed() {
            return TaskKind::AsyncIo.enter(|| future.poll(cx));
        }
        let polled = this
            .attempt
            .run(|| watch.poll(site, || TaskKind::AsyncIo.enter(|| future.poll(cx))));
        if polled.is_ready() {
            this.attempt.finish("ok");
        }
        polled
    }
}

/// An async task spawned as its own tokio task (the collection form's slot: a
/// join handle, not the future).
#[derive(Debug)]
pub struct Detached<T> {
    joined: Joined<T>,
}

impl<T> Future for Detached<T> {
    type Output = Result<T, TaskError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.joined).poll(cx)
    }
}

impl<T> Named for Detached<T> {
    fn task_name(&self) -> &'static str {
        self.joined.name
    }
}

impl<F: Future> Named for AsyncRunning<F> {
    fn task_name(&self) -> &'static str {
        match self {
            AsyncRunning::Inline { guarded } => guarded.name,
            AsyncRunning::Spawned { joined } => joined.name,
        }
    }
}

pin_project_lite::pin_project! {
    /// A started async task.
    #[project = AsyncRunningProj]
    pub enum AsyncRunning<F: Future> {
        Inline { #[pin] guarded: Guarded<F> },
        Spawned { joined: Joined<F::Output> },
    }
}

impl<F: Future> Future for AsyncRunning<F> {
    type Output = Result<F::Output, TaskError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AsyncRunningProj::Inline { guarded } => guarded.poll(cx),
            AsyncRunningProj::Spawned { joined } => Pin::new(joined).poll(cx),
        }
    }
}

pin_project_lite::pin_project! {
    /// The task's future with a tokio context and a panic guard around each poll.
    pub struct Guarded<F> {
        #[pin]
        future: F,
        name: &'static str,
        // The attempt's span (feature `tracing`; nothing otherwise).
        attempt: Attempt,
        // Whether the first poll found a tokio context (looked up once: the lookup
        // clones the handle).
        has_context: Option<bool>,
    }
}

impl<F: Future> Future for Guarded<F> {
    type Output = Result<F::Output, TaskError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let has_context = *this.has_context.get_or_insert_with(in_tokio_context);
        let (future, name) = (this.future, *this.name);
        if this.attempt.is_observed() {
            return poll_attempt(future, cx, name, this.attempt, has_context);
        }
        poll_guarded(future, cx, name, has_context)
    }
}

/// [`poll_guarded`] for an async task polled in place while someone observes: the
/// poll timed by the blocking detector, inside the attempt's span (made at the first
/// observed poll). Out of line: a task nobody observes never gets here.
#[inline(never)]
fn poll_observed<F: Future>(
    future: Pin<&mut F>,
    cx: &mut Context<'_>,
    name: &'static str,
    options: &mut Options,
    has_context: bool,
) -> Poll<Result<F::Output, TaskError>> {
    let (origin, attempt) = options.in_place();
    if !attempt.is_observed() {
        *attempt = Attempt::new(origin, name, TaskKind::AsyncIo, 1);
    }
    poll_attempt(future, cx, name, attempt, has_context)
}

/// [`poll_guarded`] for an observed attempt (of a `Guarded`, or polled in place): the
/// poll timed by the blocking detector (with the attempt's call site), inside the
/// attempt's span.
#[inline(never)]
fn poll_attempt<F: Future>(
    future: Pin<&mut F>,
    cx: &mut Context<'_>,
    name: &'static str,
    attempt: &mut Attempt,
    has_context: bool,
) -> Poll<Result<F::Output, TaskError>> {
    let (watch, site) = (Watch::new(name), attempt.site());
    let polled = attempt.run(|| watch.poll(site, || poll_guarded(future, cx, name, has_context)));
    if let Poll::Ready(result) = &polled {
        attempt.finish_with(result);
    }
    polled
}

/// Polls an async task's future with [`TaskKind::current`] reporting an async task
/// and a panic guard around the poll; outside a tokio context (`has_context` false),
/// inside the embedded runtime's context.
#[inline(always)]
fn poll_guarded<F: Future>(
    mut future: Pin<&mut F>,
    cx: &mut Context<'_>,
    name: &'static str,
    has_context: bool,
) -> Poll<Result<F::Output, TaskError>> {
    let mut poll = || {
        catch_unwind(AssertUnwindSafe(|| {
            TaskKind::AsyncIo.enter(|| future.as_mut().poll(cx))
        }))
    };
    let polled = if has_context {
        poll()
    } else {
        // Polled from outside tokio (e.g. by a synchronous caller or another
        // executor): enter the embedded runtime so timers and sockets work.
        let _context = runtime().enter();
        poll()
    };
    match polled {
        Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
        Ok(Poll::Pending) => Poll::Pending,
        Err(payload) => Poll::Ready(Err(TaskError::panicked(name, payload))),
    }
}
