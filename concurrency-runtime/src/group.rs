//! The machinery behind `run_concurrently!`: starting a group's tasks, polling them
//! together, failing fast or collecting every outcome, and turning outcomes into
//! values.

use std::cell::Cell;
use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::TaskError;
use crate::executor::Kinds;
use crate::task::{Attempted, Start, Task, TaskKind, settle};
use crate::wake::Woken;

/// How a group reports its tasks' outcomes: one type per form of
/// `run_concurrently!`.
#[doc(hidden)]
pub trait Mode<K: Task> {
    /// What the group returns per task.
    type Item: Send + 'static;
    /// What stops the group early (`Infallible` for a group that never stops early).
    type Error: Send + 'static;
    /// Judges a finished task: `Err` stops the group (its other tasks are dropped,
    /// which cancels them).
    fn finish(
        name: &'static str,
        result: Result<K::Output, TaskError>,
        attempts: Vec<TaskError>,
    ) -> Result<Self::Item, Self::Error>;
}

/// `run_concurrently!(...)`: the functions' return values; the first failure (a
/// panic, timeout, crash...) stops the group.
#[doc(hidden)]
#[derive(Debug)]
pub enum Values {}

impl<K: Task> Mode<K> for Values {
    type Item = K::Output;
    type Error = TaskError;

    #[inline(always)]
    fn finish(
        _: &'static str,
        result: Result<K::Output, TaskError>,
        _: Vec<TaskError>,
    ) -> Result<K::Output, TaskError> {
        result
    }
}

/// `run_concurrently!(try; ...)`: success values; the first failure, including a
/// `Result`-returning task's `Err`, stops the group and is returned.
#[doc(hidden)]
#[derive(Debug)]
pub enum FailFast {}

impl<K: Task> Mode<K> for FailFast {
    type Item = K::Ok;
    type Error = TaskError;

    #[inline(always)]
    fn finish(
        name: &'static str,
        result: Result<K::Output, TaskError>,
        attempts: Vec<TaskError>,
    ) -> Result<K::Ok, TaskError> {
        settle::<K>(name, result, attempts)
    }
}

/// `run_concurrently!(all; ...)`: every task's outcome; nothing stops the group.
#[doc(hidden)]
#[derive(Debug)]
pub enum CollectAll {}

impl<K: Task> Mode<K> for CollectAll {
    type Item = Result<K::Ok, TaskError>;
    type Error = Infallible;

    #[inline(always)]
    fn finish(
        name: &'static str,
        result: Result<K::Output, TaskError>,
        attempts: Vec<TaskError>,
    ) -> Result<Self::Item, Infallible> {
        Ok(settle::<K>(name, result, attempts))
    }
}

/// How a group starts its tasks: what it needs to know about the calling thread,
/// looked up once for the whole group (at its first poll, where its tasks start).
#[doc(hidden)]
#[derive(Debug)]
pub struct Starter {
    spawn: bool,
    in_tokio: Cell<Option<bool>>,
}

impl Starter {
    /// The starter for a group that starts here, now.
    #[inline]
    pub(crate) fn here() -> Self {
        Starter {
            // A synchronous caller that cannot poll async tasks itself (a rayon worker,
            // or a thread inside another runtime's context) has them spawned instead.
            spawn: crate::executor::spawn_async_on_embedded(),
            in_tokio: Cell::new(None),
        }
    }

    #[inline(always)]
    fn start(&self, kind: TaskKind) -> Start {
        if !kind.is_async() {
            Start::Inline
        } else if self.spawn {
            Start::Spawned
        } else {
            let in_tokio = match self.in_tokio.get() {
                Some(known) => known,
                None => {
                    let found = crate::task::in_tokio_context();
                    self.in_tokio.set(Some(found));
                    found
                }
            };
            if in_tokio {
                Start::InContext
            } else {
                Start::Inline
            }
        }
    }
}

/// One task of a group and, once it finished, its judged outcome until taken. A
/// finished task stays where it is until the group ends (dropping it is left to
/// the group: a finished task holds nothing but its handle).
#[doc(hidden)]
pub struct Child<K: Task, M: Mode<K>> {
    // Structurally pinned, except for a task not started yet (see `start`).
    state: ChildState<K>,
    // `Some` once the task finished and its outcome is kept (an outcome that stops
    // the group is returned, and the group polls no more). Never pinned.
    item: Option<M::Item>,
}

impl<K: Task, M: Mode<K>> std::fmt::Debug for Child<K, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            ChildState::Task { task, .. } => task.name(),
            ChildState::Running { running } => running.task_name(),
            ChildState::Starting => "",
        };
        f.debug_struct("Child")
            .field("task", &state)
            .field("finished", &self.item.is_some())
            .finish()
    }
}

/// How a group's task runs.
enum ChildState<K: Task> {
    /// The task value: not started yet (`in_place` is `None`), or polled in place
    /// (see `Task::in_place`), with how it was started.
    Task { task: K, in_place: Option<Start> },
    /// A started task.
    Running { running: K::Running },
    /// Briefly, while the task value moves out to be started.
    Starting,
}

impl<K: Task, M: Mode<K>> Child<K, M> {
    /// A group's task, not started yet.
    #[inline(always)]
    pub fn new(task: K) -> Self {
        Child {
            state: ChildState::Task {
                task,
                in_place: None,
            },
            item: None,
        }
    }

    /// Starts the task: a thread, cpu or process task begins at once; an async task
    /// is polled in place from the group's next poll on, or spawned.
    #[inline(always)]
    pub(crate) fn start(self: Pin<&mut Self>, starter: &Starter) {
        // SAFETY: the state is moved only here, while it holds a task that was never
        // polled (`in_place` is `None`, and nothing sets it back: no pinned reference
        // to the task was ever made, so nothing can rely on its address);
        // `poll_child` pins the task only once `in_place` is set, and a running task
        // only in `Running`, which is never moved out. If `task.start` panics, the
        // task was moved into it and is dropped there, and the state stays `Starting`,
        // which owns nothing (a later poll reports it instead of touching memory).
        let this = unsafe { self.get_unchecked_mut() };
        let ChildState::Task {
            task,
            in_place: in_place @ None,
        } = &mut this.state
        else {
            return; // started already
        };
        let start = starter.start(K::KIND);
        if task.in_place(start) {
            *in_place = Some(start);
            return;
        }
        if let ChildState::Task { task, .. } =
            std::mem::replace(&mut this.state, ChildState::Starting)
        {
            this.state = ChildState::Running {
                running: task.start(start),
            };
        }
    }

    /// Polls the started task if it is still running: `Ready(Ok(()))` once it has
    /// finished and its outcome is kept, `Ready(Err(_))` if its outcome stops the
    /// group.
    #[inline(always)]
    pub(crate) fn poll_child(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), M::Error>> {
        // SAFETY: nothing is moved out of the child here, and only a task polled in
        // place or a running task is pinned: neither is ever moved (see `start`, the
        // only place that moves a task, before it is pinned).
        let this = unsafe { self.get_unchecked_mut() };
        if this.item.is_some() {
            return Poll::Ready(Ok(()));
        }
        let finished = match &mut this.state {
            ChildState::Task {
                task,
                in_place: Some(start),
            } => {
                let name = task.name();
                // SAFETY: a task polled in place stays in this pinned child until the
                // child is dropped (`start` moves only a task with `in_place` unset).
                let task = unsafe { Pin::new_unchecked(task) };
                let result = std::task::ready!(K::poll_in_place(task, cx, *start));
                M::finish(name, result, Vec::new())
            }
            ChildState::Running { running } => {
                // SAFETY: a running task is never moved out of the child.
                let mut running = unsafe { Pin::new_unchecked(running) };
                let result = std::task::ready!(running.as_mut().poll(cx));
                M::finish(running.task_name(), result, running.take_attempts())
            }
            ChildState::Task { in_place: None, .. } | ChildState::Starting => {
                unreachable!("a group polls its tasks only after starting them")
            }
        };
        Poll::Ready(finished.map(|item| this.item = Some(item)))
    }

    /// Whether the task, not started yet, has a deadline.
    #[inline(always)]
    fn has_deadline(&self) -> bool {
        match &self.state {
            ChildState::Task { task, .. } => task.has_deadline(),
            _ => false,
        }
    }

    /// The task's outcome, once `poll_child` returned `Ready(Ok(()))`.
    #[inline(always)]
    pub(crate) fn take(self: Pin<&mut Self>) -> M::Item {
        // SAFETY: only the outcome, which is never pinned, is moved out.
        let this = unsafe { self.get_unchecked_mut() };
        this.item.take().unwrap_or_else(|| {
            unreachable!("a group's outcome is taken only once, after it finished")
        })
    }
}

/// The tasks of a tuple group, as a list: `Cons { head: Child, tail: Cons { … End } }`.
/// A list rather than a tuple so that any number of tasks works, each polled where
/// the macro put it.
#[doc(hidden)]
pub trait Children {
    /// The outcomes, as nested pairs: `(I0, (I1, ()))`.
    type Items;
    /// What stops the group early.
    type Error;
    /// The kinds of the tasks.
    const KINDS: Kinds;
    /// Whether a task not started yet has a deadline (see `Task::has_deadline`).
    fn any_deadline(&self) -> bool;
    /// Starts every task, in order.
    fn start(self: Pin<&mut Self>, starter: &Starter);
    /// Polls every task still running: `Ready(Ok(()))` once all have finished,
    /// `Ready(Err(_))` at the first outcome that stops the group.
    fn poll_all(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>>;
    /// The outcomes, once `poll_all` returned `Ready(Ok(()))`.
    fn take(self: Pin<&mut Self>) -> Self::Items;
}

pin_project_lite::pin_project! {
    /// A task of a tuple group and the tasks after it.
    #[doc(hidden)]
    #[derive(Debug)]
    pub struct Cons<H, T> {
        #[pin]
        head: H,
        #[pin]
        tail: T,
    }
}

impl<H, T> Cons<H, T> {
    /// `head`, then `tail`.
    #[inline(always)]
    pub fn new(head: H, tail: T) -> Self {
        Cons { head, tail }
    }
}

/// The end of a tuple group's list of tasks.
#[doc(hidden)]
#[derive(Debug)]
pub struct End<E>(PhantomData<fn() -> E>);

impl<E> End<E> {
    /// The end of the list.
    #[inline(always)]
    pub fn new() -> Self {
        End(PhantomData)
    }
}

impl<E> Default for End<E> {
    fn default() -> Self {
        End::new()
    }
}

impl<E> Children for End<E> {
    type Items = ();
    type Error = E;
    const KINDS: Kinds = Kinds::NONE;

    #[inline(always)]
    fn any_deadline(&self) -> bool {
        false
    }

    #[inline(always)]
    fn start(self: Pin<&mut Self>, _: &Starter) {}

    #[inline(always)]
    fn poll_all(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), E>> {
        Poll::Ready(Ok(()))
    }

    #[inline(always)]
    fn take(self: Pin<&mut Self>) {}
}

impl<K, M, T> Children for Cons<Child<K, M>, T>
where
    K: Task,
    M: Mode<K>,
    T: Children<Error = M::Error>,
{
    type Items = (M::Item, T::Items);
    type Error = M::Error;
    const KINDS: Kinds = T::KINDS.with(K::KIND);

    #[inline(always)]
    fn any_deadline(&self) -> bool {
        self.head.has_deadline() || self.tail.any_deadline()
    }

    #[inline(always)]
    fn start(self: Pin<&mut Self>, starter: &Starter) {
        let this = self.project();
        this.head.start(starter);
        this.tail.start(starter);
    }

    #[inline(always)]
    fn poll_all(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), M::Error>> {
        let this = self.project();
        let head_done = match this.head.poll_child(cx) {
            Poll::Ready(Ok(())) => true,
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => false,
        };
        match this.tail.poll_all(cx) {
            Poll::Ready(Ok(())) if head_done => Poll::Ready(Ok(())),
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            _ => Poll::Pending,
        }
    }

    #[inline(always)]
    fn take(self: Pin<&mut Self>) -> Self::Items {
        let this = self.project();
        (this.head.take(), this.tail.take())
    }
}

pin_project_lite::pin_project! {
    /// A tuple group's future: its tasks, started at the first poll, each polled
    /// where it is, and `finish`, which turns their outcomes into the invocation's
    /// value. Dropping it drops the tasks, which cancels them.
    #[doc(hidden)]
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Group<C, F> {
        #[pin]
        children: C,
        finish: Option<F>,
        started: bool,
    }
}

impl<C, F, O> Group<C, F>
where
    C: Children,
    F: FnOnce(Result<C::Items, C::Error>) -> O,
{
    /// The group of `children`; `finish` makes its value.
    #[inline(always)]
    pub fn new(children: C, finish: F) -> Self {
        Group {
            children,
            finish: Some(finish),
            started: false,
        }
    }

    /// The kinds of the group's tasks, and whether a waiting thread could run them.
    #[inline]
    pub fn kinds(&self) -> Kinds {
        if C::KINDS.all_cpu() && self.children.any_deadline() {
            C::KINDS.watched()
        } else {
            C::KINDS
        }
    }
}

impl<C, F, O> Future for Group<C, F>
where
    C: Children,
    F: FnOnce(Result<C::Items, C::Error>) -> O,
{
    type Output = O;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O> {
        let mut this = self.project();
        if this.finish.is_none() {
            panic!("a `run_concurrently!` future was polled after it completed");
        }
        if !*this.started {
            *this.started = true;
            this.children.as_mut().start(&Starter::here());
        }
        let outcome = match std::task::ready!(this.children.as_mut().poll_all(cx)) {
            Ok(()) => Ok(this.children.take()),
            Err(error) => Err(error),
        };
        match this.finish.take() {
            Some(finish) => Poll::Ready(finish(outcome)),
            None => unreachable!("checked above"),
        }
    }
}

impl<C, F> std::fmt::Debug for Group<C, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

/// Runs one task from synchronous code, as a group of one (see `task.run()`).
#[inline]
pub(crate) fn run_one<K: Task, M: Mode<K, Error = TaskError> + 'static>(
    task: K,
) -> Result<M::Item, TaskError> {
    let group = Group::new(Cons::new(Child::<K, M>::new(task), End::new()), |outcome| {
        outcome.map(|(item, ())| item)
    });
    crate::executor::block_on_group(group.kinds(), group)
}

/// The collection form: starts every task at once (async tasks each as a tokio
/// task, like a `JoinSet`), then polls only the tasks that were woken, so that a
/// group of n tasks costs O(n) polls, and returns the outcomes in input order; for a
/// fail-fast mode, the first failure returns at once. Dropping this future drops
/// the tasks, which cancels them.
pub async fn run_all<K: Task, M: Mode<K>>(tasks: Tasks<K>) -> Result<Vec<M::Item>, M::Error> {
    let tasks = match K::batch::<M>(tasks) {
        Ok(batch) => return batch.await,
        Err(tasks) => tasks,
    };
    let mut started: Vec<SlotOf<K, M>> = Vec::with_capacity(tasks.len);
    for chunk in tasks.chunks {
        // Each chunk's memory is freed once its tasks have started.
        started.extend(chunk.into_iter().map(|task| Slot::Running {
            running: task.detach(),
        }));
    }
    let mut children: Pin<Box<[SlotOf<K, M>]>> = Box::into_pin(started.into_boxed_slice());
    let count = children.len();
    let shared = Woken::new(count);
    let mut remaining = count;
    // Swapped with the shared list at each poll, so neither is reallocated.
    let mut ready: Vec<usize> = Vec::with_capacity(count);
    poll_fn(|cx| {
        shared.set_group_waker(cx.waker());
        // One pass over the tasks woken so far (a task woken meanwhile wakes this
        // future again). When tokio's cooperative budget runs out, the rest of the
        // pass is put back and the group yields, as a `JoinSet` would: polling on
        // would only make every task return `Pending` and wake itself again.
        shared.take_ready(&mut ready);
        for (position, &index) in ready.iter().enumerate() {
            if !tokio::task::coop::has_budget_remaining() {
                shared.put_back(&ready[position..]);
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let mut child = child_at(children.as_mut(), index);
            if matches!(*child, Slot::Done { .. }) {
                continue; // woken twice
            }
            let polled = shared.with_waker(index, |waker| {
                poll_slot::<K, M>(child.as_mut(), &mut Context::from_waker(waker))
            });
            match polled {
                Poll::Pending => {}
                Poll::Ready(Ok(())) => remaining -= 1,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            }
        }
        if remaining == 0 {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    })
    .await?;
    Ok((0..count)
        .map(|index| {
            let item = match child_at(children.as_mut(), index).project() {
                SlotProj::Done { item } => item.take(),
                SlotProj::Running { .. } => None,
            };
            // Every task finished (`remaining` reached 0), and each is taken once.
            item.unwrap_or_else(|| unreachable!("a collection's outcome is taken once, at the end"))
        })
        .collect())
}

pin_project_lite::pin_project! {
    /// One task of a collection: running, then its judged outcome until taken. Only
    /// the task's own handle while it runs (its name comes from there): a collection
    /// may hold a million of these.
    #[project = SlotProj]
    enum Slot<D, I> {
        Running { #[pin] running: D },
        Done { item: Option<I> },
    }
}

/// The collection slot of task type `K` in mode `M`.
type SlotOf<K, M> = Slot<<K as Task>::Detached, <M as Mode<K>>::Item>;

/// Polls a collection's task if it is still running (see [`Child::poll_child`]).
#[inline]
fn poll_slot<K: Task, M: Mode<K>>(
    mut slot: Pin<&mut SlotOf<K, M>>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), M::Error>> {
    let (item, outcome) = match slot.as_mut().project() {
        SlotProj::Running { running } => match judge_when_done::<K, M, _>(running, cx) {
            Poll::Ready(judged) => judged,
            Poll::Pending => return Poll::Pending,
        },
        SlotProj::Done { .. } => return Poll::Ready(Ok(())),
    };
    slot.set(Slot::Done { item });
    Poll::Ready(outcome)
}

/// Polls a running task; once it is done, judges its outcome for the group: the
/// item to keep (if any) and whether the group goes on.
#[inline]
fn judge_when_done<K: Task, M: Mode<K>, R>(
    mut running: Pin<&mut R>,
    cx: &mut Context<'_>,
) -> Poll<Judged<M::Item, M::Error>>
where
    R: Future<Output = Result<K::Output, TaskError>> + Attempted,
{
    let result = std::task::ready!(running.as_mut().poll(cx));
    let name = running.task_name();
    Poll::Ready(judged(M::finish(name, result, running.take_attempts())))
}

/// A judged outcome: the item to keep (if any) and whether the group goes on.
type Judged<I, E> = (Option<I>, Result<(), E>);

/// A judged outcome as the item to keep (if any) and whether the group goes on.
#[inline]
fn judged<I, E>(finished: Result<I, E>) -> Judged<I, E> {
    match finished {
        Ok(item) => (Some(item), Ok(())),
        Err(error) => (None, Err(error)),
    }
}

/// A collection's tasks, gathered in chunks so that starting them frees their
/// memory as it goes (a task value holds its whole future or closure).
#[doc(hidden)]
#[derive(Debug)]
pub struct Tasks<K> {
    chunks: Vec<Vec<K>>,
    len: usize,
}

/// Tasks per chunk of a collection.
const CHUNK: usize = 1024;

impl<K> Tasks<K> {
    pub(crate) fn iter(&self) -> impl Iterator<Item = &K> {
        self.chunks.iter().flatten()
    }

    /// The tasks, each chunk freed once its tasks are taken.
    pub(crate) fn into_iter(self) -> impl Iterator<Item = K> {
        self.chunks.into_iter().flatten()
    }
}

impl<K: Task> Tasks<K> {
    /// Gathers the tasks an iterator yields.
    pub fn collect(tasks: impl IntoIterator<Item = K>) -> Self {
        let mut chunks: Vec<Vec<K>> = Vec::new();
        let mut len = 0;
        for task in tasks {
            match chunks.last_mut() {
                Some(chunk) if chunk.len() < CHUNK => chunk.push(task),
                _ => {
                    let mut chunk = Vec::with_capacity(CHUNK);
                    chunk.push(task);
                    chunks.push(chunk);
                }
            }
            len += 1;
        }
        Tasks { chunks, len }
    }
}

/// One element of a pinned slice, pinned.
fn child_at<C>(children: Pin<&mut [C]>, index: usize) -> Pin<&mut C> {
    // SAFETY: the elements of a pinned slice are pinned too: the boxed slice is never
    // reallocated or moved out of, and each element is only ever replaced in place
    // through `Pin::set` (which drops the old value where it is).
    unsafe { children.map_unchecked_mut(|slice| &mut slice[index]) }
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
