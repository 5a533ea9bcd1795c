//! Memory shared by the parent and one worker: a `memfd` that both map.
//!
//! Two things live there: the count of a worker's cancellations
//! (`shared_counter.rs`), and the ring its answers come back through
//! (`answer_ring.rs`).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

/// A shared mapping of `len` bytes, page-aligned, unmapped when dropped.
#[derive(Debug)]
pub(crate) struct SharedMemory {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the value owns its mapping; what is in it is only accessed through the
// types built on it (atomics, and byte copies whose ranges a protocol assigns to one
// side at a time), which are made to be shared between threads.
unsafe impl Send for SharedMemory {}
// SAFETY: as above: `&SharedMemory` only gives out the mapping's address.
unsafe impl Sync for SharedMemory {}

impl SharedMemory {
    /// Creates `len` zeroed bytes named `name` (for `/proc/<pid>/maps`); returns them and
    /// the descriptor that maps the same memory in another process (see
    /// [`SharedMemory::map`]).
    pub(crate) fn create(name: &std::ffi::CStr, len: usize) -> io::Result<(Self, OwnedFd)> {
        // SAFETY: memfd_create reads the NUL-terminated name and touches no other memory.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if fd == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and nothing else owns it.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        file.set_len(len as u64)?; // a new memfd's bytes are zero
        let memory = SharedMemory::map(file.as_fd(), len)?;
        Ok((memory, file.into()))
    }

    /// Maps the `len` bytes that `fd` (from [`SharedMemory::create`]) holds.
    pub(crate) fn map(fd: BorrowedFd<'_>, len: usize) -> io::Result<Self> {
        // A mapping past the end of the file would fault when touched.
        if File::from(fd.try_clone_to_owned()?).metadata()?.len() < len as u64 {
            return Err(io::Error::other("the shared memory's file is too short"));
        }
        // SAFETY: a new shared mapping at an address the kernel picks; it touches no
        // existing memory. The result is checked before use.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(address.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null address"))?;
        Ok(SharedMemory { base, len })
    }

    /// The first byte of the mapping (page-aligned), valid for `len` bytes as long as
    /// `self` lives.
    pub(crate) fn base(&self) -> NonNull<u8> {
        self.base
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        // SAFETY: the mapping of `len` bytes at `base` was made by `map` and is unmapped
        // once, here; no reference into it outlives `self` (the types built on it
        // borrow it).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}
