//! The parent's end of a worker's cancel line, and the wake-up of a driver.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, OnceLock};

use crate::process::shared_counter::SharedCounter;
use crate::process::sys;
use crate::sync::lock;

/// A second socket to a worker, on which the parent writes the ids of cancelled
/// requests (8 bytes each, little-endian); the worker decides what to do (see
/// `worker/serve.rs`). Cancelling also wakes the worker's driver, which stops a worker
/// that does not react (see `driver.rs`).
#[derive(Debug)]
pub(crate) struct CancelLine {
    socket: Mutex<UnixStream>,
    /// How many ids were written, shared with the worker: it reads the line before a
    /// request only when this moved.
    written: SharedCounter,
    driver: Arc<Wake>,
}

impl CancelLine {
    pub(crate) fn new(socket: UnixStream, written: SharedCounter, driver: Arc<Wake>) -> Self {
        CancelLine {
            socket: Mutex::new(socket),
            written,
            driver,
        }
    }

    pub(crate) fn cancel(&self, id: u64) {
        {
            let socket = lock(&self.socket);
            // The worker is gone if this fails: nothing runs there to stop. (A live
            // worker's thread drains the line as messages come, so this does not
            // block.)
            if sys::send_all(socket.as_fd(), &id.to_le_bytes()).is_ok() {
                // After the write: a worker that sees the new count finds the id.
                self.written.increment();
            }
        }
        self.driver.notify();
    }
}

/// The cancel line of each slot's current worker, for the cancellation of a task that
/// knows only the slot and the id its request was sent with (see `queue::Control`).
/// Ids go on increasing on a slot from one worker to the next, so a cancellation that
/// reaches a worker started after the request's worker died names an id the new
/// worker never had, and is ignored.
static LINES: OnceLock<Box<[CurrentLine]>> = OnceLock::new();

/// A slot's current cancel line.
type CurrentLine = Mutex<Option<Arc<CancelLine>>>;

/// Makes room for the lines of `slots` slots (when the pool starts).
pub(crate) fn install(slots: usize) {
    LINES.get_or_init(|| (0..slots).map(|_| Mutex::new(None)).collect());
}

/// The line of the worker now on `slot` (`None`: no worker there).
pub(crate) fn set_line(slot: usize, line: Option<Arc<CancelLine>>) {
    if let Some(current) = LINES.get().and_then(|lines| lines.get(slot)) {
        *lock(current) = line;
    }
}

/// Cancels request `id` of the worker on `slot`.
pub(crate) fn cancel(slot: usize, id: u64) {
    let line = LINES
        .get()
        .and_then(|lines| lines.get(slot))
        .and_then(|current| lock(current).clone());
    if let Some(line) = line {
        line.cancel(id);
    }
}

/// Wakes a driver that waits in `poll`: a socket pair, one byte per wake-up.
#[derive(Debug)]
pub(crate) struct Wake {
    sender: UnixStream,
    receiver: UnixStream,
}

impl Wake {
    pub(crate) fn new() -> io::Result<Self> {
        let (sender, receiver) = UnixStream::pair()?;
        sender.set_nonblocking(true)?;
        receiver.set_nonblocking(true)?;
        Ok(Wake { sender, receiver })
    }

    /// Makes the receiving end readable (a full buffer already is).
    pub(crate) fn notify(&self) {
        let _ = (&self.sender).write(&[1]);
    }

    /// Empties the receiving end.
    pub(crate) fn drain(&self) {
        let mut buffer = [0u8; 64];
        while matches!((&self.receiver).read(&mut buffer), Ok(n) if n > 0) {}
    }

    /// What to poll for a wake-up.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.receiver.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_is_seen_by_poll_until_drained() {
        let wake = Wake::new().expect("wake");
        let quiet = std::time::Duration::from_millis(1);
        assert_eq!(
            sys::poll([(wake.fd(), libc::POLLIN)], Some(quiet)).expect("poll"),
            [0]
        );
        for _ in 0..100_000 {
            wake.notify(); // never blocks, even with the buffer full
        }
        assert_ne!(
            sys::poll([(wake.fd(), libc::POLLIN)], None).expect("poll")[0],
            0
        );
        wake.drain();
        assert_eq!(
            sys::poll([(wake.fd(), libc::POLLIN)], Some(quiet)).expect("poll"),
            [0]
        );
    }
}
