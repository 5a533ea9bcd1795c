//! The compile-time registry of process tasks.
//!
//! `#[cpu_task(process)]` adds one [`ProcessEntry`] to [`PROCESS_TASKS`], a linkme
//! distributed slice: the linker gathers the entries into one array, so the registry
//! is complete before any code runs (a constructor-based registry could still be
//! empty when the worker's start-up hook runs). A worker runs only tasks found here,
//! by their stable id `module::path::function@line:column`.

use super::wire;

/// Why a worker could not run a task's body.
#[derive(Debug)]
pub enum EntryError {
    /// The arguments did not decode.
    Arguments(wire::Error),
    /// The result did not encode.
    Result(wire::Error),
}

/// A process task's entry in the worker: decodes the arguments, runs the body, and
/// appends the encoded result to the buffer, which may hold at most the given number
/// of bytes in all.
pub type Run = fn(&[u8], &mut Vec<u8>, usize) -> Result<(), EntryError>;

/// One registered process task.
#[derive(Debug)]
pub struct ProcessEntry {
    /// `module_path!()::function@line:column`.
    pub id: &'static str,
    /// Runs the task (see [`Run`]).
    pub run: Run,
}

/// Every process task of the program, gathered by the linker.
#[linkme::distributed_slice]
pub static PROCESS_TASKS: [ProcessEntry];

pub(crate) fn find(id: &str) -> Option<&'static ProcessEntry> {
    PROCESS_TASKS.iter().find(|entry| entry.id == id)
}
