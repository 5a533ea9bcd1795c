//! The few system calls the process pool needs that std does not offer: `poll`, a
//! futex that works across processes, and the parent's side of a child process
//! (`kill`, `waitpid`, `waitid`), each behind a safe function.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

/// Waits until one of `fds` is ready for what `events` asks (`libc::POLLIN`,
/// `libc::POLLOUT`), or `timeout` passes (`None`: no limit). Returns what each is ready
/// for (0 if not ready), in order; an interrupted wait returns all zeros.
pub(crate) fn poll<const N: usize>(
    fds: [(BorrowedFd<'_>, i16); N],
    timeout: Option<Duration>,
) -> io::Result<[i16; N]> {
    let mut entries = fds.map(|(fd, events)| libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    });
    let timeout = match timeout {
        None => -1,
        // Rounded up, so that a wait never ends before its deadline.
        Some(timeout) => i32::try_from(timeout.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX),
    };
    // SAFETY: `entries` is an array of `N` initialised `pollfd`s that lives across the
    // call; poll writes only their `revents` fields. The descriptors are borrowed, so
    // they stay open during the call.
    let ready = unsafe { libc::poll(entries.as_mut_ptr(), N as libc::nfds_t, timeout) };
    if ready == -1 {
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::Interrupted {
            return Ok([0; N]);
        }
        return Err(error);
    }
    Ok(entries.map(|entry| entry.revents))
}

/// Sleeps while `word` holds `expected`, until another thread or process wakes it
/// (see [`futex_wake`]) or `timeout` passes; it may also return early. The word may
/// live in memory shared with another process (the futex is not private).
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let timeout = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: FUTEX_WAIT reads the 4-byte word at the address (a live `AtomicU32`,
    // borrowed for the call, so it stays mapped) and the `timespec` it is given; it
    // writes no memory. Its result (woken, timed out, or the word had changed) needs no
    // handling: the caller looks at the word again.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &raw const timeout,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wakes whoever sleeps on `word` in [`futex_wait`], in this process or another.
pub(crate) fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only uses the word's address as a key (it reads no memory);
    // the word is a live `AtomicU32`, borrowed for the call.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}

/// Sends as much of `slices` as the socket takes now, without blocking and without
/// raising `SIGPIPE` if the peer is gone (a program that does not ignore it would die):
/// the bytes sent, or `WouldBlock` if none fit.
pub(crate) fn send_vectored(socket: BorrowedFd<'_>, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: an all-zero `msghdr` is a valid value (null pointers, zero lengths).
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    // `IoSlice` is guaranteed to be ABI-compatible with `iovec` on Unix; sendmsg only
    // reads the slices, which outlive the call.
    message.msg_iov = slices.as_ptr().cast::<libc::iovec>().cast_mut();
    message.msg_iovlen = slices.len().min(1024) as _;
    loop {
        // SAFETY: `message` points to `slices` (valid, read-only here) and nothing else;
        // the descriptor is borrowed, so it stays open during the call.
        let sent = unsafe {
            libc::sendmsg(
                socket.as_raw_fd(),
                &message,
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if sent >= 0 {
            return Ok(sent.unsigned_abs());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// A socket read without blocking, whatever the socket's mode: `WouldBlock` when
/// nothing is there.
pub(crate) struct NonBlocking<'a>(pub(crate) BorrowedFd<'a>);

impl io::Read for NonBlocking<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: the pointer and length describe `buffer`, writable for the call;
            // the descriptor is borrowed, so it stays open.
            let read = unsafe {
                libc::recv(
                    self.0.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if read >= 0 {
                return Ok(read.unsigned_abs());
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }
}

/// Sends all of `bytes` on a blocking socket, without raising `SIGPIPE`.
pub(crate) fn send_all(socket: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: the pointer and length describe `bytes`, which outlives the call;
        // send only reads it.
        let sent = unsafe {
            libc::send(
                socket.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        match sent {
            -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            -1 => return Err(io::Error::last_os_error()),
            0 => return Err(io::ErrorKind::WriteZero.into()),
            sent => bytes = &bytes[sent.unsigned_abs()..],
        }
    }
    Ok(())
}

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ended {
    pub(crate) signal: Option<i32>,
    pub(crate) exit_code: Option<i32>,
}

/// A child process this process started, until it is reaped. Dropping one that was
/// not reaped kills and reaps it, so that no zombie is left.
#[derive(Debug)]
pub(crate) struct ChildProcess {
    pid: libc::pid_t,
    ended: Option<Ended>,
}

impl ChildProcess {
    /// Takes charge of the child `pid` (which must be a child of this process, not
    /// reaped yet).
    pub(crate) fn new(pid: libc::pid_t) -> Self {
        ChildProcess { pid, ended: None }
    }

    pub(crate) fn id(&self) -> u32 {
        self.pid.unsigned_abs()
    }

    /// Sends `signal` (a no-op once the child is reaped: its pid may be reused).
    pub(crate) fn signal(&self, signal: i32) {
        if self.ended.is_none() {
            // SAFETY: kill takes plain integers and touches no memory. The child is not
            // reaped yet, so the pid still names it (a zombie at worst).
            unsafe { libc::kill(self.pid, signal) };
        }
    }

    /// Kills the child (`SIGKILL`, which also ends a stopped process).
    pub(crate) fn kill(&self) {
        self.signal(libc::SIGKILL);
    }

    /// How the child ended, if it has (reaping it); `None` while it runs.
    pub(crate) fn try_wait(&mut self) -> io::Result<Option<Ended>> {
        self.wait_with(libc::WNOHANG)
    }

    /// Waits for the child to end and reaps it.
    pub(crate) fn wait(&mut self) -> io::Result<Ended> {
        loop {
            if let Some(ended) = self.wait_with(0)? {
                return Ok(ended);
            }
        }
    }

    fn wait_with(&mut self, flags: i32) -> io::Result<Option<Ended>> {
        if let Some(ended) = self.ended {
            return Ok(Some(ended));
        }
        let mut status = 0;
        // SAFETY: `status` is a valid place for waitpid to write an int; the pid is our
        // own child, not reaped yet.
        let waited = unsafe { libc::waitpid(self.pid, &mut status, flags) };
        match waited {
            -1 => {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    return Ok(None);
                }
                Err(error)
            }
            0 => Ok(None),
            _ => {
                let ended = Ended {
                    signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
                    exit_code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
                };
                self.ended = Some(ended);
                Ok(Some(ended))
            }
        }
    }

    /// Waits up to `limit` for the child to be stopped (by `SIGSTOP`) or to end,
    /// without reaping it; `true` if it did.
    pub(crate) fn wait_stopped(&self, limit: Duration) -> bool {
        let started = Instant::now();
        loop {
            // SAFETY: an all-zero `siginfo_t` is a valid value to pass for waitid to
            // fill.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: `info` is valid for waitid to write; WNOWAIT leaves the child
            // waitable, so its later reaping is unaffected.
            let waited = unsafe {
                libc::waitid(
                    libc::P_PID,
                    self.pid.unsigned_abs(),
                    &mut info,
                    libc::WSTOPPED | libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
                )
            };
            // SAFETY: waitid filled `info` (or left it zeroed, pid 0: nothing changed).
            if waited == 0 && unsafe { info.si_pid() } != 0 {
                return true;
            }
            if waited == -1 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return false;
            }
            if started.elapsed() >= limit {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if self.ended.is_none() {
            self.kill();
            let _ = self.wait();
        }
    }
}

/// The system's page size in bytes.
pub(crate) fn page_size() -> u64 {
    // SAFETY: sysconf takes an integer and touches no memory.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;
    use std::os::unix::process::CommandExt;

    #[test]
    fn poll_reports_readiness_and_times_out() {
        let (a, b) = UnixStream::pair().expect("pair");
        let ready =
            poll([(a.as_fd(), libc::POLLIN)], Some(Duration::from_millis(1))).expect("poll");
        assert_eq!(ready, [0]);
        (&b).write_all(b"x").expect("write");
        let ready = poll(
            [(a.as_fd(), libc::POLLIN), (b.as_fd(), libc::POLLOUT)],
            None,
        )
        .expect("poll");
        assert_ne!(ready[0] & libc::POLLIN, 0);
        assert_ne!(ready[1] & libc::POLLOUT, 0);
    }

    #[test]
    fn sends_never_block_nor_raise_sigpipe() {
        let (a, b) = UnixStream::pair().expect("pair");
        let block = [7u8; 4096];
        let slices = [IoSlice::new(b"ab"), IoSlice::new(&block)];
        assert_eq!(send_vectored(a.as_fd(), &slices).expect("send"), 4098);
        // Fill the buffer: a full socket refuses rather than blocks.
        let mut full = None;
        for _ in 0..10_000 {
            if let Err(error) = send_vectored(a.as_fd(), &slices) {
                full = Some(error.kind());
                break;
            }
        }
        assert_eq!(full, Some(io::ErrorKind::WouldBlock));
        drop(b);
        // The peer is gone: an error, not a signal that kills this test process.
        assert!(send_vectored(a.as_fd(), &slices).is_err());
        assert!(send_all(a.as_fd(), b"x").is_err());
        let (c, d) = UnixStream::pair().expect("pair");
        let mut got = [0u8; 5];
        let empty = std::io::Read::read(&mut NonBlocking(d.as_fd()), &mut got);
        assert_eq!(
            empty.map_err(|error| error.kind()).err(),
            Some(io::ErrorKind::WouldBlock),
            "a blocking socket read without blocking"
        );
        send_all(c.as_fd(), b"hello").expect("send_all");
        std::io::Read::read_exact(&mut NonBlocking(d.as_fd()), &mut got).expect("read");
        assert_eq!(&got, b"hello");
    }

    #[test]
    fn a_futex_sleeps_until_woken_or_its_timeout() {
        use std::sync::Arc;
        use std::sync::atomic::Ordering;
        let word = Arc::new(AtomicU32::new(0));
        // A word that changed: no sleep at all.
        let started = Instant::now();
        futex_wait(&word, 1, Duration::from_secs(30));
        assert!(started.elapsed() < Duration::from_secs(10));
        // Timed out.
        futex_wait(&word, 0, Duration::from_millis(1));
        // Woken by another thread, long before the timeout.
        let sleeper = {
            let word = Arc::clone(&word);
            std::thread::spawn(move || {
                while word.load(Ordering::SeqCst) == 0 {
                    futex_wait(&word, 0, Duration::from_secs(30));
                }
            })
        };
        word.store(1, Ordering::SeqCst);
        futex_wake(&word);
        let started = Instant::now();
        sleeper.join().expect("woken");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    fn sleeper() -> ChildProcess {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("spawn sleep");
        let pid = libc::pid_t::try_from(child.id()).expect("pid");
        // The std handle is forgotten: the `ChildProcess` reaps it from now on.
        std::mem::forget(child);
        ChildProcess::new(pid)
    }

    #[test]
    fn a_child_is_stopped_killed_and_reaped_once() {
        let mut child = sleeper();
        assert_eq!(child.try_wait().expect("try_wait"), None);
        child.signal(libc::SIGSTOP);
        assert!(child.wait_stopped(Duration::from_secs(10)), "stopped");
        // Stopped is not ended: it is still there to kill.
        assert_eq!(child.try_wait().expect("try_wait"), None);
        child.kill();
        let ended = child.wait().expect("wait");
        assert_eq!(
            ended,
            Ended {
                signal: Some(libc::SIGKILL),
                exit_code: None
            }
        );
        // Reaped once; asking again gives the same answer, and signals go nowhere.
        assert_eq!(child.try_wait().expect("again"), Some(ended));
        child.kill();
    }

    #[test]
    fn dropping_a_child_reaps_it() {
        let child = sleeper();
        let pid = child.pid;
        drop(child);
        // SAFETY: probing with signal 0 touches no memory.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        assert!(
            !alive,
            "the dropped child was killed and reaped (no zombie holds its pid)"
        );
        assert!(page_size() >= 4096);
    }
}
