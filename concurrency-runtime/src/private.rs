//! Used by the code the macros generate. Not public API: anything here may change in
//! any release (the macro crate is pinned with `=`).

pub use crate::group::{
    Child, CollectAll, Cons, End, FailFast, Group, Values, run_all, run_all_with_progress, settled,
    value,
};
#[cfg(all(feature = "process", target_os = "linux"))]
pub use crate::placement::Process;
pub use crate::placement::{
    AsyncIo, BlockingIo, Cpu, Fallible, Invalid, OutputKind, TaskErrorType, TaskValue, Tasks, Value,
};
pub use crate::policy::{Limit, Policy, RetryOn};
#[cfg(all(feature = "process", target_os = "linux"))]
pub use crate::process::codec::{
    ArgCodec, ProcessArgument, ProcessOutput, ResultCodec, arg_codec, finish_arguments,
    result_codec,
};
#[cfg(all(feature = "process", target_os = "linux"))]
pub use crate::process::registry::{EntryError, PROCESS_TASKS, ProcessEntry, Run};
#[cfg(all(feature = "process", target_os = "linux"))]
pub use crate::process::wire::{Decoder, Error as WireError};
pub use crate::runtime::{Kinds, block_on_group};
#[cfg(all(feature = "process", target_os = "linux"))]
pub use crate::task::ProcessTask;
pub use crate::task::{AsyncIoTask, BlockingIoTask, CpuTask, Task};
pub use core::time::Duration;
#[cfg(all(feature = "process", target_os = "linux"))]
pub use linkme;

use crate::placement::Placement;
use crate::task::sealed::Sealed;

/// What a function whose task attribute was rejected returns (see
/// `placement/invalid.rs`).
pub type InvalidTask<R = ()> = TaskValue<Invalid<R>>;

/// The value of a `run_concurrently!` invocation that did not expand (its mistake was
/// reported): of whatever type the code around it expects. Never called: the program
/// does not compile.
pub fn not_expanded<T>() -> T {
    unreachable!("a `run_concurrently!` invocation with a mistake does not compile")
}

/// A task call's value as the groups take it, so that a call that does not return a
/// task is reported under that call, and only there: for a value that is not a task,
/// the result's type is unknown to the compiler, which then reports nothing more
/// about it.
#[inline(always)]
pub fn as_task<T: Task>(task: T) -> TaskValue<<T as Sealed>::Placement> {
    task.into_value()
}

/// Collects the collection form's tasks; a non-task item is reported here.
pub fn collect_tasks<I>(tasks: I) -> Tasks<<I::Item as Sealed>::Placement>
where
    I: IntoIterator,
    I::Item: Task,
{
    Tasks::collect(tasks.into_iter().map(Sealed::into_value))
}

/// The kind of a collection's tasks, and whether a waiting thread could run them.
pub fn kind_of_all<P: Placement>(tasks: &Tasks<P>) -> Kinds {
    let kinds = Kinds::NONE.with(P::KIND);
    if kinds.all_cpu() && tasks.iter().any(P::has_deadline) {
        kinds.watched()
    } else {
        kinds
    }
}

/// Compile-time check that a task argument can move to another thread.
#[diagnostic::on_unimplemented(
    message = "task argument `{Self}` cannot be sent to the thread that runs the task",
    label = "this argument type is not `Send`",
    note = "a task runs on another thread: use thread-safe types (`Arc` instead of `Rc`, `Mutex` instead of `RefCell`), or add a `Send` bound to a generic parameter"
)]
pub trait SendArgument {}
impl<T: Send + ?Sized> SendArgument for T {}

/// Compile-time check that a task's result can come back to the caller's thread.
#[diagnostic::on_unimplemented(
    message = "task result `{Self}` cannot be sent back from the thread that runs the task",
    label = "this result type is not `Send`",
    note = "a task runs on another thread: return thread-safe types (`Arc` instead of `Rc`), or add a `Send` bound to a generic parameter"
)]
pub trait SendOutput {}
impl<T: Send + ?Sized> SendOutput for T {}

#[inline(always)]
pub fn assert_arg_send<T: SendArgument + ?Sized>() {}

#[inline(always)]
pub fn assert_output_send<T: SendOutput + ?Sized>() {}

/// Compile-time check that a task with `retries` can be called again with the same
/// arguments.
#[diagnostic::on_unimplemented(
    message = "task argument `{Self}` must be `Clone` for `retries`",
    label = "each retry runs the task again with a clone of this argument",
    note = "derive or implement `Clone` for it, wrap it in an `Arc`, or remove `retries`"
)]
pub trait RetryArgument {
    /// The argument for the next attempt.
    fn clone_for_retry(&self) -> Self;
}
impl<T: Clone> RetryArgument for T {
    #[inline(always)]
    fn clone_for_retry(&self) -> Self {
        self.clone()
    }
}

/// The argument of a task with `retries`, for its next attempt.
#[inline(always)]
pub fn clone_for_retry<T: RetryArgument>(argument: &T) -> T {
    argument.clone_for_retry()
}

/// The parts of a `Result` type, named through a projection so that the check
/// below can look at the error type of `io::Result<T>` and other aliases.
pub trait ResultParts {
    /// The `E` of `Result<T, E>`.
    type Error;
}
impl<T, E> ResultParts for ::core::result::Result<T, E> {
    type Error = E;
}

#[inline(always)]
pub fn assert_task_error<R>()
where
    R: ResultParts,
    R::Error: TaskErrorType,
{
}

/// The `dag { ... }` form's support: the runtime's nodes and bindings, and the
/// functions that type them from the makers the macro writes (here, above `Task`).
pub mod dag {
    use std::marker::PhantomData;

    use crate::group::Mode;
    pub use crate::group::dag::*;
    use crate::kind::TaskKind;
    use crate::placement::Placement;
    use crate::task::Task;
    use crate::task::sealed::Sealed;

    /// A pipelined stage, typed by its maker (which makes its function).
    #[inline(always)]
    pub fn stage_for<M, I, F, G, T, X>(_: &F) -> StreamNode<X::Placement, M>
    where
        F: FnOnce(I) -> G,
        G: FnMut(T) -> X,
        X: Task,
        M: DagMode<<X as Sealed>::Placement>,
    {
        StreamNode::new()
    }

    /// The type of a pipelined stage's value.
    #[inline(always)]
    pub fn stage_value_of<M, I, F, G, T, X>(
        _: &F,
    ) -> PhantomData<Vec<<M as Mode<<X as Sealed>::Placement>>::Item>>
    where
        F: FnOnce(I) -> G,
        G: FnMut(T) -> X,
        X: Task,
        M: Mode<<X as Sealed>::Placement>,
    {
        PhantomData
    }

    /// The type of the value a task node's users get.
    #[inline(always)]
    pub fn value_of<M, I, F, T>(_: &F) -> PhantomData<<M as DagMode<T::Placement>>::Value>
    where
        F: FnOnce(I) -> T,
        T: Task,
        M: DagMode<<T as Sealed>::Placement>,
    {
        PhantomData
    }

    /// A task node, typed by its maker.
    #[inline(always)]
    pub fn node_for<M, I, F, T>(_: &F) -> Node<T::Placement, M>
    where
        F: FnOnce(I) -> T,
        T: Task,
        M: DagMode<<T as Sealed>::Placement>,
    {
        Node::new()
    }

    /// Where the tasks of a function run, from its type alone: for `describe;`, which
    /// draws a graph without running it.
    pub trait TaskFn<Args> {
        /// The placement of the function's tasks.
        fn kind() -> TaskKind;
    }

    macro_rules! task_fn {
        ($($arg:ident),*) => {
            impl<F, T, $($arg),*> TaskFn<($($arg,)*)> for F
            where
                F: Fn($($arg),*) -> T,
                T: Task,
            {
                fn kind() -> TaskKind {
                    <<T as Sealed>::Placement as Placement>::KIND
                }
            }
        };
    }

    task_fn!();
    task_fn!(A);
    task_fn!(A, B);
    task_fn!(A, B, C);
    task_fn!(A, B, C, D);
    task_fn!(A, B, C, D, E);
    task_fn!(A, B, C, D, E, G);
    task_fn!(A, B, C, D, E, G, H);
    task_fn!(A, B, C, D, E, G, H, I);

    /// The placement of `function`'s tasks (see [`TaskFn`]).
    pub fn kind_of_fn<Args, F: TaskFn<Args>>(function: &F) -> TaskKind {
        let _ = function;
        F::kind()
    }
}
