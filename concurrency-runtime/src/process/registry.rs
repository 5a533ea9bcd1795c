//! The compile-time registry of process tasks.
//!
//! `#[cpu_task(process)]` adds one [`ProcessEntry`] to [`PROCESS_TASKS`], a linkme
//! distributed slice: the linker gathers the entries into one array, so the registry
//! is complete before any code runs (a constructor-based registry could still be
//! empty when the worker's start-up hook runs). A worker runs only tasks found here,
//! by their stable id `module::path::function`.

/// Why a worker could not run a task's body.
#[doc(hidden)]
#[derive(Debug)]
pub enum EntryError {
    /// The arguments did not deserialize.
    ArgsDecode(String),
    /// The result did not serialize.
    ResultEncode(String),
}

/// One registered process task.
#[doc(hidden)]
#[derive(Debug)]
pub struct ProcessEntry {
    /// `module_path!()::function`.
    pub id: &'static str,
    /// Decodes the arguments, runs the body, encodes the result.
    pub run: fn(&[u8]) -> Result<Vec<u8>, EntryError>,
}

#[doc(hidden)]
#[linkme::distributed_slice]
pub static PROCESS_TASKS: [ProcessEntry];

pub(crate) fn find(id: &str) -> Option<&'static ProcessEntry> {
    PROCESS_TASKS.iter().find(|entry| entry.id == id)
}

/// Used by the generated `run` of each entry.
#[doc(hidden)]
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, EntryError> {
    postcard::from_bytes(bytes).map_err(|error| EntryError::ArgsDecode(error.to_string()))
}

/// Used by the generated `run` of each entry.
#[doc(hidden)]
pub fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, EntryError> {
    postcard::to_allocvec(value).map_err(|error| EntryError::ResultEncode(error.to_string()))
}
