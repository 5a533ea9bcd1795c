//! Where tasks run: one module per kind of task, each implementing the [`Placement`]
//! seam for [`TaskValue`], the one type of task values.
//!
//! - `async_io`: `#[io_task] async fn`, polled on tokio;
//! - `blocking_io`: `#[io_task] fn`, on tokio's blocking pool;
//! - `cpu`: `#[cpu_task] fn`, on rayon (collections of them as one batch, `cpu_batch`);
//! - `process`: `#[cpu_task(process)] fn`, in a worker process (see `crate::process`;
//!   collections of them as one batch, `process_batch`);
//! - `invalid`: what a function whose attribute was rejected returns.

mod async_io;
mod blocking_io;
mod cpu;
mod cpu_batch;
mod invalid;
mod joined;
mod output;
#[cfg(all(feature = "process", target_os = "linux"))]
mod process;
#[cfg(all(feature = "process", target_os = "linux"))]
mod process_batch;
mod seam;
mod start;

pub use async_io::AsyncIo;
pub use blocking_io::BlockingIo;
pub use cpu::Cpu;
pub use invalid::Invalid;
pub use output::{Fallible, OutputKind, TaskErrorType, Value};
#[cfg(all(feature = "process", target_os = "linux"))]
pub use process::Process;
pub use seam::{TaskValue, Tasks};
// Sealed: public so that public items can name them, unreachable from outside the
// crate (see `seam.rs`).
#[allow(unreachable_pub)]
pub use seam::{Placement, Start};
#[allow(unreachable_pub)]
pub use start::Starter;

#[cfg(test)]
pub(crate) mod testing;
