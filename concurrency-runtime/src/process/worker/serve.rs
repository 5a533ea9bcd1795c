//! A worker's task loop: read a request, run it, answer, until the channel closes;
//! and the thread that applies cancellations from the parent.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use crate::error::panic_message;
use crate::kind::TaskKind;
use crate::observe;
use crate::process::answer_ring::AnswerRing;
use crate::process::protocol::{self, FrameBuffer};
use crate::process::registry::{self, EntryError};
use crate::process::settings::WorkerSettings;
use crate::process::shared_counter::SharedCounter;
use crate::process::{sys, wire};
use crate::sync::lock;

/// Where the worker is in its stream of requests; shared by the thread that runs them
/// and the one that waits on the cancel line. The line is only read with this lock
/// held, by either thread, so a cancellation is applied exactly once and never between
/// the task loop's look at it and its decision.
#[derive(Debug)]
struct Progress {
    /// The cancel line (non-blocking): ids of cancelled requests, 8 bytes each. (Shared
    /// with the thread that waits for it to be readable; read only with this lock held.)
    line: Arc<UnixStream>,
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
            match (&*self.line).read(&mut buffer) {
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

/// Waits for the cancel line to be readable, then applies what arrived (with the lock
/// held), until the parent closes the line. `watched` is the line, only polled here.
fn watch_cancellations(watched: &UnixStream, progress: &Mutex<Progress>) {
    loop {
        let ready = match sys::poll([(watched.as_fd(), libc::POLLIN)], None) {
            Ok([ready]) => ready,
            Err(_) => return,
        };
        if ready != 0 && !lock(progress).drain_line() {
            return;
        }
    }
}

/// When this worker retires (see `protocol::RETIRING`).
struct Limits {
    /// Tasks it runs at most (0: no limit) ...
    max_tasks: u64,
    /// ... and how many it ran.
    ran: u64,
    /// `/proc/self/statm` and the resident bytes past which it retires.
    memory: Option<(std::fs::File, u64)>,
    page_size: u64,
}

impl Limits {
    /// Counts a task that ran; whether the worker must retire after it.
    fn reached_after_task(&mut self) -> bool {
        self.ran += 1;
        if self.max_tasks > 0 && self.ran >= self.max_tasks {
            return true;
        }
        match &self.memory {
            Some((statm, limit)) => {
                resident_bytes(statm, self.page_size).is_none_or(|rss| rss > *limit)
            }
            None => false,
        }
    }
}

/// This process's resident memory, from `/proc/self/statm` (its second field counts
/// resident pages); `None` if it cannot be read (the worker then retires: a limit it
/// cannot check must not be ignored).
fn resident_bytes(statm: &std::fs::File, page_size: u64) -> Option<u64> {
    let mut buffer = [0u8; 128];
    let read = statm.read_at(&mut buffer, 0).ok()?;
    let text = std::str::from_utf8(&buffer[..read]).ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size)
}

/// Serves requests until the channel closes; the exit status, or why the worker
/// could not start serving.
pub(super) fn serve(
    channel: UnixStream,
    line: UnixStream,
    written: SharedCounter,
    answers: AnswerRing,
    memory: Option<std::fs::File>,
    settings: &WorkerSettings,
) -> Result<i32, String> {
    line.set_nonblocking(true)
        .map_err(|error| format!("could not set up its cancel line: {error}"))?;
    let line = Arc::new(line);
    let watched = Arc::clone(&line);
    let progress = Arc::new(Mutex::new(Progress {
        line,
        written,
        applied: 0,
        pending: Vec::new(),
        running: None,
        reached: 0,
        cancelled: Vec::new(),
    }));
    {
        let progress = Arc::clone(&progress);
        std::thread::Builder::new()
            .name("concurrency-cancel-line".into())
            .stack_size(64 * 1024)
            .spawn(move || watch_cancellations(&watched, &progress))
            .map_err(|error| format!("could not start its cancel-line thread: {error}"))?;
    }
    let mut limits = Limits {
        max_tasks: settings.max_tasks,
        ran: 0,
        memory: memory.map(|statm| (statm, settings.max_memory)),
        page_size: sys::page_size(),
    };
    // Requests come on the channel; answers go back through the ring, and the channel
    // carries only the wake-ups of a parent that sleeps.
    let mut output = RingWriter {
        ring: &answers,
        channel: &channel,
    };
    Ok(run_requests(
        &channel,
        &mut output,
        settings.max_frame,
        &progress,
        &mut limits,
    ))
}

/// Answers into the ring; a full ring is waited on (the parent empties it as it
/// reads), and a parent that sleeps is woken with one byte on the channel.
struct RingWriter<'a> {
    ring: &'a AnswerRing,
    channel: &'a UnixStream,
}

impl RingWriter<'_> {
    /// Publishes the whole response to request `id`; wakes the parent if it waits for
    /// this answer. An error means the parent is gone.
    fn answer(&mut self, response: &[u8], id: u64) -> io::Result<()> {
        self.write_all(response)?;
        if self.ring.answer_published(id) {
            self.wake()?;
        }
        Ok(())
    }

    /// No request is left to run: wakes the parent if it waits (for more answers, or
    /// to send more requests).
    fn idle(&mut self) -> io::Result<()> {
        if self.ring.going_idle() {
            self.wake()?;
        }
        Ok(())
    }

    fn wake(&self) -> io::Result<()> {
        sys::send_all(self.channel.as_fd(), &[1])
    }
}

impl Write for RingWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut waited = 0;
        loop {
            let published = self.ring.publish(bytes);
            if published > 0 || bytes.is_empty() {
                return Ok(published);
            }
            // Full: a sleeping parent is woken to make room; an awake one frees room
            // as it reads, and wakes this worker if it sleeps.
            if self.ring.full() {
                self.wake()?;
            }
            waited += 1;
            if waited <= 64 {
                std::hint::spin_loop();
            } else {
                self.ring.wait_for_room();
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How long a worker that ran out of requests looks for the next one before it sleeps:
/// a caller that awaits one task at a time sends the next within microseconds, and a
/// sleep and wake-up costs more on a small VM.
const SPIN_FOR_REQUESTS: std::time::Duration = std::time::Duration::from_micros(30);

/// Reads more requests into `input`: what came already, else (after looking for a
/// while, yielding the core to anyone who needs it) by sleeping until more come.
fn next_requests(input: &mut FrameBuffer, channel: &UnixStream) -> io::Result<usize> {
    let started = std::time::Instant::now();
    while started.elapsed() < SPIN_FOR_REQUESTS {
        match input.fill(&mut sys::NonBlocking(channel.as_fd())) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
            other => return other,
        }
    }
    input.fill(&mut &*channel)
}

fn run_requests(
    channel: &UnixStream,
    output: &mut RingWriter<'_>,
    max_frame: u64,
    progress: &Mutex<Progress>,
    limits: &mut Limits,
) -> i32 {
    // The requests read, and the response being written, reused from one request to
    // the next.
    let mut input = FrameBuffer::default();
    let mut response = Vec::new();
    let limit = usize::try_from(max_frame)
        .unwrap_or(usize::MAX)
        .saturating_add(8);
    let mut retiring = false;
    loop {
        let body = match input.next_frame(max_frame) {
            Ok(Some(body)) => body,
            Ok(None) => match output
                .idle()
                .and_then(|()| next_requests(&mut input, channel))
            {
                Ok(0) if input.is_empty() => return 0,
                Ok(0) => {
                    eprintln!("concurrency-runtime worker: the channel ended inside a request");
                    return 3;
                }
                Ok(_) => {
                    output.ring.busy();
                    continue;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    eprintln!("concurrency-runtime worker: could not read a request: {error}");
                    return 3;
                }
            },
            Err(error) => {
                eprintln!("concurrency-runtime worker: bad request frame: {error}");
                return 3;
            }
        };
        let Some(request) = protocol::parse_request(body) else {
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
            if !skip && !retiring {
                progress.running = Some(request.id);
            }
            skip
        };
        protocol::begin_response(&mut response);
        let mut times = (0, 0);
        let status = if skip {
            protocol::CANCELLED
        } else if retiring {
            protocol::RETIRED
        } else {
            let started = observe::worker_clock();
            let status = run_one(&request, &mut response, limit);
            times = (started, observe::worker_clock());
            // From here on, a cancellation finds the request finished and leaves it be.
            lock(progress).running = None;
            // Output the task printed goes to the inherited stdout/stderr, not here.
            let _ = std::io::stdout().flush();
            retiring = limits.reached_after_task();
            if retiring {
                status | protocol::RETIRING
            } else {
                status
            }
        };
        protocol::finish_response(&mut response, request.id, status);
        protocol::set_times(&mut response, times.0, times.1);
        if output.answer(&response, request.id).is_err() {
            return 4;
        }
    }
}

/// Runs one request's task, leaving its answer's payload in `response`; its status.
fn run_one(request: &protocol::Request<'_>, response: &mut Vec<u8>, limit: usize) -> u8 {
    let Some(entry) = registry::get(request.task) else {
        response.extend_from_slice(request.task.to_string().as_bytes());
        return protocol::UNKNOWN_TASK;
    };
    let ran = catch_unwind(AssertUnwindSafe(|| {
        TaskKind::Process.enter(|| (entry.run)(request.args, response, limit))
    }));
    let (status, message) = match ran {
        Ok(Ok(())) => return protocol::OK,
        Ok(Err(EntryError::Arguments(error))) => (protocol::ARGS_DECODE, error.to_string()),
        Ok(Err(EntryError::Result(wire::Error::TooLarge { .. }))) => {
            (protocol::TOO_LARGE, String::new())
        }
        Ok(Err(EntryError::Result(error))) => (protocol::RESULT_ENCODE, error.to_string()),
        Err(payload) => (protocol::PANICKED, panic_message(payload.as_ref())),
    };
    // Whatever part of a result was written is dropped; the message is cut to fit the
    // frame limit (a parent that got a frame over it could not trust this worker).
    protocol::begin_response(response);
    let room = limit.saturating_sub(response.len());
    let mut end = message.len().min(room);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    response.extend_from_slice(&message.as_bytes()[..end]);
    status
}
