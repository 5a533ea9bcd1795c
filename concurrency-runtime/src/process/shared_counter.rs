//! A counter in memory shared by the parent and one worker: a `memfd` that both map.
//!
//! The parent counts the cancellations it has written to a worker's cancel line; the
//! worker compares the count with the ones it has applied before it starts a request,
//! and reads the line only when they differ. That keeps a system call off the path of
//! every request while no cancellation is pending.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

const LEN: usize = std::mem::size_of::<AtomicU64>();

/// One `u64` in a shared mapping, used only atomically, by both processes.
#[derive(Debug)]
pub(crate) struct SharedCounter {
    word: NonNull<AtomicU64>,
}

// SAFETY: the value owns its mapping, and the word in it is only ever accessed through
// `AtomicU64`, which is made to be shared between threads.
unsafe impl Send for SharedCounter {}
// SAFETY: as above: `&SharedCounter` only allows atomic operations on the word.
unsafe impl Sync for SharedCounter {}

impl SharedCounter {
    /// Creates a zeroed counter; returns it and the descriptor that maps the same memory
    /// in another process (see [`SharedCounter::map`]).
    pub(crate) fn create() -> io::Result<(SharedCounter, OwnedFd)> {
        // SAFETY: memfd_create reads the NUL-terminated name and touches no other memory.
        let fd = unsafe { libc::memfd_create(c"concurrency-cancels".as_ptr(), libc::MFD_CLOEXEC) };
        if fd == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and nothing else owns it.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        file.set_len(LEN as u64)?; // a new memfd's bytes are zero
        let counter = SharedCounter::map(file.as_fd())?;
        Ok((counter, file.into()))
    }

    /// Maps the counter that `fd` (from [`SharedCounter::create`]) holds.
    pub(crate) fn map(fd: BorrowedFd<'_>) -> io::Result<SharedCounter> {
        // A mapping past the end of the file would fault when touched.
        if File::from(fd.try_clone_to_owned()?).metadata()?.len() < LEN as u64 {
            return Err(io::Error::other("the shared counter's file is too short"));
        }
        // SAFETY: a new shared mapping at an address the kernel picks; it touches no
        // existing memory. The result is checked before use.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let word = NonNull::new(address.cast::<AtomicU64>())
            .ok_or_else(|| io::Error::other("mmap returned a null address"))?;
        Ok(SharedCounter { word })
    }

    fn word(&self) -> &AtomicU64 {
        // SAFETY: `word` points to the start of a live mapping (page-aligned, so aligned
        // for `AtomicU64`) of at least LEN bytes, unmapped only when `self` is dropped;
        // both processes access it only atomically.
        unsafe { self.word.as_ref() }
    }

    /// Adds one; what was written before is visible to a process that sees the new value.
    pub(crate) fn increment(&self) {
        self.word().fetch_add(1, Ordering::Release);
    }

    pub(crate) fn get(&self) -> u64 {
        self.word().load(Ordering::Acquire)
    }
}

impl Drop for SharedCounter {
    fn drop(&mut self) {
        // SAFETY: the mapping of LEN bytes at `word` was made by `map` and is unmapped
        // once, here; no reference to it outlives `self`.
        unsafe { libc::munmap(self.word.as_ptr().cast(), LEN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
