//! Starting a worker process: `posix_spawn` of this program, with exactly the
//! descriptors and environment the worker should have.
//!
//! `posix_spawn` (glibc's is a `CLONE_VM | CLONE_VFORK` clone) rather than `fork`: a
//! `fork` copies the parent's page tables, so its cost grows with the parent's memory
//! (30 ms in a program with 512 MiB resident, against 1.9 ms), and every respawn after
//! a crash would pay it. Its file actions do in the child, before `exec`, what
//! Python's `close_fds=True` does: the child gets `/dev/null` as stdin, the parent's
//! stdout and stderr, its channel on descriptor 3, and nothing else, whatever the
//! parent holds without close-on-exec.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use crate::process::settings::CHANNEL_FD;
use crate::process::sys::ChildProcess;

/// The program a worker runs: this one. `/proc/self/exe` still names this
/// executable if its file was replaced or deleted since it started (a rebuild during a
/// test run), where the path would start another program.
const SELF_EXE: &CStr = c"/proc/self/exe";

/// Starts `program` (`SELF_EXE` unless a test says otherwise) as a child with the
/// arguments `args` (`argv[0]` first), the environment `env`, and `channel` as its
/// descriptor 3.
pub(crate) fn spawn(
    program: Option<&CStr>,
    args: &[&OsStr],
    env: &[(OsString, OsString)],
    channel: OwnedFd,
) -> io::Result<ChildProcess> {
    // The file actions below put the channel on 3 and close everything from 4 up: the
    // channel must not already sit where they write.
    let channel = if channel.as_raw_fd() <= CHANNEL_FD {
        // SAFETY: F_DUPFD_CLOEXEC duplicates an open descriptor onto the lowest free
        // number >= 4; no memory is involved.
        let moved = unsafe { libc::fcntl(channel.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 4) };
        if moved == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `moved` was just created and nothing else owns it.
        unsafe { OwnedFd::from_raw_fd(moved) }
    } else {
        channel
    };
    let args: Vec<CString> = args
        .iter()
        .map(|arg| c_string(arg.as_bytes()))
        .collect::<io::Result<_>>()?;
    let mut argv: Vec<*mut libc::c_char> = args.iter().map(|arg| arg.as_ptr().cast_mut()).collect();
    argv.push(std::ptr::null_mut());
    let env: Vec<CString> = env
        .iter()
        .filter_map(|(key, value)| {
            let mut entry = key.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            // A variable with a NUL byte cannot be passed; leave it out.
            CString::new(entry).ok()
        })
        .collect();
    let mut envp: Vec<*mut libc::c_char> =
        env.iter().map(|entry| entry.as_ptr().cast_mut()).collect();
    envp.push(std::ptr::null_mut());

    let actions = FileActions::new()?;
    actions.check(
        // SAFETY: `actions` is initialised; the path is NUL-terminated and static.
        unsafe {
            libc::posix_spawn_file_actions_addopen(
                actions.as_mut_ptr(),
                0,
                c"/dev/null".as_ptr(),
                libc::O_RDONLY,
                0,
            )
        },
    )?;
    actions.check(
        // SAFETY: `actions` is initialised; the descriptor stays open until the spawn
        // returns (it is owned by `channel`, dropped after).
        unsafe {
            libc::posix_spawn_file_actions_adddup2(
                actions.as_mut_ptr(),
                channel.as_raw_fd(),
                CHANNEL_FD,
            )
        },
    )?;
    actions.check(
        // SAFETY: `actions` is initialised.
        unsafe {
            libc::posix_spawn_file_actions_addclosefrom_np(actions.as_mut_ptr(), CHANNEL_FD + 1)
        },
    )?;
    let attributes = Attributes::new()?;

    let mut pid: libc::pid_t = 0;
    let mut result = attributes.spawn(
        &mut pid,
        program.unwrap_or(SELF_EXE),
        &actions,
        &argv,
        &envp,
    );
    if result == libc::ENOENT && program.is_none() {
        // No /proc: the executable's path, as the kernel reported it at start-up.
        let path = std::env::current_exe()?;
        let path = c_string(path.as_os_str().as_bytes())?;
        result = attributes.spawn(&mut pid, &path, &actions, &argv, &envp);
    }
    drop(channel); // this process's copy: the worker's death must show as end-of-file
    match result {
        0 => Ok(ChildProcess::new(pid)),
        error => Err(io::Error::from_raw_os_error(error)),
    }
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::other("a NUL byte in a worker's argument"))
}

/// `posix_spawn_file_actions_t`, destroyed on drop.
struct FileActions(std::cell::UnsafeCell<libc::posix_spawn_file_actions_t>);

impl FileActions {
    fn new() -> io::Result<Self> {
        // SAFETY: an all-zero value is a valid place for the init call to write to.
        let actions = FileActions(std::cell::UnsafeCell::new(unsafe { std::mem::zeroed() }));
        // SAFETY: initialises the value in place; it is destroyed only if this succeeds
        // (a failed init leaves nothing to destroy, and `Drop` is not reached: the
        // value is forgotten below).
        let result = unsafe { libc::posix_spawn_file_actions_init(actions.as_mut_ptr()) };
        if result != 0 {
            std::mem::forget(actions);
            return Err(io::Error::from_raw_os_error(result));
        }
        Ok(actions)
    }

    fn as_mut_ptr(&self) -> *mut libc::posix_spawn_file_actions_t {
        self.0.get()
    }

    fn check(&self, result: i32) -> io::Result<()> {
        match result {
            0 => Ok(()),
            error => Err(io::Error::from_raw_os_error(error)),
        }
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once, here.
        unsafe { libc::posix_spawn_file_actions_destroy(self.as_mut_ptr()) };
    }
}

/// `posix_spawnattr_t` with an empty signal mask and `SIGPIPE` at its default, as
/// std's `Command` sets them (a worker must not inherit a caller thread's blocked
/// signals or an ignored `SIGPIPE`); destroyed on drop.
struct Attributes(std::cell::UnsafeCell<libc::posix_spawnattr_t>);

impl Attributes {
    fn new() -> io::Result<Self> {
        // SAFETY: an all-zero value is a valid place for the init call to write to.
        let attributes = Attributes(std::cell::UnsafeCell::new(unsafe { std::mem::zeroed() }));
        // SAFETY: initialises the value in place (see `FileActions::new`).
        let result = unsafe { libc::posix_spawnattr_init(attributes.0.get()) };
        if result != 0 {
            std::mem::forget(attributes);
            return Err(io::Error::from_raw_os_error(result));
        }
        // SAFETY: `sigset_t` values are initialised by sigemptyset before use; the
        // attribute calls read them and the initialised attributes.
        let result = unsafe {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            let mut pipe: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut pipe);
            libc::sigaddset(&mut pipe, libc::SIGPIPE);
            let flags =
                (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short;
            let mut result = libc::posix_spawnattr_setsigmask(attributes.0.get(), &empty);
            if result == 0 {
                result = libc::posix_spawnattr_setsigdefault(attributes.0.get(), &pipe);
            }
            if result == 0 {
                result = libc::posix_spawnattr_setflags(attributes.0.get(), flags);
            }
            result
        };
        match result {
            0 => Ok(attributes),
            error => Err(io::Error::from_raw_os_error(error)),
        }
    }

    fn spawn(
        &self,
        pid: &mut libc::pid_t,
        program: &CStr,
        actions: &FileActions,
        argv: &[*mut libc::c_char],
        envp: &[*mut libc::c_char],
    ) -> i32 {
        // SAFETY: every pointer is valid for the call: `pid` to write, the program path,
        // the initialised actions and attributes, and NULL-terminated `argv`/`envp`
        // arrays of NUL-terminated strings that the caller keeps alive until it
        // returns.
        unsafe {
            libc::posix_spawn(
                pid,
                program.as_ptr(),
                actions.as_mut_ptr(),
                self.0.get(),
                argv.as_ptr(),
                envp.as_ptr(),
            )
        }
    }
}

impl Drop for Attributes {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once, here.
        unsafe { libc::posix_spawnattr_destroy(self.0.get()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_child_gets_its_channel_on_3_its_environment_and_no_other_descriptor() {
        // A pipe without close-on-exec: a plain fork and exec would hand it on.
        let mut ends = [0; 2];
        // SAFETY: `ends` has room for the two descriptors pipe writes.
        assert_eq!(unsafe { libc::pipe(ends.as_mut_ptr()) }, 0);
        // SAFETY: both were just created and are owned only here.
        let _pipe = unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };

        let (parent, child) = UnixStream::pair().expect("pair");
        let script = "echo \"X=$X Y=${Y-unset}\" >&3; ls /proc/self/fd >&3; \
                      readlink /proc/self/fd/0 >&3";
        let mut process = spawn(
            Some(c"/bin/sh"),
            &["sh".as_ref(), "-c".as_ref(), script.as_ref()],
            &[
                ("X".into(), "1".into()),
                ("PATH".into(), std::env::var_os("PATH").unwrap_or_default()),
                ("BAD\0".into(), "x".into()),
            ],
            OwnedFd::from(child),
        )
        .expect("spawn");
        let ended = process.wait().expect("wait");
        assert_eq!(ended.exit_code, Some(0));
        let mut output = String::new();
        (&parent).read_to_string(&mut output).expect("read");
        let mut lines = output.lines();
        assert_eq!(lines.next(), Some("X=1 Y=unset"));
        let mut fds: Vec<u32> = lines
            .by_ref()
            .take_while(|line| line.parse::<u32>().is_ok())
            .map(|line| line.parse().expect("fd"))
            .collect();
        fds.sort_unstable();
        // 0-3 and the one `ls` opened to list the directory.
        assert_eq!(fds, [0, 1, 2, 3, 4], "{output}");
        assert!(output.ends_with("/dev/null\n"), "{output}");
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let (_parent, child) = UnixStream::pair().expect("pair");
        let error = spawn(
            Some(c"/no/such/program"),
            &["x".as_ref()],
            &[],
            OwnedFd::from(child),
        )
        .expect_err("no program");
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }
}
