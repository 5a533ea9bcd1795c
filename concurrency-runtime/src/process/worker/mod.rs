//! The worker side: a copy of the program, started with exec, that runs tasks.
//!
//! A constructor (an `.init_array` entry, so it runs before `main`, also before a
//! test harness's `main`) checks for the worker marker in the environment. Without
//! it, the program runs normally. With it, the process becomes a worker: it serves
//! requests on the inherited channel until the parent closes it, then exits; the
//! user's `main` never runs.

mod serve;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::OnceLock;

use super::answer_ring::AnswerRing;
use super::settings::{ENV_WORKER, WorkerSettings};
use super::shared_counter::SharedCounter;
use super::{handoff, registry};

/// Runs before `main` in every program that links this crate's process support.
/// Referenced from the code every process-task call runs, so the linker keeps it.
#[used]
// SAFETY: `.init_array` holds `extern "C" fn()` pointers that the C runtime calls once
// at start-up, single-threaded; `worker_hook` has that signature and touches nothing
// that needs `main` to have started.
#[unsafe(link_section = ".init_array")]
pub(crate) static WORKER_HOOK: extern "C" fn() = worker_hook;

/// This worker's settings, once it is one.
static SETTINGS: OnceLock<WorkerSettings> = OnceLock::new();

/// The settings of the worker this process is, if it is one.
pub(crate) fn settings() -> Option<&'static WorkerSettings> {
    SETTINGS.get()
}

extern "C" fn worker_hook() {
    if let Some(marker) = std::env::var_os(ENV_WORKER) {
        // Programs a task starts (a copy of this one included) must not take
        // themselves for workers.
        // SAFETY: `.init_array` entries run before `main`, on the only thread of the
        // process, so nothing reads the environment concurrently.
        unsafe { std::env::remove_var(ENV_WORKER) };
        std::process::exit(run_worker(&marker));
    }
}

/// Says why this process cannot be a worker; its exit status.
fn fail(message: std::fmt::Arguments<'_>) -> i32 {
    eprintln!("concurrency-runtime worker: {message}; exiting without running main");
    2
}

fn run_worker(marker: &std::ffi::OsStr) -> i32 {
    let Some(value) = marker.to_str() else {
        return fail(format_args!("{ENV_WORKER} is not UTF-8"));
    };
    let settings = match WorkerSettings::decode(value) {
        Ok(settings) => settings,
        Err(error) => return fail(format_args!("{ENV_WORKER}={value:?}: {error}")),
    };
    let fd = settings.fd;
    if !is_socket(fd) {
        return fail(format_args!(
            "{ENV_WORKER}: descriptor {fd} is not an open socket from a parent process"
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
    let actual_parent = unsafe { libc::getppid() }.unsigned_abs();
    if settings.parent != actual_parent {
        return fail(format_args!(
            "it was started for parent process {}, but its parent is process {actual_parent} \
             (the parent exited while it started, or the marker was copied into another \
             program's environment)",
            settings.parent
        ));
    }
    if settings.registry != registry::fingerprint() {
        return fail(format_args!(
            "its process tasks differ from its parent's (registry {:x}, the parent's {:x}): \
             it is not the same executable",
            registry::fingerprint(),
            settings.registry
        ));
    }
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
    let answers = match handoff::receive_fd(&channel)
        .and_then(|ring| AnswerRing::map(std::os::fd::AsFd::as_fd(&ring)))
    {
        Ok(answers) => answers,
        Err(error) => return fail(format_args!("could not map its answer ring: {error}")),
    };
    let memory = if settings.max_memory > 0 {
        match std::fs::File::open("/proc/self/statm") {
            Ok(statm) => Some(statm),
            Err(error) => {
                return fail(format_args!(
                    "its memory limit needs /proc/self/statm, which it cannot open: {error}"
                ));
            }
        }
    } else {
        None
    };
    let settings = SETTINGS.get_or_init(|| settings);
    match serve::serve(channel, line, written, answers, memory, settings) {
        Ok(code) => code,
        Err(message) => fail(format_args!("{message}")),
    }
}

/// Moves the channel off a standard stream's slot (0-2) if it arrived there, giving
/// that slot `/dev/null`, and makes it close-on-exec, so that no program a task starts
/// inherits it.
fn take_channel(fd: RawFd) -> std::io::Result<UnixStream> {
    if (0..=2).contains(&fd) {
        // SAFETY: F_DUPFD_CLOEXEC duplicates an open descriptor (checked by the caller)
        // onto the lowest free number >= 3; no memory is involved.
        let moved = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        if moved == -1 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `moved` was just created by fcntl and nothing else owns it.
        let channel = unsafe { UnixStream::from_raw_fd(moved) };
        let null = std::fs::File::open("/dev/null")?;
        // SAFETY: both are open descriptors; dup2 atomically replaces `fd` (the socket's
        // old slot) with `/dev/null`, and `null` still owns (and closes) its own.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } == -1 {
            return Err(std::io::Error::last_os_error());
        }
        return Ok(channel);
    }
    // SAFETY: `fd` is the channel the parent placed for this process (checked to be an
    // open socket); no other code in this process owns or uses it.
    let channel = OwnedFd::from(unsafe { UnixStream::from_raw_fd(fd) });
    // SAFETY: F_SETFD on a descriptor this process owns; no memory is involved.
    if unsafe { libc::fcntl(channel.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(UnixStream::from(channel))
}

fn is_socket(fd: RawFd) -> bool {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `stat` points to writable memory of the right size; fstat only writes it.
    let result = unsafe { libc::fstat(fd, stat.as_mut_ptr()) };
    // SAFETY: fstat returned 0, so it initialised `stat`.
    result == 0 && (unsafe { stat.assume_init() }.st_mode & libc::S_IFMT) == libc::S_IFSOCK
}
