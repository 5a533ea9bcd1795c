//! Process tasks on other hosts, through a NATS server (Cargo feature `nats`).
//!
//! The same `#[cpu_task(process)]` functions, in the same binary, run on worker
//! hosts: configure the caller with `process::configure(PoolConfig::default()
//! .nats(NatsConfig::new(url)))` and start the program on each worker host in worker
//! host mode, where it calls [`serve`]. A worker host takes requests from the task
//! subject in a queue group (each request goes to one host) and runs each in its own
//! local process pool, so that a crash on a worker host is reported to the caller as
//! `Crashed` with its signal, exactly as locally.
//!
//! Two delivery modes ([`Delivery`], chosen by the caller; every host serves both).
//! *At most once* (core request/reply, the default): each task runs at most once; a
//! host tells its caller which of its tasks it holds, every heartbeat interval; a
//! caller that hears nothing of a task for twice that long fails it as `Crashed` (its
//! host is gone), or with a `Worker` error if no host took it. *At least once* (a
//! JetStream work queue): a task whose host is lost runs again on another host, and
//! the caller keeps the first answer. Timeouts and cancellation reach the host, which
//! kills the local worker running that task. A host holds at most its capacity of
//! tasks; arguments and results larger than one message go in parts. A host built
//! from another binary refuses requests (task numbers could mean other code there),
//! with an error on both sides. See README's "Running on several machines".

mod caller;
mod config;
mod host;
mod message;

pub use config::{Delivery, NatsConfig};

pub(crate) use caller::{configure, is_configured, submit};

/// This program's build fingerprint, which a caller sends with every request and a
/// worker host compares with its own (a hash of the executable's bytes, or
/// `CONCURRENCY_REMOTE_BUILD` when set): log it on both sides to see why a host
/// refuses a caller.
///
/// ```
/// let build = concurrency_runtime::process::remote::build();
/// assert!(!build.is_empty());
/// ```
pub fn build() -> &'static str {
    host::build_id()
}

/// Serves process tasks on this host until the connection to the server ends: the
/// program's entry point on a worker host (see the module's documentation). It
/// returns why it could not connect or subscribe; a connection that ends later
/// returns `Ok`.
///
/// ```no_run
/// use concurrency_runtime::process::remote::{self, NatsConfig};
///
/// if std::env::args().any(|arg| arg == "--worker-host") {
///     let config = NatsConfig::new("nats://broker:4222").token("s3cret");
///     if let Err(error) = remote::serve(config) {
///         eprintln!("{error}");
///         std::process::exit(1);
///     }
///     return;
/// }
/// ```
pub fn serve(config: NatsConfig) -> Result<(), String> {
    host::serve(config)
}
