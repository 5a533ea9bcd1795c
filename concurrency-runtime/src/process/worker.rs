//! The worker side: a copy of the program, started with exec, that runs tasks.
//!
//! A constructor (an `.init_array` entry, so it runs before `main`, also before a
//! test harness's `main`) checks for the worker marker in the environment. Without
//! it, the program runs normally. With it, the process becomes a worker: it serves
//! requests on the inherited socket until the parent closes it, then exits; the
//! user's `main` never runs.

use std::io::{BufReader, BufWriter, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard};

use super::handoff;
use super::protocol::{self, FrameError};
use super::registry::{self, EntryError};
use super::shared_counter::SharedCounter;
use crate::error::panic_message;
use crate::task::TaskKind;

/// The marker: the worker's end of the channel, as a file descriptor number.
pub(crate) const ENV_FD: &str = "CONCURRENCY_RUNTIME_WORKER_FD";
/// The parent's pid: a worker whose parent already died exits at once.
pub(crate) const ENV_PARENT: &str = "CONCURRENCY_RUNTIME_WORKER_PARENT";
/// The maximum frame size, in bytes.
pub(crate) const ENV_MAX_FRAME: &str = "CONCURRENCY_RUNTIME_WORKER_MAX_FRAME";
/// The file descriptor the channel arrives on: the stdin slot, the one descriptor
/// besides stdout and stderr that the parent can place without forcing `fork`.
pub(crate) const HANDOFF_FD: RawFd = 0;

/// Runs before `main` in every program that links this crate's process support.
/// Referenced from the code every process-task call runs, so the linker keeps it.
#[used]
// SAFETY: `.init_array` holds `extern "C" fn()` pointers that the C runtime calls once
// at start-up, single-threaded; `worker_hook` has that signature and touches nothing
// that needs `main` to have started.
#[unsafe(link_section = ".init_array")]
pub(crate) static WORKER_HOOK: extern "C" fn() = worker_hook;

extern "C" fn worker_hook() {
    if let Some(marker) = std::env::var_os(ENV_FD) {
        let settings = Settings {
            marker: marker.to_string_lossy().into_owned(),
            parent: std::env::var(ENV_PARENT)
                .ok()
                .and_then(|pid| pid.parse().ok()),
            max_frame: std::env::var(ENV_MAX_FRAME)
                .ok()
                .and_then(|max| max.parse().ok())
                .unwrap_or(u64::MAX),
        };
        // Programs a task starts (a copy of this one included) must not take
        // themselves for workers.
        for variable in [ENV_FD, ENV_PARENT, ENV_MAX_FRAME] {
            // SAFETY: `.init_array` entries run before `main`, on the only thread of
            // the process, so nothing reads the environment concurrently.
            unsafe { std::env::remove_var(variable) };
        }
        std::process::exit(run_worker(&settings));
    }
}

/// What the parent told a worker through its environment.
struct Settings {
    marker: String,
    parent: Option<u32>,
    max_frame: u64,
}

fn fail(message: std::fmt::Arguments<'_>) -> i32 {
    eprintln!("concurrency-runtime worker: {message}; exiting without running main");
    2
}

fn run_worker(settings: &Settings) -> i32 {
    let marker = &settings.marker;
    let Ok(fd) = marker.parse::<RawFd>() else {
        return fail(format_args!("{ENV_FD}={marker:?} is not a file descriptor"));
    };
    if !is_socket(fd) {
        return fail(format_args!(
            "{ENV_FD}={marker:?} is not an open socket from a parent process"
        ));
    }
    let channel = match take_channel(fd) {
        Ok(channel) => channel,
        Err(error) => return fail(format_args!("could not take over the channel: {error}")),
    };
    // Die with the parent, even if it is SIGKILLed. The signal is tied to the thread
    // that spawned this process: the pool's driver threads, which live as long as the
    // parent does.
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and touches no memory.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } == -1 {
        return fail(format_args!(
            "could not set its death signal: {}",
            std::io::Error::last_os_error()
        ));
    }
    // Checked after `prctl`: a parent that died before then is caught here.
    // SAFETY: getppid has no preconditions.
    let actual_parent = unsafe { libc::getppid() } as u32;
    if settings.parent != Some(actual_parent) {
        // The parent exited while this worker started (or this is not its child):
        // nobody is left to serve, and nobody to tell.
        return 2;
    }
    let max_frame = settings.max_frame;
    let line = match handoff::receive_fd(&channel) {
        Ok(line) => UnixStream::from(line),
        Err(error) => return fail(format_args!("could not receive its cancel line: {error}")),
    };
    let written = match handoff::receive_fd(&channel)
        .and_then(|memory| SharedCounter::map(std::os::fd::AsFd::as_fd(&memory)))
    {
        Ok(written) => written,
        Err(error) => return fail(format_args!("could not map its cancel count: {error}")),
    };
    if let Err(error) = line.set_nonblocking(true) {
        return fail(format_args!("could not set up its cancel line: {error}"));
    }
    let line_fd = line.as_raw_fd();
    let progress = Arc::new(Mutex::new(Progress {
        line,
        written,
        applied: 0,
        pending: Vec::new(),
        running: None,
        reached: 0,
        cancelled: Vec::new(),
    }));
    let watcher = {
        let progress = Arc::clone(&progress);
        std::thread::Builder::new()
            .name("concurrency-cancel-line".into())
            .stack_size(64 * 1024)
            .spawn(move || watch_cancellations(line_fd, &progress))
    };
    if let Err(error) = watcher {
        return fail(format_args!(
            "could not start its cancel-line thread: {error}"
        ));
    }
    let Ok(write_half) = channel.try_clone() else {
        return fail(format_args!("could not duplicate the channel"));
    };
    serve(
        BufReader::new(channel),
        BufWriter::new(write_half),
        max_frame,
        &progress,
    )
}

/// Where the worker is in its stream of requests; shared by the thread that runs them
/// and the one that waits on the cancel line. The line is only read with this lock
/// held, by either thread, so a cancellation is applied exactly once and never between
/// the task loop's look at it and its decision.
#[derive(Debug)]
struct Progress {
    /// The cancel line (non-blocking): ids of cancelled requests, 8 bytes each.
    line: UnixStream,
    /// How many ids the parent has written to the line ...
    written: SharedCounter,
    /// ... and how many this worker has read from it.
    applied: u64,
    /// The bytes of an id read only in part.
    pending: Vec<u8>,
    /// The request running now.
    running: Option<u64>,
    /// The id of the last request read (ids increase).
    reached: u64,
    /// Cancelled requests not read yet.
    cancelled: Vec<u64>,
}

impl Progress {
    /// Applies every cancellation already on the line, without blocking: the running
    /// request is stopped by killing this process, one not read yet is marked so that
    /// it is skipped, one already answered is left alone. `false` once the line is
    /// closed (the parent is gone).
    fn drain_line(&mut self) -> bool {
        let mut buffer = [0u8; 256];
        loop {
            match (&self.line).read(&mut buffer) {
                Ok(0) => return false,
                Ok(read) => {
                    self.pending.extend_from_slice(&buffer[..read]);
                    while let Some(id) = self.pending.first_chunk::<8>().copied() {
                        self.pending.drain(..8);
                        self.applied += 1;
                        self.cancel(u64::from_le_bytes(id));
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    fn cancel(&mut self, id: u64) {
        if self.running == Some(id) {
            // With the lock held, the task cannot finish and the next one cannot
            // start: the parent sees this worker end without an answer to exactly
            // this request, and knows the requests behind it never started.
            // SAFETY: `kill` has no memory-safety preconditions; the target is this
            // very process.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        } else if id > self.reached {
            self.cancelled.push(id);
        }
    }
}

fn lock(progress: &Mutex<Progress>) -> MutexGuard<'_, Progress> {
    progress
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits for the cancel line to be readable, then applies what arrived (with the lock
/// held), until the parent closes the line.
fn watch_cancellations(line: RawFd, progress: &Mutex<Progress>) {
    loop {
        let mut poll = libc::pollfd {
            fd: line,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `poll` is one valid pollfd for the duration of the call; `line` stays
        // open as long as `progress`, which this thread holds.
        let ready = unsafe { libc::poll(&mut poll, 1, -1) };
        if ready == -1 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
        {
            return;
        }
        if ready > 0 && !lock(progress).drain_line() {
            return;
        }
    }
}

/// Moves the channel from the descriptor it arrived on to a fresh close-on-exec one,
/// so that no task sees it; if it arrived in a standard stream's slot (stdin), that
/// slot gets `/dev/null`.
fn take_channel(fd: RawFd) -> std::io::Result<UnixStream> {
    // SAFETY: F_DUPFD_CLOEXEC duplicates an open descriptor (checked by the caller)
    // onto the lowest free number >= 3; no memory is involved.
    let moved = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if moved == -1 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `moved` was just created by fcntl and nothing else owns it.
    let channel = unsafe { UnixStream::from_raw_fd(moved) };
    if (0..=2).contains(&fd) {
        let null = std::fs::File::open("/dev/null")?;
        // SAFETY: both are open descriptors; dup2 atomically replaces `fd` (the socket's
        // old slot) with `/dev/null`, and `null` still owns (and closes) its own.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } == -1 {
            return Err(std::io::Error::last_os_error());
        }
    } else {
        // SAFETY: `fd` is the parent's hand-off descriptor, now duplicated into
        // `channel`; no other code in this process owns or uses it.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    Ok(channel)
}

fn is_socket(fd: RawFd) -> bool {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `stat` points to writable memory of the right size; fstat only writes it.
    let result = unsafe { libc::fstat(fd, stat.as_mut_ptr()) };
    // SAFETY: fstat returned 0, so it initialised `stat`.
    result == 0 && (unsafe { stat.assume_init() }.st_mode & libc::S_IFMT) == libc::S_IFSOCK
}

fn serve(
    mut input: impl Read,
    mut output: impl Write,
    max_frame: u64,
    progress: &Mutex<Progress>,
) -> i32 {
    loop {
        let body = match protocol::read_frame(&mut input, max_frame) {
            Ok(body) => body,
            Err(FrameError::Closed) => return 0,
            Err(error) => {
                eprintln!("concurrency-runtime worker: bad request frame: {error}");
                return 3;
            }
        };
        let Some(request) = protocol::parse_request(&body) else {
            eprintln!("concurrency-runtime worker: malformed request");
            return 3;
        };
        let skip = {
            let mut progress = lock(progress);
            // A cancellation written before this point is seen now, even if the
            // other thread has not woken up for it yet. (The line is read only when
            // the parent's count says it holds something: no system call otherwise.)
            if progress.written.get() != progress.applied {
                progress.drain_line();
            }
            progress.reached = request.id;
            let skip = progress.cancelled.contains(&request.id);
            // Ids below this one belong to requests that were never sent.
            progress
                .cancelled
                .retain(|cancelled| *cancelled > request.id);
            if !skip {
                progress.running = Some(request.id);
            }
            skip
        };
        if skip {
            let header = protocol::response_header(request.id, protocol::CANCELLED);
            if protocol::write_frame(&mut output, &[&header])
                .and_then(|()| output.flush())
                .is_err()
            {
                return 4;
            }
            continue;
        }
        let (status, payload) = match registry::find(request.task) {
            None => (protocol::UNKNOWN_TASK, request.task.as_bytes().to_vec()),
            Some(entry) => {
                let args = request.args;
                match catch_unwind(AssertUnwindSafe(|| {
                    TaskKind::Process.enter(|| (entry.run)(args))
                })) {
                    Ok(Ok(result)) => (protocol::OK, result),
                    Ok(Err(EntryError::ArgsDecode(message))) => {
                        (protocol::ARGS_DECODE, message.into_bytes())
                    }
                    Ok(Err(EntryError::ResultEncode(message))) => {
                        (protocol::RESULT_ENCODE, message.into_bytes())
                    }
                    Err(payload) => (
                        protocol::PANICKED,
                        panic_message(payload.as_ref()).into_bytes(),
                    ),
                }
            }
        };
        // From here on, a cancellation finds the request finished and leaves it be.
        lock(progress).running = None;
        // Output the task printed goes to the inherited stdout/stderr, not here.
        let _ = std::io::stdout().flush();
        // An answer over the limit would be refused by the parent, which could then
        // not trust this worker any more: say so instead, and stay.
        let length = (protocol::RESPONSE_HEADER_LEN + payload.len()) as u64;
        let (status, payload) = if length > max_frame {
            (protocol::TOO_LARGE, length.to_le_bytes().to_vec())
        } else {
            (status, payload)
        };
        let header = protocol::response_header(request.id, status);
        if protocol::write_frame(&mut output, &[&header, &payload])
            .and_then(|()| output.flush())
            .is_err()
        {
            return 4;
        }
    }
}
