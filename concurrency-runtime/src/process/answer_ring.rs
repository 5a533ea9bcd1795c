//! The ring a worker's answers come back through: bytes in memory shared with the
//! parent, so that answering a task costs the worker a copy, not a system call.
//!
//! The worker appends response frames at `head` and publishes them by moving `head`
//! past them; the parent copies out what lies between `tail` and `head` and gives the
//! room back by moving `tail` (and wakes a worker that sleeps waiting for room, on a
//! futex in the shared memory). Answers are published in order, each before the worker
//! starts its next request, so an answer the worker published survives its crash:
//! when the worker's channel ends, the parent reads the ring to its end, and the oldest
//! request still unanswered is the one the worker was running. An answer larger than
//! the free room goes in pieces, the worker waiting for the parent to take the earlier
//! ones; the parent's frame reader puts the pieces together.
//!
//! Wake-ups: a parent about to sleep in `poll` writes to `waiting` the id of the
//! answer it wants to be woken at, then looks at `answered` (the id of the last answer
//! published) and `idle` once more; a worker that publishes answer `id >= waiting`, or
//! that runs out of requests (`idle`), or finds the ring full, lowers `waiting` and
//! writes one byte on its channel (the only bytes a worker writes there). Both sides
//! write their own word, then read the other's, with sequentially consistent
//! operations, so at least one of them sees the other: the parent never sleeps on an
//! answer it asked to be told about, and a busy parent costs the worker no system
//! call. A parent with many requests in flight asks to be woken half-way through
//! them, so that it handles answers in batches and refills the worker before it runs
//! dry; a worker that runs dry wakes it at once.
//!
//! The parent does not trust what the worker leaves in the ring: it copies the bytes
//! out before it reads them, checks the frames' lengths in its copy (see
//! `FrameBuffer`), and treats a `head` more than the ring's capacity ahead of `tail`
//! as a broken worker.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::shared_memory::SharedMemory;
use super::sys;

/// Bytes of answers the ring holds: room for thousands of small answers; a larger
/// one goes through in pieces.
pub(crate) const CAPACITY: usize = 256 << 10;

/// The control words, then the data from the next page on.
const DATA: usize = 4096;
/// Where each control word is: the worker's on one cache line, the parent's on others.
const HEAD: usize = 0;
const ANSWERED: usize = 8;
const IDLE: usize = 16;
const TAIL: usize = 128;
const WAITING: usize = 256;
/// For a worker that waits for room (see `wait_for_room`): raised while it waits, and
/// the futex it sleeps on, moved by the parent each time it frees room for it.
const ROOM_WAITING: usize = 384;
const ROOM_FREED: usize = 388;

/// One side's view of a worker's answer ring.
#[derive(Debug)]
pub(crate) struct AnswerRing {
    memory: SharedMemory,
}

/// The worker wrote a `head` that cannot be: more unread bytes than the ring holds.
#[derive(Debug)]
pub(crate) struct Corrupt;

impl AnswerRing {
    /// Creates an empty ring; returns it and the descriptor that maps it in the worker
    /// (see [`AnswerRing::map`]).
    pub(crate) fn create() -> io::Result<(AnswerRing, OwnedFd)> {
        let (memory, fd) = SharedMemory::create(c"concurrency-answers", DATA + CAPACITY)?;
        Ok((AnswerRing { memory }, fd))
    }

    /// Maps the ring that `fd` (from [`AnswerRing::create`]) holds.
    pub(crate) fn map(fd: BorrowedFd<'_>) -> io::Result<AnswerRing> {
        Ok(AnswerRing {
            memory: SharedMemory::map(fd, DATA + CAPACITY)?,
        })
    }

    fn word<T>(&self, offset: usize) -> &T {
        debug_assert!(offset + std::mem::size_of::<T>() <= DATA);
        // SAFETY: `offset` is one of the control words' offsets, inside the first page
        // of a live, page-aligned mapping and aligned for the 4- and 8-byte atomics
        // read through it; `T` is only ever an atomic, so both processes access the
        // word atomically. The reference borrows `self`, so it cannot outlive the
        // mapping.
        unsafe { self.memory.base().add(offset).cast::<T>().as_ref() }
    }

    fn head(&self) -> &AtomicU64 {
        self.word(HEAD)
    }

    fn tail(&self) -> &AtomicU64 {
        self.word(TAIL)
    }

    fn waiting(&self) -> &AtomicU64 {
        self.word(WAITING)
    }

    fn room_waiting(&self) -> &AtomicU32 {
        self.word(ROOM_WAITING)
    }

    fn room_freed(&self) -> &AtomicU32 {
        self.word(ROOM_FREED)
    }

    fn answered(&self) -> &AtomicU64 {
        self.word(ANSWERED)
    }

    fn idle(&self) -> &AtomicU32 {
        self.word(IDLE)
    }

    /// The data's `start..start + len` in the ring, as at most two runs of the mapping
    /// (the second when the range wraps around the end): their offsets from `DATA` and
    /// lengths.
    fn runs(start: u64, len: usize) -> [(usize, usize); 2] {
        let at = (start % CAPACITY as u64) as usize;
        let first = len.min(CAPACITY - at);
        [(at, first), (0, len - first)]
    }

    /// The worker's side: copies as much of `bytes` as there is room for after the
    /// answers published so far, and publishes it; how many bytes that was.
    pub(crate) fn publish(&self, bytes: &[u8]) -> usize {
        // Only the worker writes `head`; the parent frees room by moving `tail`.
        let head = self.head().load(Ordering::Relaxed);
        let tail = self.tail().load(Ordering::Acquire);
        let unread = usize::try_from(head.wrapping_sub(tail)).unwrap_or(usize::MAX);
        let count = bytes.len().min(CAPACITY.saturating_sub(unread));
        if count == 0 {
            return 0;
        }
        let mut copied = 0;
        for (at, len) in Self::runs(head, count) {
            // SAFETY: `at + len <= CAPACITY`, so the destination lies inside the
            // mapping's data; it is the free room after `head`, which the parent does
            // not read until `head` moves past it (below), and `bytes` is private
            // memory of this process, so the two ranges do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr().add(copied),
                    self.memory.base().as_ptr().add(DATA + at),
                    len,
                );
            }
            copied += len;
        }
        // Sequentially consistent: ordered before the look at `waiting` (see the
        // module's wake-ups).
        self.head().store(head + count as u64, Ordering::SeqCst);
        count
    }

    /// The worker's side, once answer `id` is published whole: whether the parent
    /// sleeps until that answer (then it is told once: `waiting` is lowered).
    pub(crate) fn answer_published(&self, id: u64) -> bool {
        // Sequentially consistent: ordered before the look at `waiting`.
        self.answered().store(id, Ordering::SeqCst);
        let waiting = self.waiting().load(Ordering::SeqCst);
        waiting != 0 && id >= waiting && self.take_waiting()
    }

    /// The worker's side, before it waits for requests: whether the parent sleeps and
    /// must be woken to send more (or to take the last answers).
    pub(crate) fn going_idle(&self) -> bool {
        self.idle().store(1, Ordering::SeqCst);
        self.waiting().load(Ordering::SeqCst) != 0 && self.take_waiting()
    }

    /// The worker's side: requests came; it is busy again.
    pub(crate) fn busy(&self) {
        self.idle().store(0, Ordering::Relaxed);
    }

    /// The worker's side, on a full ring: whether the parent sleeps and must be woken
    /// to make room.
    pub(crate) fn full(&self) -> bool {
        self.waiting().load(Ordering::SeqCst) != 0 && self.take_waiting()
    }

    /// The worker's side, on a full ring: sleeps until the parent frees room (or a
    /// while passes: the caller looks again either way).
    pub(crate) fn wait_for_room(&self) {
        let freed = self.room_freed().load(Ordering::SeqCst);
        self.room_waiting().store(1, Ordering::SeqCst);
        // Sequentially consistent, after raising the flag: either the parent sees the
        // flag once it moves `tail`, or this sees the room it made.
        let head = self.head().load(Ordering::Relaxed);
        let tail = self.tail().load(Ordering::SeqCst);
        if head.wrapping_sub(tail) >= CAPACITY as u64 {
            sys::futex_wait(
                self.room_freed(),
                freed,
                std::time::Duration::from_millis(10),
            );
        }
        self.room_waiting().store(0, Ordering::Relaxed);
    }

    /// Lowers `waiting`; whether it was raised (so that one wake-up is sent, not two).
    fn take_waiting(&self) -> bool {
        self.waiting().swap(0, Ordering::SeqCst) != 0
    }

    /// The parent's side: whether answers wait to be read.
    pub(crate) fn has_unread(&self) -> bool {
        self.head().load(Ordering::Acquire) != self.tail().load(Ordering::Relaxed)
    }

    /// The parent's side: copies published bytes into `out` and gives their room back
    /// to the worker; how many (0 if there are none).
    pub(crate) fn read(&self, out: &mut [u8]) -> Result<usize, Corrupt> {
        // Only the parent writes `tail`.
        let tail = self.tail().load(Ordering::Relaxed);
        let head = self.head().load(Ordering::SeqCst);
        let unread = head.wrapping_sub(tail);
        if unread > CAPACITY as u64 {
            return Err(Corrupt);
        }
        let count = out.len().min(unread as usize);
        let mut copied = 0;
        for (at, len) in Self::runs(tail, count) {
            // SAFETY: `at + len <= CAPACITY`, inside the mapping's data; these bytes
            // were published by the worker (they lie before `head`, loaded above), so
            // a worker that keeps to the protocol no longer writes them. One that does
            // not can only garble bytes that are copied, never referenced, and are
            // checked after the copy. `out` is this process's private memory.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.memory.base().as_ptr().add(DATA + at),
                    out.as_mut_ptr().add(copied),
                    len,
                );
            }
            copied += len;
        }
        // Sequentially consistent: ordered before the look at `room_waiting`.
        self.tail().store(tail + count as u64, Ordering::SeqCst);
        if count > 0 && self.room_waiting().load(Ordering::SeqCst) != 0 {
            self.room_freed().fetch_add(1, Ordering::SeqCst);
            sys::futex_wake(self.room_freed());
        }
        Ok(count)
    }

    /// The parent's side, before it sleeps: asks to be woken once answer `id` is
    /// published; `false` if it was already, or if the worker went idle with answers
    /// unread (then the parent must not sleep: nobody would wake it).
    pub(crate) fn sleep_until(&self, id: u64) -> bool {
        self.waiting().store(id.max(1), Ordering::SeqCst);
        let answered = self.answered().load(Ordering::SeqCst);
        let idle = self.idle().load(Ordering::SeqCst) != 0;
        if answered >= id || (idle && self.has_unread()) {
            self.waiting().store(0, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// The parent's side, awake again: no wake-up is needed any more.
    pub(crate) fn awake(&self) {
        if self.waiting().load(Ordering::Relaxed) != 0 {
            self.waiting().store(0, Ordering::Relaxed);
        }
    }
}

/// The parent's reader of a ring, for a `FrameBuffer`: `WouldBlock` when it is empty.
pub(crate) struct RingReader<'a>(pub(crate) &'a AnswerRing);

impl io::Read for RingReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self.0.read(out) {
            Ok(0) if !out.is_empty() => Err(io::ErrorKind::WouldBlock.into()),
            Ok(count) => Ok(count),
            Err(Corrupt) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the worker's answer ring is corrupt",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Each SAFETY argument of the ring, exercised (also under valgrind's memcheck: see
    //! ARCHITECTURE.md).

    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn bytes_published_on_one_mapping_are_read_on_the_other_across_the_wrap() {
        let (parent, fd) = AnswerRing::create().expect("create");
        let worker = AnswerRing::map(fd.as_fd()).expect("map");
        assert!(!parent.has_unread());
        let mut out = vec![0u8; CAPACITY];
        // Walk the ring around several times with pieces that straddle its end.
        let piece: Vec<u8> = (0..=250u8).cycle().take(100_003).collect();
        for _ in 0..10 {
            assert_eq!(worker.publish(&piece), piece.len());
            assert!(parent.has_unread());
            assert_eq!(parent.read(&mut out).expect("read"), piece.len());
            assert_eq!(&out[..piece.len()], &piece[..]);
        }
        assert!(!parent.has_unread());
        // A full ring takes nothing more until the parent reads.
        let big = vec![7u8; CAPACITY + 10];
        assert_eq!(worker.publish(&big), CAPACITY);
        assert_eq!(worker.publish(&big), 0);
        assert_eq!(parent.read(&mut out[..10]).expect("read"), 10);
        assert_eq!(worker.publish(&big), 10);
        assert_eq!(parent.read(&mut out).expect("read"), CAPACITY);
        assert!(out.iter().all(|byte| *byte == 7));
    }

    #[test]
    fn a_sleeping_parent_is_told_once_at_the_answer_it_waits_for() {
        let (parent, fd) = AnswerRing::create().expect("create");
        let worker = AnswerRing::map(fd.as_fd()).expect("map");
        assert!(!worker.answer_published(1), "nobody waits");
        // Waiting for answer 3: answer 2 does not wake, 3 does, once.
        assert!(parent.sleep_until(3));
        worker.publish(b"answer");
        assert!(!worker.answer_published(2));
        assert!(worker.answer_published(3));
        assert!(!worker.answer_published(4), "told once");
        // Already answered: the parent must not sleep.
        assert!(!parent.sleep_until(4));
        assert!(!worker.answer_published(5));
        // A worker that runs dry wakes a parent waiting for a later answer...
        assert!(parent.sleep_until(9));
        assert!(worker.going_idle());
        // ... and a parent that finds it idle with answers unread does not sleep.
        assert!(!parent.sleep_until(9));
        worker.busy();
        assert!(parent.sleep_until(9));
        assert!(worker.full(), "a full ring wakes a waiting parent");
        parent.awake();
        let mut out = [0u8; 16];
        assert_eq!(parent.read(&mut out).expect("read"), 6);
    }

    #[test]
    fn a_head_more_than_the_capacity_ahead_is_refused() {
        let (parent, fd) = AnswerRing::create().expect("create");
        let worker = AnswerRing::map(fd.as_fd()).expect("map");
        worker.publish(b"answer");
        let mut out = [0u8; 16];
        assert_eq!(parent.read(&mut out).expect("read"), 6);
        worker.head().store(CAPACITY as u64 * 3, Ordering::SeqCst);
        assert!(parent.read(&mut out).is_err());
    }
}
