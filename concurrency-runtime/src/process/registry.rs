//! The compile-time registry of process tasks.
//!
//! `#[cpu_task(process)]` adds one [`ProcessEntry`] to [`PROCESS_TASKS`], a linkme
//! distributed slice: the linker gathers the entries into one array, so the registry
//! is complete before any code runs (a constructor-based registry could still be
//! empty when the worker's start-up hook runs). Each entry has a stable id,
//! `module::path::function@line:column`; a request names its task by its number in
//! the array, which is the same in the parent and its workers (copies of the same
//! executable), and a worker checks that at start-up: it refuses to serve a parent
//! whose registry's fingerprint (its ids, in order) differs from its own.

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

/// The task numbered `index` (see [`index_of`]).
pub(crate) fn get(index: u32) -> Option<&'static ProcessEntry> {
    PROCESS_TASKS.get(usize::try_from(index).ok()?)
}

/// The number of `entry` in the registry: its index in the array.
pub(crate) fn index_of(entry: &'static ProcessEntry) -> Option<u32> {
    let offset = (entry as *const ProcessEntry as usize)
        .wrapping_sub(PROCESS_TASKS.as_ptr() as usize)
        / std::mem::size_of::<ProcessEntry>();
    PROCESS_TASKS
        .get(offset)
        .is_some_and(|found| std::ptr::eq(found, entry))
        .then(|| u32::try_from(offset).ok())
        .flatten()
}

/// A fingerprint of the registry: FNV-1a over every id, in order.
pub(crate) fn fingerprint() -> u64 {
    static FINGERPRINT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *FINGERPRINT.get_or_init(|| {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for entry in PROCESS_TASKS.iter() {
            for byte in entry.id.bytes().chain([0]) {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        hash
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[linkme::distributed_slice(PROCESS_TASKS)]
    static FIRST: ProcessEntry = ProcessEntry {
        id: "registry::tests::first@1:1",
        run: |_, _, _| Ok(()),
    };

    #[test]
    fn every_entry_is_found_by_its_number_and_strangers_are_not() {
        assert!(!PROCESS_TASKS.is_empty());
        for (index, entry) in PROCESS_TASKS.iter().enumerate() {
            let number = index_of(entry).expect("registered");
            assert_eq!(number as usize, index);
            assert!(std::ptr::eq(get(number).expect("found"), entry));
        }
        assert!(index_of(&FIRST).is_some());
        static STRANGER: ProcessEntry = ProcessEntry {
            id: "not registered",
            run: |_, _, _| Ok(()),
        };
        assert_eq!(index_of(&STRANGER), None);
        assert!(get(u32::MAX).is_none());
        assert_eq!(fingerprint(), fingerprint());
        assert_ne!(fingerprint(), 0xcbf2_9ce4_8422_2325, "the ids count");
    }
}
