//! The driver of one worker slot: a thread that streams the queue's tasks to its
//! worker and its answers back, and replaces the worker when it dies.
//!
//! The driver never blocks on its worker: the channel is non-blocking, and one `poll`
//! waits for the worker to take more requests, to answer, or for a task to be
//! cancelled. Requests are written back to back (up to `MAX_IN_FLIGHT`) while answers
//! are read, so a worker never idles between queued tasks and large frames cannot
//! deadlock (the driver reads while it writes). The worker runs requests in order and
//! answers each before it starts the next: if it dies, the oldest unanswered request
//! is the one it was running, and the ones behind it never started (they go back to
//! the queue).
//!
//! Cancelling a task writes its id to the worker's cancel line, and the worker stops
//! it (see `queue::Control`). A worker that does not react (stopped, or stuck in the
//! middle of writing an answer) is stopped by the driver: once the oldest unanswered
//! task has been cancelled for `GRACE`, the driver freezes the worker (`SIGSTOP`),
//! reads everything it wrote, and if that task's answer is still not complete the
//! worker cannot have started the next one, so killing it touches no other task.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cancel_line::{self, Wake};
use super::handle::{self, WorkerHandle};
use super::queue::{Answer, Job, Wakes};
use super::slots::Pool;
use crate::error::TaskError;
use crate::process::protocol::{self, FrameError, REQUEST_HEADER, Response};
use crate::process::sys;

/// Most requests a driver has sent to its worker and not had answered.
const MAX_IN_FLIGHT: usize = 256;

/// Most bytes of requests in flight to one worker, beyond the first request (sent
/// whatever its size): a fair share of the queue, not all of it.
const MAX_BYTES_IN_FLIGHT: usize = 1 << 20;

/// A request whose body is at most this long is copied into the driver's buffer to be
/// written with others; a larger one is written from where it is.
const SMALL_REQUEST: usize = 4096;

/// The most bytes of small requests one write gathers.
const OUTBOX: usize = 64 << 10;

/// How long a driver with many requests in flight sleeps at most before it looks at
/// the answers (it asks to be woken half-way through them; this bounds how long an
/// answer waits when the task after it is long).
const BATCH_WAIT: Duration = Duration::from_micros(200);

/// A `poll` result bit (unused by `poll` itself) for answers waiting in the ring.
const RING: i16 = 0x4000;

/// How long a cancelled task's worker has to stop it itself before the driver does.
const GRACE: Duration = Duration::from_millis(50);

/// How long the driver waits for a worker it sent `SIGSTOP` to stop.
const STOP_WAIT: Duration = Duration::from_millis(100);

/// A request sent (or being sent) to the worker, not answered yet.
struct InFlight {
    id: u64,
    /// The frame's length and id, written before the job's body.
    header: [u8; REQUEST_HEADER],
    job: Job,
}

impl InFlight {
    fn len(&self) -> usize {
        REQUEST_HEADER + self.job.body().len()
    }
}

/// What a driver has sent to its worker and not had answered, and what it owes the
/// callers.
#[derive(Default)]
struct Flight {
    entries: VecDeque<InFlight>,
    /// How many requests at the front of `entries` are fully written ...
    written: usize,
    /// ... and how many bytes of the next one.
    partial: usize,
    /// The oldest unanswered request, once it was cancelled: when its worker is stopped
    /// if it has not answered.
    grace: Option<(u64, Instant)>,
    /// Requests that never started, for the queue.
    returned: Vec<Job>,
    /// The callers to wake for the answers delivered since the last wake-up.
    wakes: Wakes,
}

struct Driver<'p> {
    pool: &'p Pool,
    slot: usize,
    wake: Arc<Wake>,
    worker: Option<WorkerHandle>,
    flight: Flight,
    /// Whether the channel may take more bytes (it did not refuse since it was last
    /// reported writable).
    writable: bool,
    /// Small requests gathered for one write.
    outbox: Vec<u8>,
}

/// The driver loop of one worker slot. Never returns.
pub(crate) fn drive(pool: &Pool, slot: usize, wake: Arc<Wake>) {
    let mut driver = Driver {
        pool,
        slot,
        wake,
        worker: None,
        flight: Flight::default(),
        writable: true,
        outbox: Vec::new(),
    };
    loop {
        let jobs = pool.queue.wait_for_jobs(MAX_IN_FLIGHT, MAX_BYTES_IN_FLIGHT);
        driver.worker = match pool.take_parked(slot) {
            Some(worker) => Some(worker),
            None => match WorkerHandle::spawn(
                &pool.blueprint,
                Arc::clone(&driver.wake),
                Arc::clone(&pool.slots[slot].last_id),
            ) {
                Ok(worker) => {
                    pool.set_pid(slot, Some(worker.process.id()));
                    cancel_line::set_line(slot, Some(Arc::clone(&worker.line)));
                    Some(worker)
                }
                Err(error) => {
                    for job in jobs {
                        job.fail(TaskError::spawn_failed(job.name(), error.to_string()));
                    }
                    pool.queue.idle();
                    continue;
                }
            },
        };
        driver.add(jobs);
        driver.run();
        pool.queue.idle();
        match driver.worker.take() {
            Some(worker) if worker.retiring => {
                pool.set_pid(slot, None);
                cancel_line::set_line(slot, None);
                let _ = worker.reap();
            }
            Some(worker) => pool.park(slot, Some(worker)),
            None => {
                pool.set_pid(slot, None);
                cancel_line::set_line(slot, None);
                pool.park(slot, None);
            }
        }
        pool.queue.requeue(driver.flight.returned.drain(..));
    }
}

impl Driver<'_> {
    /// Sends `jobs` (those not cancelled) after the requests in flight.
    fn add(&mut self, jobs: Vec<Job>) {
        let Some(worker) = self.worker.as_mut() else {
            self.flight.returned.extend(jobs);
            return;
        };
        for job in jobs {
            let id = worker.next_id();
            if !job.attach(self.slot, id) {
                continue; // cancelled while queued: never sent, and nobody waits for it
            }
            let header = protocol::request_header(id, job.body().len());
            self.flight.entries.push_back(InFlight { id, header, job });
        }
    }

    /// Streams requests and answers until nothing is in flight and the queue has
    /// nothing more for this driver, or the worker is gone.
    fn run(&mut self) {
        while let Some(worker) = &self.worker {
            let in_flight = self.flight.entries.len();
            if in_flight == 0 {
                // Idle: more work, or back to the pool's idle drivers.
                if worker.retiring {
                    return;
                }
                let more = self
                    .pool
                    .queue
                    .take_idle(MAX_IN_FLIGHT, MAX_BYTES_IN_FLIGHT);
                if more.is_empty() {
                    return;
                }
                self.add(more);
                continue;
            }
            if !worker.retiring && in_flight <= MAX_IN_FLIGHT / 2 {
                let more = self
                    .pool
                    .queue
                    .take_more(MAX_IN_FLIGHT - in_flight, MAX_BYTES_IN_FLIGHT);
                self.add(more);
            }
            if self.writable {
                self.write();
            }
            let [channel, wake] = self.wait();
            if wake != 0 {
                self.wake.drain();
            }
            if channel & libc::POLLOUT != 0 {
                self.writable = true;
            }
            if channel & !libc::POLLOUT != 0 {
                self.receive(channel & !(libc::POLLOUT | RING) != 0);
            }
            // The callers of everything delivered by this read, each once.
            self.flight.wakes.wake();
            self.watch_front();
        }
        // The worker is gone; what is left in flight never started.
        let flight = &mut self.flight;
        flight.written = 0;
        flight.partial = 0;
        self.writable = true;
        flight
            .returned
            .extend(flight.entries.drain(..).map(|entry| entry.job));
    }

    /// Writes as much of the unsent requests as the channel takes now, in one system
    /// call: small requests copied back to back into one buffer (the kernel's cost is
    /// per slice as much as per byte), a large one from where it is.
    fn write(&mut self) {
        let Some(worker) = &self.worker else { return };
        let flight = &mut self.flight;
        if flight.written == flight.entries.len() {
            return;
        }
        let outbox = &mut self.outbox;
        outbox.clear();
        let mut large = None;
        for (index, entry) in flight.entries.iter().skip(flight.written).enumerate() {
            let skip = if index == 0 { flight.partial } else { 0 };
            let body = entry.job.body();
            if body.len() > SMALL_REQUEST {
                if outbox.is_empty() {
                    large = Some((&entry.header[skip.min(REQUEST_HEADER)..], body, skip));
                }
                break;
            }
            let frame_start = outbox.len();
            outbox.extend_from_slice(&entry.header);
            outbox.extend_from_slice(body);
            outbox.drain(frame_start..frame_start + skip);
            if outbox.len() >= OUTBOX {
                break;
            }
        }
        let written = match large {
            Some((header, body, skip)) => {
                let body = &body[skip.saturating_sub(REQUEST_HEADER)..];
                worker.write(&[IoSlice::new(header), IoSlice::new(body)])
            }
            None => worker.write(&[IoSlice::new(outbox)]),
        };
        let total = match large {
            Some((header, body, skip)) => {
                header.len() + body.len() - skip.saturating_sub(REQUEST_HEADER)
            }
            None => outbox.len(),
        };
        // An error means the worker is gone (the read that follows sees it) or the
        // channel is full.
        let Ok(mut sent) = written else {
            self.writable = false;
            return;
        };
        self.writable = sent == total;
        while sent > 0 {
            let left = flight.entries[flight.written].len() - flight.partial;
            if sent >= left {
                sent -= left;
                flight.written += 1;
                flight.partial = 0;
            } else {
                flight.partial += sent;
                sent = 0;
            }
        }
    }

    /// Waits for an answer, room on the channel for more requests, a wake-up, or the
    /// grace of a cancelled task to run out. With only a request or two in flight it
    /// spins briefly first, watching the answer ring (a trivial task answers within
    /// microseconds, and a sleep and wake-up costs more), then sleeps until the first
    /// answer. With more in flight, it sleeps until the worker has answered half of
    /// them (or runs dry), for at most `BATCH_WAIT`: the answers come in batches, and
    /// the cores are left to the workers. Returns what is ready on the channel (with
    /// `RING` for answers in the ring) and on the wake-up.
    fn wait(&self) -> [i16; 2] {
        const ANSWERS: [i16; 2] = [RING, 0];
        let Some(worker) = &self.worker else {
            return [0; 2];
        };
        if worker.has_answers() {
            return ANSWERS;
        }
        let flight = &self.flight;
        let mut events = libc::POLLIN;
        if flight.written < flight.entries.len() {
            events |= libc::POLLOUT;
        }
        let fds = [(worker.channel(), events), (self.wake.fd(), libc::POLLIN)];
        let few = flight.entries.len() <= 2;
        if few {
            // Yielding between looks: the worker that is to answer may need this core.
            let started = Instant::now();
            for round in 0u32.. {
                if started.elapsed() >= handle::SPIN_FOR_ANSWER {
                    break;
                }
                for _ in 0..16 {
                    if worker.has_answers() {
                        return ANSWERS;
                    }
                    handle::pause(round);
                }
                let ready = sys::poll(fds, Some(Duration::ZERO)).unwrap_or([0; 2]);
                if ready != [0; 2] {
                    return ready;
                }
            }
        }
        // The answer to be woken at: among the requests written whole.
        let mut timeout = flight
            .grace
            .map(|(_, at)| at.saturating_duration_since(Instant::now()));
        if flight.written > 0 {
            // Half-way, to refill the worker before it runs dry; at the end when
            // there is nothing to refill it with.
            let at = if few {
                0
            } else if self.pool.queue.is_empty() {
                flight.written - 1
            } else {
                flight.written / 2
            };
            let id = flight.entries[at.min(flight.written - 1)].id;
            if !worker.before_sleep(id) {
                return ANSWERS;
            }
            if !few {
                timeout = Some(timeout.map_or(BATCH_WAIT, |grace| grace.min(BATCH_WAIT)));
            }
        }
        let ready = sys::poll(fds, timeout).unwrap_or([0; 2]);
        worker.awake();
        if worker.has_answers() {
            [ready[0] | RING, ready[1]]
        } else {
            ready
        }
    }

    /// Reads and delivers what the worker answered; handles its death. The channel
    /// (wake-ups, and its end when the worker dies) is read only if `channel_ready`.
    fn receive(&mut self, channel_ready: bool) {
        let Some(worker) = self.worker.as_mut() else {
            return;
        };
        let alive = match worker.read(channel_ready) {
            Ok(alive) => alive,
            Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
                self.untrusted(|name| TaskError::protocol(name, error.to_string()));
                return;
            }
            Err(_) => false,
        };
        let max_frame = self.pool.blueprint.config.max_frame_bytes;
        loop {
            let Some(worker) = self.worker.as_mut() else {
                return;
            };
            let broken = match worker.input.next_frame(max_frame) {
                Ok(None) => break,
                Ok(Some(body)) => match protocol::parse_response(body) {
                    Some(mut response) => {
                        response.ran.pid = worker.process.id();
                        !self
                            .flight
                            .answered(&response, &mut worker.retiring, max_frame)
                    }
                    None => true,
                },
                Err(FrameError { .. }) => {
                    self.untrusted(|name| {
                        handle::too_large(name, "the worker's response", max_frame)
                    });
                    return;
                }
            };
            if broken {
                self.untrusted(|name| {
                    TaskError::protocol(name, "malformed response from the worker".into())
                });
                return;
            }
        }
        if !alive {
            self.died();
        }
    }

    /// The worker's channel ended: it died (or closed it). The oldest request is the
    /// one it was running, if it was sent whole; the others never started.
    fn died(&mut self) {
        let Some(worker) = self.worker.take() else {
            return;
        };
        let flight = &mut self.flight;
        match flight.entries.front() {
            Some(_) if flight.written > 0 => {
                if let Some(front) = flight.entries.pop_front() {
                    flight.written -= 1;
                    let error = worker.crashed(front.job.name());
                    front.job.fail(error);
                }
            }
            _ => drop(worker.reap()),
        }
        flight.grace = None;
    }

    /// The worker broke the protocol: it is killed. The oldest request fails with
    /// `error`; the others that were sent whole may have run, so they fail too rather
    /// than run twice; the rest go back to the queue.
    fn untrusted(&mut self, error: impl Fn(&'static str) -> TaskError) {
        if let Some(worker) = self.worker.take() {
            worker.kill();
        }
        let flight = &mut self.flight;
        let sent = std::mem::take(&mut flight.written);
        for (index, entry) in flight.entries.drain(..sent).enumerate() {
            let name = entry.job.name();
            let failure = if index == 0 {
                error(name)
            } else {
                TaskError::protocol(
                    name,
                    "its worker was replaced after a protocol error while this task was sent \
                     to it; the task may have run"
                        .into(),
                )
            };
            entry.job.fail(failure);
        }
        flight.grace = None;
    }

    /// Starts the grace of the oldest request once it is cancelled, and stops a worker
    /// that let it run out.
    fn watch_front(&mut self) {
        let flight = &mut self.flight;
        let Some(front) = flight.entries.front() else {
            flight.grace = None;
            return;
        };
        if !front.job.control().is_cancelled() {
            flight.grace = None;
            return;
        }
        match flight.grace {
            Some((id, at)) if id == front.id => {
                if Instant::now() >= at {
                    self.stop_unresponsive();
                }
            }
            _ => flight.grace = Some((front.id, Instant::now() + GRACE)),
        }
    }

    /// The oldest request was cancelled and its worker did not stop it: freeze the
    /// worker, read what it wrote, and kill it if that request is still unanswered
    /// (then it never finished it, so it started nothing after it).
    fn stop_unresponsive(&mut self) {
        let (Some(worker), Some(front)) = (&self.worker, self.flight.entries.front()) else {
            return;
        };
        let id = front.id;
        worker.process.signal(libc::SIGSTOP);
        // A worker stuck in the kernel may take a moment; it is killed either way.
        let _ = worker.process.wait_stopped(STOP_WAIT);
        self.receive(true);
        self.flight.wakes.wake();
        let Some(worker) = self.worker.take() else {
            return; // it died meanwhile (handled by `receive`)
        };
        if self
            .flight
            .entries
            .front()
            .is_none_or(|front| front.id != id)
        {
            // It had answered: let it go on.
            worker.process.signal(libc::SIGCONT);
            self.worker = Some(worker);
            self.flight.grace = None;
            return;
        }
        worker.kill();
        if let Some(front) = self.flight.entries.pop_front() {
            self.flight.written = self.flight.written.saturating_sub(1);
            front.job.fail(TaskError::cancelled(front.job.name()));
        }
        self.flight.grace = None;
    }
}

impl Flight {
    /// One answer of the worker, for the oldest request in flight; `false` if it is
    /// not that request's (the worker broke the protocol).
    fn answered(&mut self, response: &Response<'_>, retiring: &mut bool, max_frame: u64) -> bool {
        let matches = self.written > 0
            && self
                .entries
                .front()
                .is_some_and(|front| front.id == response.id);
        if !matches {
            return false;
        }
        let Some(entry) = self.entries.pop_front() else {
            return false;
        };
        self.written -= 1;
        if self.grace.is_some_and(|(id, _)| id == entry.id) {
            self.grace = None;
        }
        if response.status & protocol::RETIRING != 0 {
            *retiring = true;
        }
        if response.status & !protocol::RETIRING == protocol::RETIRED {
            self.returned.push(entry.job); // it did not run
            return true;
        }
        let answer = match handle::outcome(entry.job.name(), response, max_frame) {
            Ok(bytes) => Answer::Ok(bytes),
            Err(error) => Answer::Err(error),
        };
        entry.job.deliver(answer, response.ran, &mut self.wakes);
        true
    }
}
