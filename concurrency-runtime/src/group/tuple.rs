//! The tuple form of `run_concurrently!`: a group of tasks of any types, as a list
//! built in place in the group's future.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::child::Child;
use super::mode::Mode;
use crate::placement::{Placement, Starter};
use crate::runtime::Kinds;

/// The tasks of a tuple group, as a list: `Cons { head: Child, tail: Cons { … End } }`.
/// A list rather than a tuple so that any number of tasks works, each polled where
/// the macro put it.
pub trait Children {
    /// The outcomes, as nested pairs: `(I0, (I1, ()))`.
    type Items;
    /// What stops the group early.
    type Error;
    /// The kinds of the tasks.
    const KINDS: Kinds;
    /// Whether a task not started yet has a deadline (see `Placement::has_deadline`).
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

impl<P, M, T> Children for Cons<Child<P, M>, T>
where
    P: Placement,
    M: Mode<P>,
    T: Children<Error = M::Error>,
{
    type Items = (M::Item, T::Items);
    type Error = M::Error;
    const KINDS: Kinds = T::KINDS.with(P::KIND);

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
