//! The parent's side of the process pool: the queue of tasks, the driver threads that
//! stream them to the workers, and the handles of the worker processes.

mod cancel_line;
mod driver;
mod handle;
mod pool;
mod queue;
mod slots;
mod spawn;

pub(crate) use crate::process::protocol::Ran;
#[cfg(feature = "nats")]
pub(crate) use handle::{status_outcome, too_large};
pub(crate) use pool::{configure, max_frame_bytes, run_here, submit, worker_pids};
#[cfg(feature = "nats")]
pub(crate) use queue::Wakes;
pub(crate) use queue::{Answer, Control, Job, Sink};
