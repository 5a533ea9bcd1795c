//! A counter in memory shared by the parent and one worker.
//!
//! The parent counts the cancellations it has written to a worker's cancel line; the
//! worker compares the count with the ones it has applied before it starts a request,
//! and reads the line only when they differ. That keeps a system call off the path of
//! every request while no cancellation is pending.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use super::shared_memory::SharedMemory;

const LEN: usize = std::mem::size_of::<AtomicU64>();

/// One `u64` in a shared mapping, used only atomically, by both processes.
#[derive(Debug)]
pub(crate) struct SharedCounter {
    memory: SharedMemory,
}

impl SharedCounter {
    /// Creates a zeroed counter; returns it and the descriptor that maps the same memory
    /// in another process (see [`SharedCounter::map`]).
    pub(crate) fn create() -> io::Result<(SharedCounter, OwnedFd)> {
        let (memory, fd) = SharedMemory::create(c"concurrency-cancels", LEN)?;
        Ok((SharedCounter { memory }, fd))
    }

    /// Maps the counter that `fd` (from [`SharedCounter::create`]) holds.
    pub(crate) fn map(fd: BorrowedFd<'_>) -> io::Result<SharedCounter> {
        Ok(SharedCounter {
            memory: SharedMemory::map(fd, LEN)?,
        })
    }

    fn word(&self) -> &AtomicU64 {
        // SAFETY: the mapping starts at a page-aligned address (aligned for
        // `AtomicU64`), holds at least LEN bytes, and lives as long as `self`; both
        // processes access the word only atomically.
        unsafe { self.memory.base().cast::<AtomicU64>().as_ref() }
    }

    /// Adds one; what was written before is visible to a process that sees the new value.
    pub(crate) fn increment(&self) {
        self.word().fetch_add(1, Ordering::Release);
    }

    pub(crate) fn get(&self) -> u64 {
        self.word().load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn two_mappings_of_a_counter_see_each_others_increments() {
        let (counter, fd) = SharedCounter::create().expect("create");
        let other = SharedCounter::map(fd.as_fd()).expect("map");
        assert_eq!(other.get(), 0);
        counter.increment();
        counter.increment();
        assert_eq!(other.get(), 2);
        other.increment();
        assert_eq!(counter.get(), 3);
    }
}
