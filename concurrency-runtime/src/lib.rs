//! Declare where each task of a concurrent workflow runs, on the function, and run
//! them together with one macro.
//!
//! ```
//! use concurrency_runtime::{cpu_task, io_task, run_concurrently};
//!
//! #[io_task]
//! async fn fetch(delay_ms: u64) -> String {
//!     tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
//!     format!("data after {delay_ms} ms")
//! }
//!
//! #[io_task]
//! fn download(url: String) -> usize {
//!     url.len() // blocking I/O would go here: it runs on a blocking thread
//! }
//!
//! #[cpu_task]
//! fn crunch(n: u64) -> u64 {
//!     (0..n).map(|i| i * i).sum()
//! }
//!
//! let (data, size, sum) = run_concurrently!(fetch(10), download("http://x/1".into()), crunch(4));
//! assert_eq!((data.as_str(), size, sum), ("data after 10 ms", 10, 14));
//! ```
//!
//! | annotation | runs on |
//! |---|---|
//! | `#[io_task] async fn` | a tokio async task ([`AsyncIoTask`]) |
//! | `#[io_task] fn` | a thread of tokio's blocking pool ([`BlockingIoTask`]) |
//! | `#[cpu_task] fn` | rayon's work-stealing pool ([`CpuTask`]) |
//!
//! No runtime needs to be set up: a tokio runtime is built lazily, once, on first
//! use, and rayon's global pool serves CPU tasks. Under your own tokio runtime,
//! use the async form, `run_concurrently!(async; ...).await`.

#![warn(missing_docs, missing_debug_implementations)]

// The layers, each importing only from the ones above it in this list (see
// ARCHITECTURE.md): leaf types, synchronisation, runtime plumbing, the process pool,
// policy, placements, groups, the public task API, the macros' support.
mod cancel;
mod error;
mod group;
mod kind;
#[cfg(feature = "tracing")]
pub mod observe;
#[cfg(not(feature = "tracing"))]
mod observe;
mod placement;
mod policy;
#[cfg(all(feature = "process", target_os = "linux"))]
pub mod process;
pub mod progress;
mod runtime;
mod sync;
mod task;

/// The README's examples, compiled and run as doctests so that they stay true (they
/// use process tasks).
#[doc = include_str!("../../README.md")]
#[cfg(all(doctest, feature = "process", target_os = "linux"))]
pub struct ReadmeDoctests;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use cancel::is_cancelled;
pub use error::{BoxError, SerializationStage, TaskError, TaskErrorKind};
pub use kind::TaskKind;
pub use placement::TaskValue;
#[cfg(all(feature = "process", target_os = "linux"))]
pub use task::ProcessTask;
pub use task::{AsyncIoTask, BlockingIoTask, CpuTask, Task, TaskFuture};

/// Marks a function as an I/O task.
///
/// - On an `async fn`: each call is an async task on tokio ([`AsyncIoTask`]).
/// - On a plain `fn` (blocking I/O: files, blocking sockets, sleeping, FFI that
///   waits): each call runs on a thread of tokio's blocking pool ([`BlockingIoTask`]),
///   never on an async worker and never on rayon's pool.
///
/// Calling the function returns a task value and runs nothing yet; `.await` it,
/// `.run()` it, or pass it to [`run_concurrently!`]. `.run_inline()` runs just the
/// body, for unit tests.
///
/// # Options
///
/// | option | effect |
/// |---|---|
/// | `name = "..."` | the task's name in errors (default: the function's name) |
/// | `timeout = "2s"` | each attempt must finish in time, else [`TaskErrorKind::TimedOut`] (units `ns us ms s m h`; `"1.5s"` works) |
/// | `retries = 3` | after a failure, run again up to 3 more times (arguments must be `Clone`) |
/// | `backoff = "100ms"` | wait before each retry, doubling: 100 ms, 200 ms, 400 ms... (needs `retries`) |
/// | `retry_on = [panic, timeout, crash, error]` | which failures are retried (needs `retries`; default: all four) |
/// | `limit = 4` | at most 4 calls of this function run at once in the program; the others wait in a fair queue |
///
/// What a timeout stops depends on where the task runs: an async task's future is
/// dropped at the deadline and a process task's worker killed; a blocking or cpu
/// task's thread cannot be stopped from outside, so the caller gets the error at the
/// deadline while the body runs on, with [`is_cancelled`] returning `true` so that
/// it can return early. `task.with_timeout(duration)` overrides the timeout for one
/// call. A function whose return type is written `Result<T, E>` (also `io::Result<T>`
/// or `anyhow::Result<T>`) fails with its `Err`: see [`TaskErrorKind::Failed`].
///
/// ```
/// use concurrency_runtime::io_task;
///
/// #[io_task(timeout = "2s", retries = 2, backoff = "10ms", limit = 8)]
/// async fn fetch(attempts: std::sync::Arc<std::sync::atomic::AtomicU32>) -> Result<u32, String> {
///     let attempt = attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
///     if attempt < 3 { Err(format!("attempt {attempt} failed")) } else { Ok(attempt) }
/// }
///
/// let attempts = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
/// assert_eq!(fetch(attempts).try_run().unwrap(), 3); // failed twice, then succeeded
/// ```
///
/// # Requirements
///
/// Arguments are moved to the task, so they must be owned (`'static`) and `Send`, and
/// so must the result. Generic functions work (add `Send + 'static` bounds); methods
/// with a `self` receiver are rejected at compile time.
///
/// ```
/// use concurrency_runtime::io_task;
///
/// /// Doc comments, attributes and visibility are kept.
/// #[io_task(name = "fetch-user")]
/// pub async fn fetch_user(id: u32) -> String {
///     format!("user {id}")
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert_eq!(fetch_user(7).await, "user 7");
/// assert_eq!(fetch_user(7).name(), "fetch-user");
/// # }
/// ```
#[doc(inline)]
pub use concurrency_macros::io_task;

/// Marks a function as a CPU-bound task: each call runs on rayon's work-stealing
/// pool ([`CpuTask`]), never on a tokio worker.
///
/// Calling the function returns a task value and runs nothing yet; `.await` it,
/// `.run()` it, or pass it to [`run_concurrently!`]. `.run_inline()` runs just the
/// body on the current thread, for unit tests.
///
/// # Options
///
/// - `process`: run each call in a worker process of the process pool
///   (`ProcessTask`) instead of on rayon; arguments and result must be serde
///   types. See the `process` module (Cargo feature `process`, on by default).
/// - `name`, `timeout`, `retries`, `backoff`, `retry_on`, `limit`: as for
///   [`io_task`](macro@io_task#options). `retry_on = [crash]` applies to process tasks only.
///
/// ```
/// use concurrency_runtime::{cpu_task, is_cancelled};
///
/// #[cpu_task(timeout = "50ms")]
/// fn search() -> u64 {
///     let mut n = 0;
///     while !is_cancelled() {
///         n += 1; // checks its flag, so it stops soon after the deadline
///     }
///     n
/// }
/// assert!(search().try_run().unwrap_err().is_timeout());
/// ```
///
#[cfg_attr(
    all(feature = "process", target_os = "linux"),
    doc = r#"A process task's worker is killed at the deadline:

```
use concurrency_runtime::{TaskErrorKind, cpu_task};

#[cpu_task(process, timeout = "100ms", retries = 1, retry_on = [crash])]
fn hangs() -> u32 {
    std::thread::sleep(std::time::Duration::from_secs(3600));
    0
}

let error = hangs().try_run().unwrap_err();
assert!(matches!(error.kind(), TaskErrorKind::TimedOut { .. }));
```
"#
)]
///
/// `#[cpu_task]` on an `async fn` is a compile error: use [`io_task`] for async work.
///
/// ```
/// use concurrency_runtime::cpu_task;
///
/// #[cpu_task]
/// fn count_primes(limit: u32) -> usize {
///     (2..limit).filter(|n| (2..*n).take_while(|d| d * d <= *n).all(|d| n % d != 0)).count()
/// }
///
/// assert_eq!(count_primes(100).run(), 25);
/// assert_eq!(count_primes(100).run_inline(), 25);
/// ```
#[doc(inline)]
pub use concurrency_macros::cpu_task;

/// Starts every task at once, waits for all of them, and returns their results.
///
/// # Forms
///
/// | form | returns |
/// |---|---|
/// | `run_concurrently!(a(1), b(2), ...)` | blocks the calling thread; a tuple in argument order |
/// | `run_concurrently!(a(1))` | the single task's value |
/// | `run_concurrently!(async; a(1), b(2), ...)` | a future of that tuple, for async code |
/// | `run_concurrently!(for iter)` | a `Vec` of every task's value, in input order |
/// | `run_concurrently!(async; for iter)` | a future of that `Vec` |
/// | `run_concurrently!(dag { let a = f(x); let b = g(a); .. (a, b) })` | the final expression: tasks that use each other's results (see below) |
/// | `run_concurrently!(describe; dag { .. })` | the dag's graph as Graphviz DOT text; nothing runs |
/// | `run_concurrently!(progress(bar); for iter)` | as `for`; each task is reported to `bar` as it ends (see [`progress`]) |
///
/// Each argument must be a call to an `#[io_task]` or `#[cpu_task]` function (or a
/// method call returning such a task); the calls are evaluated in order, at the
/// macro's site, then all tasks start. The iterator of the collection form yields
/// tasks of one function, e.g. `urls.into_iter().map(download)`.
///
/// The synchronous form needs no runtime. Inside async code, use the `async;` form
/// and `.await` it: the synchronous form would block the executor thread (on a
/// multi-threaded tokio runtime it uses `block_in_place`, so it still works, but
/// the async form is the right tool).
///
/// # Failures: three modes
///
/// A modifier before the `;` chooses how failures come back (combine with `async`
/// as `async, try;`):
///
/// | mode | returns | on the first failure |
/// |---|---|---|
/// | default | the values the functions return | the other tasks are cancelled, then the caller panics with the [`TaskError`]'s message, e.g. ``task `crunch` panicked: attempt to divide by zero`` |
/// | `try;` | `Result<(A, B, ..), TaskError>` (`Result<Vec<A>, TaskError>` for `for`) | the other tasks are cancelled and the error returned |
/// | `all;` | `(Result<A, TaskError>, Result<B, TaskError>, ..)` (`Vec<Result<..>>` for `for`) | nothing is cancelled: every task runs to its end |
///
/// A failure is a panic, a timeout, a crashed worker process, a (de)serialization
/// error; in the `try` and `all` modes also the `Err` of a function declared to
/// return `Result<T, E>`, whose success value is then `T`. In the default mode such
/// an `Err` is an ordinary value. Cancelling drops async tasks, kills the worker
/// process of a running process task (the pool replaces it), keeps queued tasks
/// from starting, and raises [`is_cancelled`] for running blocking and cpu tasks
/// (threads cannot be stopped from outside). Dropping the future of the `async;`
/// form cancels its tasks the same way.
///
/// ```
/// use concurrency_runtime::{cpu_task, io_task, run_concurrently};
///
/// #[io_task]
/// fn parse(text: String) -> Result<u32, std::num::ParseIntError> {
///     text.parse()
/// }
///
/// #[cpu_task]
/// fn double(n: u32) -> u32 {
///     n * 2
/// }
///
/// let (number, doubled) = run_concurrently!(try; parse("21".into()), double(4)).unwrap();
/// assert_eq!((number, doubled), (21, 8));
///
/// let error = run_concurrently!(try; parse("x".into()), double(4)).unwrap_err();
/// assert_eq!(error.task(), "parse");
///
/// let (number, doubled) = run_concurrently!(all; parse("x".into()), double(4));
/// assert!(number.is_err());
/// assert_eq!(doubled.unwrap(), 8);
/// ```
///
/// ```
/// use concurrency_runtime::{cpu_task, io_task, run_concurrently};
///
/// #[io_task]
/// fn download(url: String) -> usize {
///     url.len()
/// }
///
/// #[cpu_task]
/// fn crunch(n: u64) -> u64 {
///     n * 2
/// }
///
/// // Synchronous code: no runtime to set up.
/// let (size, doubled) = run_concurrently!(download("abcd".into()), crunch(21));
/// assert_eq!((size, doubled), (4, 42));
///
/// let urls = vec!["a".to_string(), "bb".to_string(), "ccc".to_string()];
/// let sizes = run_concurrently!(for urls.into_iter().map(download));
/// assert_eq!(sizes, [1, 2, 3]);
///
/// // Async code, e.g. under `#[tokio::main]`:
/// # let runtime = tokio::runtime::Runtime::new().unwrap();
/// # runtime.block_on(async {
/// let (size, doubled) = run_concurrently!(async; download("abcd".into()), crunch(21)).await;
/// assert_eq!((size, doubled), (4, 42));
/// let sizes = run_concurrently!(async; for (1..4).map(|n| crunch(n))).await;
/// assert_eq!(sizes, [2, 4, 6]);
/// # });
/// ```
///
/// # Dependency graphs: `dag { ... }`
///
/// Each `let NAME = CALL;` is a node: a call of a task function whose arguments may
/// name the bindings above it (its inputs) and any outer variable. A node starts the
/// moment its inputs are ready, on the executor its function names, and never waits
/// for a node it does not use; the final expression (a binding or a tuple of them,
/// `()` if there is none) is the form's value. A binding used by several nodes is
/// cloned for all but the last of them (so it must be `Clone`: share large values as
/// an `Arc`). `let xs = for ITERATOR;` is a collection node (a `Vec`, in order), and
/// `let ys = for xs.into_iter().map(f);` over a collection that nothing else uses is
/// a pipelined stage: its task `i` starts as soon as item `i` of `xs` is ready.
/// Every node runs, used or not. The modes work as above; in `all;`, a node whose
/// input failed does not run and reports
/// [`TaskErrorKind::Upstream`] naming the node that
/// failed, and the final expression gets each binding's `Result`.
///
/// ```
/// use concurrency_runtime::{cpu_task, io_task, run_concurrently};
///
/// #[io_task]
/// async fn fetch(page: u32) -> String {
///     format!("page {page} says hello world")
/// }
///
/// #[cpu_task]
/// fn count_words(text: String) -> usize {
///     text.split_whitespace().count()
/// }
///
/// #[io_task]
/// fn store(text: String) -> usize {
///     text.len()
/// }
///
/// #[cpu_task]
/// fn summarize(words: usize, stored: usize) -> String {
///     format!("{words} words, {stored} bytes")
/// }
///
/// let (summary, words) = run_concurrently!(dag {
///     let text = fetch(7);                   // async, first
///     let words = count_words(text);         // rayon, once `text` is ready
///     let stored = store(text);              // a blocking thread, at the same time
///     let summary = summarize(words, stored);
///     (summary, words)
/// });
/// assert_eq!((summary.as_str(), words), ("5 words, 23 bytes", 5));
///
/// let dot: String = run_concurrently!(describe; dag {
///     let text = fetch(7);
///     let words = count_words(text);
///     words
/// });
/// assert!(dot.contains("n0 -> n1;"));
/// ```
#[doc(inline)]
pub use concurrency_macros::run_concurrently;
