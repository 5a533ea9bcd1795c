//! A task's options: `timeout`, `retries` (with `backoff` and `retry_on`) and
//! `limit`, applied the same way to every kind of task.
//!
//! A task without options runs its single attempt directly ([`Policied::Plain`]):
//! options cost nothing when they are not used. With options, one boxed future
//! supervises the attempts: it takes a permit of the task's limit, starts an
//! attempt, races it against the deadline, and decides whether to retry.

use std::any::Any;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::{TaskError, TaskErrorKind};
use crate::observe::{self, Attempt, Origin};
use crate::runtime::runtime;

/// A task's options, as written on its attribute (plus per-call overrides).
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// `timeout = "..."`: the deadline of each attempt.
    pub timeout: Option<Duration>,
    /// `retries = N`: how many more attempts after a failure.
    pub retries: u32,
    /// `backoff = "..."`: the pause before the first retry; it doubles each time.
    pub backoff: Duration,
    /// `retry_on = [...]`: which failures are retried.
    pub retry_on: RetryOn,
    /// `limit = N`: the semaphore shared by every call of this task.
    pub limit: Option<&'static Limit>,
}

impl Policy {
    /// No options: one attempt, no deadline, no limit.
    pub const NONE: Policy = Policy {
        timeout: None,
        retries: 0,
        backoff: Duration::ZERO,
        retry_on: RetryOn::DEFAULT,
        limit: None,
    };

    #[inline]
    pub(crate) fn is_plain(&self) -> bool {
        self.timeout.is_none() && self.retries == 0 && self.limit.is_none()
    }
}

/// A task's options as it carries them, and what observes its call: nothing for a
/// task without options that nobody observes (the common case, kept to one pointer
/// because task values are moved around), else boxed: the options with the
/// placement's supervisor (what starts the task's supervised attempts, typed by the
/// placement: see `seam::Supervisor`), the call's [`Origin`] (feature `tracing`), and
/// the first attempt of an async task polled in place. The supervisor is referenced
/// only where a task gets options (an option on its attribute, `with_timeout`), so
/// that a crate's tasks without options never compile the supervision.
#[derive(Debug)]
#[repr(transparent)]
pub(crate) struct Options(Option<Box<WithOptions>>);

#[derive(Debug)]
struct WithOptions {
    policy: Policy,
    /// `None`: the task has no options (the box holds what observes it).
    supervisor: Option<&'static (dyn Any + Send + Sync)>,
    origin: Origin,
    /// The attempt of an async task polled in place, made at its first observed poll.
    in_place: Attempt,
}

/// The origin of a task that nobody observed when it was made.
static UNOBSERVED: Origin = Origin::NONE;

impl Options {
    /// No options; the call observed if anyone observes now (see `Origin::here`).
    #[inline(always)]
    #[track_caller]
    pub(crate) fn none() -> Self {
        #[cfg(feature = "tracing")]
        if observe::observing() {
            return observed(std::panic::Location::caller());
        }
        Options(None)
    }

    /// The options of `policy`, supervised by `supervisor`.
    #[track_caller]
    pub(crate) fn new(policy: Policy, supervisor: &'static (dyn Any + Send + Sync)) -> Self {
        if policy.is_plain() {
            return Self::none();
        }
        Options(Some(Self::boxed(policy, Some(supervisor), Origin::here())))
    }

    #[cold]
    fn boxed(
        policy: Policy,
        supervisor: Option<&'static (dyn Any + Send + Sync)>,
        origin: Origin,
    ) -> Box<WithOptions> {
        Box::new(WithOptions {
            policy,
            supervisor,
            origin,
            in_place: Attempt::NONE,
        })
    }

    /// Whether the task has no options.
    #[inline(always)]
    pub(crate) fn is_plain(&self) -> bool {
        self.0
            .as_ref()
            .is_none_or(|options| options.supervisor.is_none())
    }

    /// The supervisor of a task with options.
    #[inline(always)]
    pub(crate) fn supervisor(&self) -> Option<&'static (dyn Any + Send + Sync)> {
        self.0.as_ref().and_then(|options| options.supervisor)
    }

    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.0.as_ref().and_then(|options| options.policy.timeout)
    }

    #[cfg(all(feature = "process", target_os = "linux"))]
    pub(crate) fn retries(&self) -> u32 {
        self.0.as_ref().map_or(0, |options| options.policy.retries)
    }

    /// Where and under which span the task was called (see [`Origin`]).
    #[inline(always)]
    pub(crate) fn origin(&self) -> &Origin {
        self.0
            .as_deref()
            .map_or(&UNOBSERVED, |options| &options.origin)
    }

    /// Whether someone observed the call of this task without options when it was
    /// made (see `Origin::here`). (A task with options is never polled in place.)
    #[inline(always)]
    pub(crate) fn is_observed(&self) -> bool {
        self.0.is_some()
    }

    /// The origin and the attempt of an async task polled in place.
    #[cold]
    pub(crate) fn in_place(&mut self) -> (&Origin, &mut Attempt) {
        let options = self
            .0
            .get_or_insert_with(|| Self::boxed(Policy::NONE, None, Origin::NONE));
        (&options.origin, &mut options.in_place)
    }

    /// Sets the deadline of each attempt; `supervisor` supervises a task that had no
    /// options.
    pub(crate) fn set_timeout(
        &mut self,
        timeout: Duration,
        supervisor: &'static (dyn Any + Send + Sync),
    ) {
        let options = self
            .0
            .get_or_insert_with(|| Self::boxed(Policy::NONE, None, Origin::NONE));
        options.supervisor.get_or_insert(supervisor);
        options.policy.timeout = Some(timeout);
    }

    /// The policy (without options: none).
    fn into_policy(mut self) -> Policy {
        self.0.take().map_or(Policy::NONE, |options| options.policy)
    }
}

/// The options of a task without options whose call at `site` is observed.
///
/// Not unwinding (`extern "C"`: a panic here, which only a subscriber's
/// `current_span` could raise, aborts), so that building a task value never unwinds
/// and a group's task values are built in place rather than moved (measured: about
/// 70 instructions a group of three trivial tasks).
#[cfg(feature = "tracing")]
#[cold]
#[inline(never)]
extern "C" fn observed(site: &'static std::panic::Location<'static>) -> Options {
    Options(Some(Options::boxed(
        Policy::NONE,
        None,
        observe::observed_call(site),
    )))
}

// Dropped with every task value: the common case (no box) stays inline (with the
// feature, the box holds more to drop).
#[cfg(feature = "tracing")]
impl Drop for Options {
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(options) = self.0.take() {
            drop_options(options);
        }
    }
}

#[cfg(feature = "tracing")]
#[cold]
#[inline(never)]
fn drop_options(options: Box<WithOptions>) {
    drop(options);
}

/// The kinds of failure that `retries` retries (a bit set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryOn(u8);

impl RetryOn {
    /// The body panicked.
    pub const PANIC: RetryOn = RetryOn(1);
    /// The attempt ran out of time.
    pub const TIMEOUT: RetryOn = RetryOn(2);
    /// The worker process crashed.
    pub const CRASH: RetryOn = RetryOn(4);
    /// The task returned `Err`.
    pub const ERROR: RetryOn = RetryOn(8);
    /// The default: every failure of the task itself (not cancellation, not a
    /// (de)serialization or protocol failure, which would fail the same way again).
    pub const DEFAULT: RetryOn = RetryOn(1 | 2 | 4 | 8);
    /// Nothing (the start of a `retry_on = [...]` list).
    pub const NONE: RetryOn = RetryOn(0);

    /// Both sets.
    pub const fn with(self, other: RetryOn) -> RetryOn {
        RetryOn(self.0 | other.0)
    }

    fn contains(self, other: RetryOn) -> bool {
        self.0 & other.0 == other.0
    }

    fn matches(self, error: &TaskError) -> bool {
        match error.kind() {
            TaskErrorKind::Panicked { .. } => self.contains(RetryOn::PANIC),
            TaskErrorKind::TimedOut { .. } => self.contains(RetryOn::TIMEOUT),
            TaskErrorKind::Crashed { .. } => self.contains(RetryOn::CRASH),
            TaskErrorKind::Failed { .. } => self.contains(RetryOn::ERROR),
            _ => false,
        }
    }
}

/// The semaphore behind `limit = N`: one per task function, shared by all its calls.
/// Waiters are served in the order they arrived (tokio's semaphore is fair).
#[derive(Debug)]
pub struct Limit(Semaphore);

impl Limit {
    /// A limit of `permits` attempts running at once.
    pub const fn new(permits: usize) -> Limit {
        Limit(Semaphore::const_new(permits))
    }
}

/// A running attempt's share of its task's limit. Blocking and cpu attempts carry
/// it into their job, so work that outlives a timeout still counts against the limit.
pub(crate) type Permit = SemaphorePermit<'static>;

/// A sleep on the embedded runtime's timer, usable from any thread and inside any
/// runtime (even one built without timers).
pub(crate) fn sleep(duration: Duration) -> tokio::time::Sleep {
    let _context = runtime().enter();
    tokio::time::sleep(duration)
}

/// `future`'s output, or `None` if `after` passes first (the caller then drops the
/// future, which cancels it).
async fn with_deadline<F: Future + Unpin>(after: Duration, future: &mut F) -> Option<F::Output> {
    let mut deadline = pin!(sleep(after));
    poll_fn(|cx| {
        if let Poll::Ready(output) = Pin::new(&mut *future).poll(cx) {
            return Poll::Ready(Some(output));
        }
        deadline.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// The attempts a supervised task made and how the last one ended.
type Supervision<T> = Pin<Box<dyn Future<Output = (Result<T, TaskError>, Vec<TaskError>)> + Send>>;

/// How a task's attempts are judged: `is_err` says whether a value is the task's
/// own failure (`Err` of a `Result`-returning task), `into_error` turns such a value
/// into a [`TaskError`].
pub(crate) struct Judge<T> {
    pub(crate) is_err: fn(&T) -> bool,
    pub(crate) into_error: fn(&'static str, T) -> TaskError,
}

/// One attempt of a supervised task, boxed: the supervision is compiled once per
/// output type, not once per task (a crate with a hundred tasks would otherwise
/// compile it a hundred times).
type AttemptFuture<T> = Pin<Box<dyn Future<Output = Result<T, TaskError>> + Send>>;

/// What starts a supervised task's next attempt (see [`supervise`]).
type NextAttempt<T> = Box<dyn FnMut(&mut Option<Permit>) -> Option<AttemptFuture<T>> + Send>;

/// Runs the attempts of a task with options. `next` starts the next attempt (it
/// may take the permit into the attempt), or returns `None` when the task cannot be
/// attempted again.
fn supervise<T>(
    name: &'static str,
    call: u64,
    policy: Policy,
    judge: Judge<T>,
    mut next: NextAttempt<T>,
) -> Supervision<T>
where
    T: Send + 'static,
{
    Box::pin(async move {
        let mut failures: Vec<TaskError> = Vec::new();
        let mut attempt: u32 = 0;
        loop {
            let mut permit = match policy.limit {
                None => None,
                Some(limit) => {
                    let waiting = observe::wait_starts(call);
                    let acquired = limit.0.acquire().await;
                    observe::waited(call, false, waiting);
                    match acquired {
                        Ok(permit) => Some(permit),
                        Err(_) => return (Err(TaskError::cancelled(name)), failures),
                    }
                }
            };
            let Some(mut running) = next(&mut permit) else {
                let last = failures.pop().unwrap_or_else(|| TaskError::cancelled(name));
                return (Err(last.with_attempts(failures)), Vec::new());
            };
            let outcome = match policy.timeout {
                None => running.await,
                Some(after) => match with_deadline(after, &mut running).await {
                    Some(outcome) => outcome,
                    None => {
                        observe::dropped_because("timed out", running);
                        observe::mark(call, attempt + 1, "timed out");
                        Err(TaskError::timed_out(name, after))
                    }
                },
            };
            drop(permit);
            if matches!(&outcome, Ok(value) if (judge.is_err)(value)) {
                // The attempt saw its body return; the value is the task's failure.
                observe::mark(call, attempt + 1, "returned Err");
            }
            let retry = attempt < policy.retries
                && match &outcome {
                    Ok(value) => (judge.is_err)(value) && policy.retry_on.contains(RetryOn::ERROR),
                    Err(error) => policy.retry_on.matches(error),
                };
            if !retry {
                return match outcome {
                    Ok(value) => (Ok(value), failures),
                    Err(error) => (Err(error.with_attempts(failures)), Vec::new()),
                };
            }
            failures.push(match outcome {
                Ok(value) => (judge.into_error)(name, value),
                Err(error) => error,
            });
            let pause = policy
                .backoff
                .saturating_mul(2u32.saturating_pow(attempt.min(31)));
            if !pause.is_zero() {
                let waiting = observe::wait_starts(call);
                sleep(pause).await;
                observe::waited(call, true, waiting);
            }
            attempt += 1;
        }
    })
}

pin_project_lite::pin_project! {
    /// A task's body (an async task's future, a closure otherwise) and, for a task
    /// with `retries`, the maker of a fresh one for each retry.
    pub(crate) struct Bodies<F> {
        // Pinned only where a group polls an async task in place (see
        // `Task::poll_in_place`); moved out by value everywhere else.
        #[pin]
        first: F,
        again: Option<Box<dyn FnMut() -> F + Send>>,
    }
}

impl<F> Bodies<F> {
    /// One body: the task cannot be retried.
    #[inline]
    pub(crate) fn once(first: F) -> Self {
        Bodies { first, again: None }
    }

    /// A body per attempt, each from `make`.
    pub(crate) fn repeating(mut make: impl FnMut() -> F + Send + 'static) -> Self {
        Bodies {
            first: make(),
            again: Some(Box::new(make)),
        }
    }

    /// The first attempt's body (for `run_inline`).
    pub(crate) fn into_first(self) -> F {
        self.first
    }

    /// The first attempt's body, pinned where the task is.
    #[inline]
    pub(crate) fn first_pinned(self: Pin<&mut Self>) -> Pin<&mut F> {
        self.project().first
    }
}

/// Starts a task with options: the supervision of its attempts. `attempt` starts one
/// attempt from a body (and its number, from 1); it takes the permit of the task's limit along if the attempt
/// may outlive its future (a thread runs on), else the permit is held until the
/// attempt's future ends. (A task without options starts its single attempt
/// directly, as [`Policied::Plain`], and never reaches this.)
pub(crate) fn start_supervised<F, P, T>(
    name: &'static str,
    call: u64,
    options: Options,
    bodies: Bodies<F>,
    judge: Judge<T>,
    attempt: impl Fn(F, &mut Option<Permit>, u32) -> P + Send + 'static,
) -> Policied<P, T>
where
    F: Send + 'static,
    P: Future<Output = Result<T, TaskError>> + Send + 'static,
    T: Send + 'static,
{
    let policy = options.into_policy();
    let Bodies { first, mut again } = bodies;
    let mut first = Some(first);
    let mut number = 0;
    Policied::supervised(
        name,
        supervise(
            name,
            call,
            policy,
            judge,
            Box::new(move |permit| {
                let body = first.take().or_else(|| again.as_mut().map(|make| make()))?;
                number += 1;
                Some(Box::pin(attempt(body, permit, number)) as AttemptFuture<T>)
            }),
        ),
    )
}

pin_project_lite::pin_project! {
    /// A started task: its single attempt, or the supervision of its attempts.
    #[project = PoliciedProj]
    pub enum Policied<P, T> {
        Plain { #[pin] attempt: P },
        // Boxed as a whole, so that a task without options (`Plain`) pays nothing for
        // this variant: a collection keeps one of these per task.
        Supervised { supervised: Box<Supervised<T>> },
    }
}

/// The supervision of a task with options, and its earlier attempts once it ends.
pub struct Supervised<T> {
    supervision: Supervision<T>,
    attempts: Vec<TaskError>,
    name: &'static str,
}

impl<T> std::fmt::Debug for Supervised<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervised")
            .field("name", &self.name)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl<P, T> Policied<P, T> {
    fn supervised(name: &'static str, supervision: Supervision<T>) -> Self {
        Policied::Supervised {
            supervised: Box::new(Supervised {
                supervision,
                attempts: Vec::new(),
                name,
            }),
        }
    }
}

impl<P, T> Future for Policied<P, T>
where
    P: Future<Output = Result<T, TaskError>>,
{
    type Output = Result<T, TaskError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            PoliciedProj::Plain { attempt } => attempt.poll(cx),
            PoliciedProj::Supervised { supervised } => {
                let Supervised {
                    supervision,
                    attempts,
                    ..
                } = &mut **supervised;
                supervision.as_mut().poll(cx).map(|(outcome, earlier)| {
                    *attempts = earlier;
                    outcome
                })
            }
        }
    }
}

/// The failures of a finished task's earlier attempts (see [`TaskError::attempts`]),
/// needed when its last attempt returned `Err` as a value.
pub trait Attempted {
    /// Takes the earlier attempts' failures (empty for a single attempt).
    fn take_attempts(self: Pin<&mut Self>) -> Vec<TaskError>;

    /// The task's name.
    fn task_name(&self) -> &'static str;
}

impl<P: Named, T> Attempted for Policied<P, T> {
    #[inline]
    fn take_attempts(self: Pin<&mut Self>) -> Vec<TaskError> {
        match self.project() {
            PoliciedProj::Plain { .. } => Vec::new(),
            PoliciedProj::Supervised { supervised } => std::mem::take(&mut supervised.attempts),
        }
    }

    #[inline]
    fn task_name(&self) -> &'static str {
        match self {
            Policied::Plain { attempt } => attempt.task_name(),
            Policied::Supervised { supervised } => supervised.name,
        }
    }
}

/// A started attempt that knows its task's name.
pub trait Named {
    /// The task's name.
    fn task_name(&self) -> &'static str;
}
