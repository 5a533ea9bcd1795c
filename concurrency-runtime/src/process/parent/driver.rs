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
//! it (see `queue::Ticket`). A worker that does not react (stopped, or stuck in the
//! middle of writing an answer) is stopped by the driver: once the oldest unanswered
//! task has been cancelled for `GRACE`, the driver freezes the worker (`SIGSTOP`),
//! reads everything it wrote, and if that task's answer is still not complete the
//! worker cannot have started the next one, so killing it touches no other task.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cancel_line::Wake;
use super::handle::{self, WorkerHandle};
use super::queue::Job;
use super::slots::Pool;
use crate::error::TaskError;
use crate::process::protocol::{self, FrameError, Response};
use crate::process::sys;

/// Most requests a driver has sent to its worker and not had answered.
const MAX_IN_FLIGHT: usize = 64;

/// Most bytes of requests in flight to one worker, beyond the first request (sent
/// whatever its size): a fair share of the queue, not all of it.
const MAX_BYTES_IN_FLIGHT: usize = 1 << 20;

/// How long a cancelled task's worker has to stop it itself before the driver does.
const GRACE: Duration = Duration::from_millis(50);

/// How long the driver waits for a worker it sent `SIGSTOP` to stop.
const STOP_WAIT: Duration = Duration::from_millis(100);

/// A request sent (or being sent) to the worker, not answered yet.
struct InFlight {
    id: u64,
    job: Job,
}

struct Driver<'p> {
    pool: &'p Pool,
    wake: Arc<Wake>,
    worker: Option<WorkerHandle>,
    in_flight: VecDeque<InFlight>,
    /// How many requests at the front of `in_flight` are fully written ...
    written: usize,
    /// ... and how many bytes of the next one.
    partial: usize,
    /// Whether the channel may take more bytes (it did not refuse since it was last
    /// reported writable).
    writable: bool,
    /// The oldest unanswered request, once it was cancelled: when its worker is stopped
    /// if it has not answered.
    grace: Option<(u64, Instant)>,
    /// Requests that never started, for the queue.
    returned: Vec<Job>,
}

/// The driver loop of one worker slot. Never returns.
pub(crate) fn drive(pool: &Pool, slot: usize, wake: Arc<Wake>) {
    let mut driver = Driver {
        pool,
        wake,
        worker: None,
        in_flight: VecDeque::new(),
        written: 0,
        partial: 0,
        writable: true,
        grace: None,
        returned: Vec::new(),
    };
    loop {
        let jobs = pool.queue.wait_for_jobs(MAX_IN_FLIGHT, MAX_BYTES_IN_FLIGHT);
        driver.worker = match pool.take_parked(slot) {
            Some(worker) => Some(worker),
            None => match WorkerHandle::spawn(&pool.blueprint, Arc::clone(&driver.wake)) {
                Ok(worker) => {
                    pool.set_pid(slot, Some(worker.process.id()));
                    Some(worker)
                }
                Err(error) => {
                    for job in jobs {
                        job.ticket
                            .finish(Err(TaskError::spawn_failed(job.name, error.to_string())));
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
                let _ = worker.reap();
            }
            Some(worker) => pool.park(slot, Some(worker)),
            None => {
                pool.set_pid(slot, None);
                pool.park(slot, None);
            }
        }
        pool.queue.requeue(driver.returned.drain(..));
    }
}

impl Driver<'_> {
    /// Sends `jobs` (those not cancelled) after the requests in flight.
    fn add(&mut self, jobs: Vec<Job>) {
        let Some(worker) = self.worker.as_mut() else {
            self.returned.extend(jobs);
            return;
        };
        for mut job in jobs {
            let id = worker.next_id();
            if !job.ticket.attach(&worker.line, id) {
                continue; // cancelled while queued: never sent
            }
            protocol::set_request_id(&mut job.frame, id);
            self.in_flight.push_back(InFlight { id, job });
        }
    }

    /// Streams requests and answers until nothing is in flight and the queue has
    /// nothing more for this driver, or the worker is gone.
    fn run(&mut self) {
        while let Some(worker) = &self.worker {
            if self.in_flight.is_empty() {
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
            if !worker.retiring && self.in_flight.len() <= MAX_IN_FLIGHT / 2 {
                let room = MAX_IN_FLIGHT - self.in_flight.len();
                let more = self.pool.queue.take_more(room, MAX_BYTES_IN_FLIGHT);
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
                self.receive();
            }
            self.watch_front();
        }
        // The worker is gone; what is left in flight never started.
        self.written = 0;
        self.partial = 0;
        self.writable = true;
        self.returned
            .extend(self.in_flight.drain(..).map(|entry| entry.job));
    }

    /// Writes as much of the unsent requests as the channel takes now.
    fn write(&mut self) {
        let Some(worker) = &self.worker else { return };
        if self.written == self.in_flight.len() {
            return;
        }
        let slices: Vec<IoSlice<'_>> = self
            .in_flight
            .iter()
            .skip(self.written)
            .take(64)
            .enumerate()
            .map(|(index, entry)| {
                let skip = if index == 0 { self.partial } else { 0 };
                IoSlice::new(&entry.job.frame[skip..])
            })
            .collect();
        let total: usize = slices.iter().map(|slice| slice.len()).sum();
        // An error means the worker is gone: the read that follows sees it.
        let Ok(mut sent) = worker.write(&slices) else {
            self.writable = false;
            return;
        };
        drop(slices);
        self.writable = sent == total;
        while sent > 0 {
            let left = self.in_flight[self.written].job.frame.len() - self.partial;
            if sent >= left {
                sent -= left;
                self.written += 1;
                self.partial = 0;
            } else {
                self.partial += sent;
                sent = 0;
            }
        }
    }

    /// Waits for the channel (an answer, or room for more requests), a wake-up, or the
    /// grace of a cancelled task to run out; spins briefly first. Returns what is
    /// ready on the channel and on the wake-up.
    fn wait(&self) -> [i16; 2] {
        let Some(worker) = &self.worker else {
            return [0; 2];
        };
        let mut events = libc::POLLIN;
        if self.written < self.in_flight.len() {
            events |= libc::POLLOUT;
        }
        let deadline = self
            .grace
            .map(|(_, at)| at.saturating_duration_since(Instant::now()));
        let started = Instant::now();
        loop {
            let spinning = started.elapsed() < handle::SPIN_FOR_ANSWER;
            let timeout = if spinning {
                Some(Duration::ZERO)
            } else {
                deadline
            };
            let ready = sys::poll(
                [(worker.channel(), events), (self.wake.fd(), libc::POLLIN)],
                timeout,
            )
            .unwrap_or([0; 2]);
            if ready != [0; 2] || !spinning {
                return ready;
            }
            std::hint::spin_loop();
        }
    }

    /// Reads and delivers what the worker answered; handles its death.
    fn receive(&mut self) {
        let Some(worker) = self.worker.as_mut() else {
            return;
        };
        let alive = worker.read().unwrap_or(false);
        let max_frame = self.pool.blueprint.config.max_frame_bytes;
        loop {
            let Some(worker) = self.worker.as_mut() else {
                return;
            };
            match worker.next_response(max_frame) {
                Ok(Some(response)) => self.answered(response),
                Ok(None) => break,
                Err(FrameError::TooLarge { .. } | FrameError::Closed | FrameError::Io(_)) => {
                    self.untrusted(|name| {
                        handle::too_large(name, "the worker's response", max_frame)
                    });
                    return;
                }
            }
        }
        if !alive {
            self.died();
        }
    }

    /// One answer of the worker, for the oldest request in flight.
    fn answered(&mut self, response: Response) {
        let matches = self.written > 0
            && self
                .in_flight
                .front()
                .is_some_and(|front| front.id == response.id);
        if !matches {
            self.untrusted(|name| {
                TaskError::protocol(name, "malformed response from the worker".into())
            });
            return;
        }
        let Some(entry) = self.in_flight.pop_front() else {
            return;
        };
        self.written -= 1;
        if self.grace.is_some_and(|(id, _)| id == entry.id) {
            self.grace = None;
        }
        if response.status & protocol::RETIRING != 0
            && let Some(worker) = self.worker.as_mut()
        {
            worker.retiring = true;
        }
        if response.status & !protocol::RETIRING == protocol::RETIRED {
            self.returned.push(entry.job); // it did not run
            return;
        }
        let max_frame = self.pool.blueprint.config.max_frame_bytes;
        entry
            .job
            .ticket
            .finish(handle::outcome(entry.job.name, response, max_frame));
    }

    /// The worker's channel ended: it died (or closed it). The oldest request is the
    /// one it was running, if it was sent whole; the others never started.
    fn died(&mut self) {
        let Some(worker) = self.worker.take() else {
            return;
        };
        match self.in_flight.front() {
            Some(_) if self.written > 0 => {
                if let Some(front) = self.in_flight.pop_front() {
                    self.written -= 1;
                    let error = worker.crashed(front.job.name);
                    front.job.ticket.finish(Err(error));
                }
            }
            _ => drop(worker.reap()),
        }
        self.grace = None;
    }

    /// The worker broke the protocol: it is killed. The oldest request fails with
    /// `error`; the others that were sent whole may have run, so they fail too rather
    /// than run twice; the rest go back to the queue.
    fn untrusted(&mut self, error: impl Fn(&'static str) -> TaskError) {
        if let Some(worker) = self.worker.take() {
            worker.kill();
        }
        let sent = std::mem::take(&mut self.written);
        for (index, entry) in self.in_flight.drain(..sent).enumerate() {
            let failure = if index == 0 {
                error(entry.job.name)
            } else {
                TaskError::protocol(
                    entry.job.name,
                    "its worker was replaced after a protocol error while this task was sent \
                     to it; the task may have run"
                        .into(),
                )
            };
            entry.job.ticket.finish(Err(failure));
        }
        self.grace = None;
    }

    /// Starts the grace of the oldest request once it is cancelled, and stops a worker
    /// that let it run out.
    fn watch_front(&mut self) {
        let Some(front) = self.in_flight.front() else {
            self.grace = None;
            return;
        };
        if !front.job.ticket.is_cancelled() {
            self.grace = None;
            return;
        }
        match self.grace {
            Some((id, at)) if id == front.id => {
                if Instant::now() >= at {
                    self.stop_unresponsive();
                }
            }
            _ => self.grace = Some((front.id, Instant::now() + GRACE)),
        }
    }

    /// The oldest request was cancelled and its worker did not stop it: freeze the
    /// worker, read what it wrote, and kill it if that request is still unanswered
    /// (then it never finished it, so it started nothing after it).
    fn stop_unresponsive(&mut self) {
        let (Some(worker), Some(front)) = (&self.worker, self.in_flight.front()) else {
            return;
        };
        let id = front.id;
        worker.process.signal(libc::SIGSTOP);
        // A worker stuck in the kernel may take a moment; it is killed either way.
        let _ = worker.process.wait_stopped(STOP_WAIT);
        self.receive();
        let Some(worker) = self.worker.take() else {
            return; // it died meanwhile (handled by `receive`)
        };
        if self.in_flight.front().is_none_or(|front| front.id != id) {
            // It had answered: let it go on.
            worker.process.signal(libc::SIGCONT);
            self.worker = Some(worker);
            self.grace = None;
            return;
        }
        worker.kill();
        if let Some(front) = self.in_flight.pop_front() {
            front
                .job
                .ticket
                .finish(Err(TaskError::cancelled(front.job.name)));
        }
        self.grace = None;
    }
}
