//! The `dag { ... }` form: tasks whose arguments are other tasks' results, each
//! started the moment its inputs are ready, each on its own executor.
//!
//! The macro knows the graph. It numbers the nodes in the order they are written
//! (every edge points from an earlier node to a later one), turns each node's call
//! into a closure of its inputs (a *maker*, evaluated when the inputs are ready), and
//! generates one poll function that, in that order, starts each node whose inputs are
//! ready and polls each running one. One pass in that order is enough: a node that
//! finishes fills its binding's [`Slot`] before any node that uses it is looked at.
//! A task node is a [`Child`], started and polled exactly as a tuple group's task (a
//! plain async task is polled in place, other tasks start on their executors); a
//! collection node is the collection form's future.
//!
//! A binding with several users is taken by each of them: a clone for all but the
//! last one (a count of users left decides), so a value with one user is never
//! cloned.
//!
//! Failures follow the mode, as in the other forms: fail-fast modes stop at the first
//! failure (dropping the form's future cancels every running node; the waiting ones
//! never start); in `all;` a node whose input failed does not run and its binding
//! records the root cause ([`TaskErrorKind::Upstream`](crate::error::TaskErrorKind::Upstream)).

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use super::child::Child;
use super::collection::run_all;
use super::mode::{CollectAll, FailFast, Mode, Values};
use crate::error::TaskError;
use crate::kind::TaskKind;
use crate::placement::{Placement, Starter, TaskValue, Tasks};
use crate::sync::Woken;
use std::sync::Arc;

/// What a node's binding gives its users, per mode.
pub trait DagMode<P: Placement>: Mode<P> {
    /// What a user of the binding gets: the function's return value (plain form),
    /// or its success value (`try;`, `all;`).
    type Value: Send + 'static;

    /// A finished node's item as its binding: its value, or (in `all;`) its failure.
    fn binding(item: Self::Item) -> Result<Self::Value, TaskError>;

    /// The item of a task that did not run because the item it was to get failed
    /// (only `all;` goes on after a failure).
    fn skipped(error: TaskError) -> Option<Self::Item> {
        let _ = error;
        None
    }
}

impl<P: Placement> DagMode<P> for Values {
    type Value = P::Output;

    #[inline(always)]
    fn binding(item: P::Output) -> Result<P::Output, TaskError> {
        Ok(item)
    }
}

impl<P: Placement> DagMode<P> for FailFast {
    type Value = P::Ok;

    #[inline(always)]
    fn binding(item: P::Ok) -> Result<P::Ok, TaskError> {
        Ok(item)
    }
}

impl<P: Placement> DagMode<P> for CollectAll {
    type Value = P::Ok;

    #[inline(always)]
    fn binding(item: Result<P::Ok, TaskError>) -> Result<P::Ok, TaskError> {
        item
    }

    fn skipped(error: TaskError) -> Option<Result<P::Ok, TaskError>> {
        Some(Err(error))
    }
}

/// What a node's poll gives once it finished: its binding, or what stops the form.
pub type Finished<V, E> = Result<Result<V, TaskError>, E>;

pin_project_lite::pin_project! {
    /// A task node: its task once its inputs are ready, started and polled as a tuple
    /// group's task.
    pub struct Node<P: Placement, M: Mode<P>> {
        #[pin]
        child: Option<Child<P, M>>,
        done: bool,
    }
}

impl<P: Placement, M: DagMode<P>> Node<P, M> {
    /// A node not started yet.
    #[inline(always)]
    pub fn new() -> Self {
        Node {
            child: None,
            done: false,
        }
    }

    /// Starts the node's task: its inputs are ready.
    #[inline(always)]
    pub fn start(self: Pin<&mut Self>, task: TaskValue<P>, starter: &mut DagStarter) {
        let mut this = self.project();
        this.child.set(Some(Child::new(task)));
        if let Some(child) = this.child.as_pin_mut() {
            child.start(starter.get());
        }
    }

    /// Marks the node finished without running it (`all;`: an input failed).
    #[inline(always)]
    pub fn skip(self: Pin<&mut Self>) {
        *self.project().done = true;
    }

    /// Whether the node finished (or was skipped).
    #[inline(always)]
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Polls the node's task if it runs: `Ready` once, when it finished.
    #[inline(always)]
    pub fn poll_node(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Finished<M::Value, M::Error>> {
        let mut this = self.project();
        let Some(mut child) = this.child.as_mut().as_pin_mut() else {
            return Poll::Pending;
        };
        let finished = ready!(child.as_mut().poll_child(cx));
        *this.done = true;
        let finished = finished.map(|()| M::binding(child.take()));
        // A finished task holds nothing more that anyone needs.
        this.child.set(None);
        Poll::Ready(finished)
    }
}

impl<P: Placement, M: DagMode<P>> Default for Node<P, M> {
    fn default() -> Self {
        Node::new()
    }
}

/// The future of a collection node's group.
type Running<I, E> = Pin<Box<dyn Future<Output = Result<Vec<I>, E>> + Send>>;

/// A collection node (`let xs = for ITER;`): the tasks its iterator yields, once its
/// inputs are ready; its value is the `Vec` of their items, in order. Async tasks are
/// polled in place, each with its own waker, as a tuple group polls them (a node of
/// the form is part of one future already: a tokio task per item would only add a
/// spawn each); other tasks run as the collection form runs them (cpu tasks as one
/// batch on rayon, process tasks as one batch to the pool).
pub struct CollectionNode<P: Placement, M: Mode<P>> {
    running: Option<Running<M::Item, M::Error>>,
    in_place: Option<StreamNode<P, M>>,
    done: bool,
    placement: PhantomData<fn() -> P>,
}

impl<P: Placement, M: DagMode<P> + 'static> CollectionNode<P, M> {
    /// A node not started yet.
    pub fn new() -> Self {
        CollectionNode {
            running: None,
            in_place: None,
            done: false,
            placement: PhantomData,
        }
    }

    /// Starts the node's tasks: its inputs are ready.
    pub fn start(self: Pin<&mut Self>, tasks: Tasks<P>, starter: &mut DagStarter) {
        let this = self.get_mut();
        if P::KIND.is_async() {
            let mut in_place = StreamNode::new();
            Pin::new(&mut in_place).start(tasks, false, starter);
            this.in_place = Some(in_place);
        } else {
            this.running = Some(Box::pin(run_all::<P, M>(tasks)));
        }
    }

    /// Marks the node finished without running it (`all;`: an input failed).
    pub fn skip(self: Pin<&mut Self>) {
        self.get_mut().done = true;
    }

    /// Whether the node finished (or was skipped).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Polls the node's tasks if they run: `Ready` once, when all finished.
    pub fn poll_node(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Finished<Vec<M::Item>, M::Error>> {
        let this = self.get_mut();
        if let Some(in_place) = this.in_place.as_mut() {
            let finished = ready!(Pin::new(in_place).poll_node(cx));
            this.in_place = None;
            this.done = true;
            return Poll::Ready(finished);
        }
        let Some(running) = this.running.as_mut() else {
            return Poll::Pending;
        };
        let finished = ready!(running.as_mut().poll(cx));
        this.running = None;
        this.done = true;
        Poll::Ready(finished.map(Ok))
    }
}

impl<P: Placement, M: Mode<P>> std::fmt::Debug for CollectionNode<P, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectionNode")
            .field("running", &self.running.is_some())
            .field("done", &self.done)
            .finish()
    }
}

impl<P: Placement, M: DagMode<P> + 'static> Default for CollectionNode<P, M> {
    fn default() -> Self {
        CollectionNode::new()
    }
}

/// A task of a stream node, pinned in its own box.
type PinnedChild<P, M> = Pin<Box<Child<P, M>>>;

/// A collection node that streams: a pipelined stage (`let ys = for xs.into_iter()
/// .map(f);` over a collection node `xs` that nothing else uses), whose task `i`
/// starts as soon as item `i` of the stage before it is ready, or a collection whose
/// only user is such a stage, whose items go to it one by one as they finish.
///
/// Each item is a tuple group's task ([`Child`]): started at once, polled (an async
/// task in place) only when it was woken, through one waker record for the whole
/// collection.
pub struct StreamNode<P: Placement, M: Mode<P>> {
    children: Vec<Option<PinnedChild<P, M>>>,
    items: Vec<Option<M::Item>>,
    /// Whether finished items go to `outbox` (for the next stage) rather than `items`.
    forward: bool,
    outbox: Vec<(usize, M::Item)>,
    woken: Option<Arc<Woken>>,
    /// Tasks started since the last poll, and the woken ones (reused lists).
    fresh: Vec<u32>,
    ready: Vec<u32>,
    /// How many items there are, and how many have not finished, once known.
    count: Option<usize>,
    remaining: usize,
    done: bool,
}

impl<P: Placement, M: DagMode<P>> StreamNode<P, M> {
    /// A node not started yet.
    pub fn new() -> Self {
        StreamNode {
            children: Vec::new(),
            items: Vec::new(),
            forward: false,
            outbox: Vec::new(),
            woken: None,
            fresh: Vec::new(),
            ready: Vec::new(),
            count: None,
            remaining: 0,
            done: false,
        }
    }

    /// Starts a first stage's tasks; `forward`: its items go to the next stage.
    pub fn start(self: Pin<&mut Self>, tasks: Tasks<P>, forward: bool, starter: &mut DagStarter) {
        let this = self.get_mut();
        this.expect(tasks.len(), forward);
        for (index, task) in tasks.into_iter().enumerate() {
            this.push(index, task, starter);
        }
    }

    /// Expects `count` tasks, pushed one by one as the stage before finishes items.
    pub fn expect(&mut self, count: usize, forward: bool) {
        self.children = (0..count).map(|_| None).collect();
        self.items = (0..count).map(|_| None).collect();
        self.forward = forward;
        self.woken = Some(Woken::new(count));
        self.count = Some(count);
        self.remaining = count;
    }

    /// Starts task `index` (its item of the stage before is ready).
    pub fn push(&mut self, index: usize, task: TaskValue<P>, starter: &mut DagStarter) {
        let mut child = Box::pin(Child::new(task));
        child.as_mut().start(starter.get());
        self.children[index] = Some(child);
        // Every index fits: `Woken::new` checked the count.
        self.fresh.push(index as u32);
    }

    /// Item `index` failed in the stage before (`all;`): its task does not run.
    pub fn skip_item(&mut self, index: usize, error: TaskError) {
        if let Some(item) = M::skipped(error) {
            self.finish(index, item);
        }
    }

    /// How many items the node has, once it started.
    pub fn count(&self) -> Option<usize> {
        self.count
    }

    /// The items finished since the last call, for the next stage.
    pub fn finished(&mut self) -> std::vec::Drain<'_, (usize, M::Item)> {
        self.outbox.drain(..)
    }

    /// Whether the node finished (or was skipped).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Marks the node finished without running it (`all;`: an input failed).
    pub fn skip(self: Pin<&mut Self>) {
        self.get_mut().done = true;
    }

    fn finish(&mut self, index: usize, item: M::Item) {
        self.children[index] = None;
        if self.forward {
            self.outbox.push((index, item));
        } else {
            self.items[index] = Some(item);
        }
        self.remaining -= 1;
    }

    /// Polls the tasks started or woken since the last poll: `Ready` once, when every
    /// item has finished (with the items in order; none for a node that forwards).
    pub fn poll_node(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Finished<Vec<M::Item>, M::Error>> {
        let this = self.get_mut();
        let Some(woken) = this.woken.clone() else {
            return Poll::Pending;
        };
        if this.done {
            return Poll::Pending;
        }
        woken.set_group_waker(cx.waker());
        woken.take_ready(&mut this.ready);
        this.ready.append(&mut this.fresh);
        let mut ready = std::mem::take(&mut this.ready);
        for &index in &ready {
            let index = index as usize;
            let Some(child) = this.children[index].as_mut() else {
                continue; // not started yet, or finished
            };
            match woken.with_waker(index, |waker| {
                child.as_mut().poll_child(&mut Context::from_waker(waker))
            }) {
                Poll::Pending => {}
                Poll::Ready(Ok(())) => {
                    let item = child.as_mut().take();
                    this.finish(index, item);
                }
                Poll::Ready(Err(stop)) => {
                    this.done = true;
                    return Poll::Ready(Err(stop));
                }
            }
        }
        ready.clear();
        this.ready = ready;
        if this.remaining != 0 {
            return Poll::Pending;
        }
        this.done = true;
        let items = std::mem::take(&mut this.items);
        Poll::Ready(Ok(Ok(items.into_iter().flatten().collect())))
    }
}

// Nothing of a stream node is pinned where it is: its tasks are pinned in their own
// boxes, and its items are values that move freely.
impl<P: Placement, M: Mode<P>> Unpin for StreamNode<P, M> {}

impl<P: Placement, M: DagMode<P>> Default for StreamNode<P, M> {
    fn default() -> Self {
        StreamNode::new()
    }
}

impl<P: Placement, M: Mode<P>> std::fmt::Debug for StreamNode<P, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamNode")
            .field("items", &self.items.len())
            .field("remaining", &self.remaining)
            .field("done", &self.done)
            .finish()
    }
}

/// A first stage that streams, typed by its maker.
#[inline(always)]
pub fn stream_for<M, I, F, P>(_: &F) -> StreamNode<P, M>
where
    F: FnOnce(I) -> Tasks<P>,
    P: Placement,
    M: DagMode<P>,
{
    StreamNode::new()
}

/// The function of a pipelined stage, typed by the items it takes (`item`).
#[inline(always)]
pub fn stage_fn<T, R, G: FnMut(T) -> R>(item: PhantomData<T>, function: G) -> G {
    let _ = item;
    function
}

/// The type of a collection's items.
#[inline(always)]
pub fn element_of<T>(_: PhantomData<Vec<T>>) -> PhantomData<T> {
    PhantomData
}

/// The type of an item's success value (`all;`).
#[inline(always)]
pub fn success_of<T>(_: PhantomData<Result<T, TaskError>>) -> PhantomData<T> {
    PhantomData
}

/// The failure of a pipelined stage's task `task` whose item of the stage `node`
/// before failed (`all;`).
pub fn upstream(task: &'static str, node: &'static str, failed: &TaskError) -> TaskError {
    match failed.kind() {
        // The item did not run either: the same root cause.
        crate::error::TaskErrorKind::Upstream { node, task: root } => {
            TaskError::upstream(task, node, root)
        }
        _ => TaskError::upstream(task, node, failed.task()),
    }
}

/// The node that failed first on a path to a node that did not run (`all;`).
#[derive(Debug, Clone, Copy)]
pub struct Root {
    node: &'static str,
    task: &'static str,
}

/// A binding's state.
#[derive(Debug)]
enum State<T> {
    /// Its node has not finished.
    Waiting,
    Ready(T),
    /// Its node failed (`error` is its failure, until a user of the outcome takes
    /// it), or did not run because an input failed (`error` is `None`).
    Failed {
        root: Root,
        error: Option<TaskError>,
    },
    /// Its last user took it.
    Taken,
}

/// A binding: its node's value until its users have taken it.
#[derive(Debug)]
pub struct Slot<T> {
    state: State<T>,
    /// Users that have not taken it yet.
    users: u32,
}

impl<T> Slot<T> {
    /// The binding of a node whose value is of type `T`, for `users` users.
    #[inline(always)]
    pub fn new(_: PhantomData<T>, users: u32) -> Self {
        Slot {
            state: State::Waiting,
            users,
        }
    }

    /// The node finished: its binding, named `node` in the form.
    #[inline(always)]
    pub fn fill(&mut self, binding: Result<T, TaskError>, node: &'static str) {
        self.state = match binding {
            Ok(value) => State::Ready(value),
            Err(error) => State::Failed {
                root: Root {
                    node,
                    task: error.task(),
                },
                error: Some(error),
            },
        };
    }

    /// Its node did not run: `root` failed upstream.
    #[inline(always)]
    pub fn fail_upstream(&mut self, root: Root) {
        self.state = State::Failed { root, error: None };
    }

    /// Whether its node finished (its users may start).
    #[inline(always)]
    pub fn is_ready(&self) -> bool {
        !matches!(self.state, State::Waiting)
    }

    /// The root cause, if its node failed or did not run.
    #[inline(always)]
    pub fn failure(&self) -> Option<Root> {
        match &self.state {
            State::Failed { root, .. } => Some(*root),
            _ => None,
        }
    }

    /// The value, for its only user.
    #[inline(always)]
    pub fn take(&mut self) -> T {
        self.users = self.users.saturating_sub(1);
        match std::mem::replace(&mut self.state, State::Taken) {
            State::Ready(value) => value,
            _ => unreachable!("a binding is taken only once its node has its value"),
        }
    }

    /// The value, for one of several users: a clone (by `share`) for all but the last.
    #[inline(always)]
    pub fn take_shared(&mut self, share: fn(&T) -> T) -> T {
        if self.users > 1 {
            self.users -= 1;
            match &self.state {
                State::Ready(value) => share(value),
                _ => unreachable!("a binding is taken only once its node has its value"),
            }
        } else {
            self.take()
        }
    }

    /// The outcome, for the form's final expression in `all;`: the value, its node's
    /// failure, or (its node `task` did not run) the failure upstream.
    pub fn outcome(&mut self, task: &'static str) -> Result<T, TaskError> {
        match &mut self.state {
            State::Ready(_) => Ok(self.take()),
            State::Failed { error, root } => Err(error
                .take()
                .unwrap_or_else(|| TaskError::upstream(task, root.node, root.task))),
            State::Waiting | State::Taken => {
                unreachable!("a binding's outcome is taken once, after its node finished")
            }
        }
    }

    /// [`outcome`](Self::outcome), for a binding that other nodes use too.
    pub fn outcome_shared(
        &mut self,
        task: &'static str,
        share: fn(&T) -> T,
    ) -> Result<T, TaskError> {
        match &self.state {
            State::Ready(_) => Ok(self.take_shared(share)),
            _ => self.outcome(task),
        }
    }
}

/// What the nodes of a form start with: what a group knows of the thread they start
/// on, looked up at the form's first poll (inside the wait of a synchronous caller,
/// where it is known what that thread may poll).
#[derive(Debug, Default)]
pub struct DagStarter(Option<Starter>);

impl DagStarter {
    /// Nothing looked up yet.
    pub fn new() -> Self {
        DagStarter(None)
    }

    fn get(&mut self) -> &Starter {
        self.0.get_or_insert_with(Starter::here)
    }
}

/// The types of a node's inputs, as nested pairs of markers: `(PhantomData<A>,
/// (PhantomData<B>, ()))` for the values `(A, (B, ()))`.
pub trait Inputs {
    /// The inputs' values, as nested pairs.
    type Values;
}

impl Inputs for () {
    type Values = ();
}

impl<T, Rest: Inputs> Inputs for (PhantomData<T>, Rest) {
    type Values = (T, Rest::Values);
}

/// A node's maker: the closure of its inputs that makes its task (or its collection's
/// iterator, or the form's value), typed by `inputs` so that the closure's
/// parameters have their types where it is written.
#[inline(always)]
pub fn maker<I: Inputs, R, F: FnOnce(I::Values) -> R>(inputs: I, make: F) -> F {
    let _ = inputs;
    make
}

/// The type of a collection node's value. (Its maker collects the tasks its
/// iterator yields, so that the iterator may borrow the maker's inputs.)
#[inline(always)]
pub fn collection_value_of<M, I, F, P>(_: &F) -> PhantomData<Vec<<M as Mode<P>>::Item>>
where
    F: FnOnce(I) -> Tasks<P>,
    P: Placement,
    M: Mode<P>,
{
    PhantomData
}

/// A collection node, typed by its maker.
#[inline(always)]
pub fn collection_for<M, I, F, P>(_: &F) -> CollectionNode<P, M>
where
    F: FnOnce(I) -> Tasks<P>,
    P: Placement,
    M: DagMode<P> + 'static,
{
    CollectionNode::new()
}

/// The type of a binding's outcome in `all;`.
#[inline(always)]
pub fn outcome_of<T>(_: PhantomData<T>) -> PhantomData<Result<T, TaskError>> {
    PhantomData
}

/// A dag's graph as Graphviz DOT text (`describe;`).
#[derive(Debug)]
pub struct Dot {
    text: String,
}

impl Dot {
    /// An empty graph.
    pub fn new() -> Self {
        Dot {
            text: String::from(
                "digraph dag {\n    rankdir=LR;\n    node [shape=box, fontname=\"monospace\"];\n",
            ),
        }
    }

    /// Node `id`: binding `name` of a call of `function`, whose tasks run on `kind`
    /// (when the function's type tells); `collection`: a `for` node.
    pub fn node(
        &mut self,
        id: usize,
        name: &str,
        function: &str,
        kind: Option<TaskKind>,
        collection: bool,
    ) {
        use std::fmt::Write;
        let what = if collection {
            format!("for .. {function}")
        } else {
            format!("{function}(..)")
        };
        let place = kind.map_or_else(String::new, |kind| format!("\\n{kind}"));
        let style = if collection { ", peripheries=2" } else { "" };
        let _ = writeln!(
            self.text,
            "    n{id} [label=\"{} = {}{place}\"{style}];",
            escape(name),
            escape(&what)
        );
    }

    /// The form's value, made of the nodes `inputs`.
    pub fn value(&mut self, inputs: &[usize]) {
        use std::fmt::Write;
        let _ = writeln!(self.text, "    value [label=\"value\", shape=ellipse];");
        for input in inputs {
            let _ = writeln!(self.text, "    n{input} -> value;");
        }
    }

    /// Node `to` uses node `from`'s binding.
    pub fn edge(&mut self, from: usize, to: usize) {
        use std::fmt::Write;
        let _ = writeln!(self.text, "    n{from} -> n{to};");
    }

    /// The DOT text.
    pub fn finish(mut self) -> String {
        self.text.push_str("}\n");
        self.text
    }
}

impl Default for Dot {
    fn default() -> Self {
        Dot::new()
    }
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}
