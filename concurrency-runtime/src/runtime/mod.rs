//! The executors tasks run on, and what a thread knows about them.
//!
//! - Async I/O tasks and blocking I/O tasks use a tokio runtime that this crate
//!   builds lazily, once, on first use (multi-threaded, one worker per core, I/O and
//!   time drivers enabled). Blocking tasks go to its blocking pool, which grows past
//!   the core count (up to tokio's default of 512 threads).
//! - CPU tasks use rayon's pool (the global one, or the one a caller `install`ed).
//!
//! This module also answers, in one place, the questions every placement asks of the
//! calling thread: is it inside a tokio context, which flavour, and did a synchronous
//! wait of this crate enter the embedded runtime itself (`wait.rs`).

mod help;
mod wait;

pub(crate) use help::{Helpable, offer_help};
pub(crate) use wait::blocking_section;
pub use wait::{Kinds, block_on_group};

use std::cell::Cell;
use std::sync::OnceLock;

use tokio::runtime::{Handle, Runtime, RuntimeFlavor};

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The embedded tokio runtime's handle, building the runtime on first use.
pub(crate) fn runtime() -> &'static Handle {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("concurrency-io")
                .build()
                .unwrap_or_else(|error| {
                    panic!("concurrency-runtime: could not start the tokio runtime: {error}")
                })
        })
        .handle()
}

thread_local! {
    /// Set while this thread polls a group inside the embedded runtime's context that
    /// it entered itself: the thread is then no worker of that runtime, whatever
    /// `Handle::try_current` says, and must not call `block_in_place`.
    static ENTERED_EMBEDDED: Cell<bool> = const { Cell::new(false) };
    /// Set while a synchronous caller that must not poll async tasks waits for a
    /// group: its async tasks are spawned on the embedded runtime.
    static SPAWN_ASYNC: Cell<bool> = const { Cell::new(false) };
}

/// The tokio context of the calling thread, as a synchronous wait sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    /// No tokio context.
    None,
    /// Inside the embedded runtime's context, entered by a wait of this crate on a
    /// thread that belongs to no runtime.
    Entered,
    /// Inside a tokio runtime's context (a worker of it, or a thread that entered it),
    /// and whether that runtime is multi-threaded.
    Tokio { multi_thread: bool },
}

impl Context {
    /// The calling thread's context (looked up once per wait: `Handle::try_current`
    /// clones the runtime's handle).
    pub(crate) fn current() -> Context {
        if ENTERED_EMBEDDED.get() {
            return Context::Entered;
        }
        match Handle::try_current() {
            Ok(handle) => Context::Tokio {
                multi_thread: handle.runtime_flavor() == RuntimeFlavor::MultiThread,
            },
            Err(_) => Context::None,
        }
    }

    /// Whether tokio's timers and sockets work here without entering a runtime.
    pub(crate) fn has_tokio(self) -> bool {
        self != Context::None
    }
}

/// Whether this thread is inside a tokio runtime context. Inside a tokio task (the
/// common case) that is a thread-local read; otherwise `Handle::try_current` clones
/// the handle, so a group looks once for all its tasks (see `Starter`).
pub(crate) fn in_tokio_context() -> bool {
    ENTERED_EMBEDDED.get() || tokio::task::try_id().is_some() || Handle::try_current().is_ok()
}

/// Whether async tasks started now must be spawned on the embedded runtime.
pub(crate) fn spawn_async_on_embedded() -> bool {
    SPAWN_ASYNC.get()
}

/// Sets a thread-local flag until dropped, then restores its previous value.
struct Flag(&'static std::thread::LocalKey<Cell<bool>>, bool);

impl Flag {
    fn set(key: &'static std::thread::LocalKey<Cell<bool>>) -> Self {
        Flag(key, key.replace(true))
    }
}

impl Drop for Flag {
    fn drop(&mut self) {
        self.0.set(self.1);
    }
}
