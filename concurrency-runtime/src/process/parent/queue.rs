//! The queue of process tasks waiting for a worker, and each task's ticket: what
//! the caller and the driver that runs the task share.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::cancel_line::CancelLine;
use crate::error::TaskError;
use crate::sync::{lock, wait};

/// One task sent to the pool: its request frame (the id is set when it is sent) and
/// its ticket.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) name: &'static str,
    pub(crate) frame: Vec<u8>,
    pub(crate) ticket: Arc<Ticket>,
}

/// A task's outcome once its worker answered: the serialized result, or why not.
pub(crate) type Outcome = Result<Vec<u8>, TaskError>;

/// What the caller of a process task and the driver running it share: the outcome
/// when it arrives, the caller's waker, and the task's cancellation.
///
/// Once the job is sent to a worker, the ticket holds that worker's cancel line and
/// the request's id. Cancelling sends the id down the line, and the *worker* decides:
/// it skips the request if it has not started it, kills itself if it is running it,
/// and ignores the message if it has finished it. Only the worker knows which of the
/// requests sent to it runs at this instant, so only it can stop exactly this task
/// and never the next one. (If the worker does not react, the driver stops it; see
/// `driver.rs`.)
#[derive(Debug, Default)]
pub(crate) struct Ticket {
    state: Mutex<TicketState>,
}

#[derive(Debug, Default)]
struct TicketState {
    cancelled: bool,
    sent: Option<(Arc<CancelLine>, u64)>,
    outcome: Option<Outcome>,
    waker: Option<Waker>,
}

impl Ticket {
    /// Cancels the task: a queued task is never sent; a sent one is stopped by its
    /// worker (skipped, or the worker is killed if it is running it).
    pub(crate) fn cancel(&self) {
        let sent = {
            let mut state = lock(&self.state);
            state.cancelled = true;
            state.outcome = None;
            state.sent.take()
        };
        if let Some((line, id)) = sent {
            line.cancel(id);
        }
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        lock(&self.state).cancelled
    }

    /// Records that request `id` on the worker behind `line` is this task, before it
    /// is written; `false` if the task was cancelled (then it is not sent).
    pub(crate) fn attach(&self, line: &Arc<CancelLine>, id: u64) -> bool {
        let mut state = lock(&self.state);
        if state.cancelled {
            return false;
        }
        state.sent = Some((Arc::clone(line), id));
        true
    }

    /// The task is back in the queue (its worker died before it started): nothing to
    /// cancel on that worker any more.
    pub(crate) fn detach(&self) {
        lock(&self.state).sent = None;
    }

    /// Delivers the outcome and wakes the caller (unless the caller cancelled).
    pub(crate) fn finish(&self, outcome: Outcome) {
        let waker = {
            let mut state = lock(&self.state);
            state.sent = None;
            if state.cancelled {
                return;
            }
            state.outcome = Some(outcome);
            state.waker.take()
        };
        // Woken outside the lock: an executor may poll at once.
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The outcome, once it arrived.
    pub(crate) fn poll_outcome(&self, cx: &mut Context<'_>) -> Poll<Outcome> {
        let mut state = lock(&self.state);
        match state.outcome.take() {
            Some(outcome) => Poll::Ready(outcome),
            None => {
                if !state
                    .waker
                    .as_ref()
                    .is_some_and(|waker| waker.will_wake(cx.waker()))
                {
                    state.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

/// Tasks waiting for a worker, first come, first served.
#[derive(Debug)]
pub(crate) struct Queue {
    jobs: Mutex<Jobs>,
    available: Condvar,
    /// How many drivers share the queue (for each one's fair share).
    drivers: usize,
}

/// The queued jobs, and how many drivers have work.
#[derive(Debug)]
struct Jobs {
    queue: VecDeque<Job>,
    /// Drivers whose worker has requests in flight (see `Queue::take_more`).
    busy: usize,
}

impl std::ops::Deref for Jobs {
    type Target = VecDeque<Job>;
    fn deref(&self) -> &VecDeque<Job> {
        &self.queue
    }
}

impl std::ops::DerefMut for Jobs {
    fn deref_mut(&mut self) -> &mut VecDeque<Job> {
        &mut self.queue
    }
}

/// How long an idle driver looks for a new job before it sleeps: a caller that just
/// got its answer often submits its next task within microseconds, and a sleep and
/// wake-up costs 10-25 µs on a small VM.
const SPIN_FOR_JOBS: Duration = Duration::from_micros(50);

impl Queue {
    pub(crate) fn new(drivers: usize, first: Option<Job>) -> Self {
        Queue {
            jobs: Mutex::new(Jobs {
                queue: first.into_iter().collect(),
                busy: 0,
            }),
            available: Condvar::new(),
            drivers: drivers.max(1),
        }
    }

    pub(crate) fn push(&self, job: Job) {
        lock(&self.jobs).push_back(job);
        self.available.notify_one();
    }

    pub(crate) fn is_empty(&self) -> bool {
        lock(&self.jobs).is_empty()
    }

    /// Waits for work, then takes a fair share of the queue: at least one job, at most
    /// `room`. The driver counts as busy from then on, until it calls `idle`.
    pub(crate) fn wait_for_jobs(&self, room: usize, bytes: usize) -> Vec<Job> {
        let started = Instant::now();
        let mut jobs = lock(&self.jobs);
        while jobs.is_empty() && started.elapsed() < SPIN_FOR_JOBS {
            drop(jobs);
            std::hint::spin_loop();
            jobs = lock(&self.jobs);
        }
        while jobs.is_empty() {
            jobs = wait(&self.available, jobs);
        }
        jobs.busy += 1;
        self.share(&mut jobs, room, bytes)
    }

    /// A driver that `wait_for_jobs` made busy has nothing in flight any more.
    pub(crate) fn idle(&self) {
        let mut jobs = lock(&self.jobs);
        jobs.busy = jobs.busy.saturating_sub(1);
    }

    /// Takes jobs for a driver whose worker just became idle, without waiting: its share
    /// of the queue, at least one if there is one.
    pub(crate) fn take_idle(&self, room: usize, bytes: usize) -> Vec<Job> {
        let mut jobs = lock(&self.jobs);
        if jobs.is_empty() {
            return Vec::new();
        }
        self.share(&mut jobs, room, bytes)
    }

    /// Takes more jobs for a driver whose worker is busy, without waiting, so that its
    /// worker never waits between tasks: its share of the queue once every driver is
    /// busy and more than two jobs per driver wait, else nothing. A job sent to a busy
    /// worker waits for the tasks before it (which may be long), so a busy driver takes
    /// no job that an idle one could start now, nor one of the last few.
    pub(crate) fn take_more(&self, room: usize, bytes: usize) -> Vec<Job> {
        let mut jobs = lock(&self.jobs);
        if jobs.busy < self.drivers || jobs.len() < 2 * self.drivers || room == 0 {
            return Vec::new();
        }
        self.share(&mut jobs, room, bytes)
    }

    /// This driver's share of the jobs: the queue divided among the drivers (so that
    /// one driver does not hoard what another could run), at least one, at most
    /// `room` and, beyond the first, at most `bytes` of frames.
    fn share(&self, jobs: &mut Jobs, room: usize, bytes: usize) -> Vec<Job> {
        let take = (jobs.len() / self.drivers).clamp(1, room.max(1));
        let mut total = 0;
        let take = jobs
            .iter()
            .take(take)
            .skip(1)
            .position(|job| {
                total += job.frame.len();
                total > bytes
            })
            .map_or(take, |over| over + 1);
        let taken: Vec<Job> = jobs.drain(..take).collect();
        if !jobs.is_empty() {
            self.available.notify_one();
        }
        taken
    }

    /// Puts jobs that never started back at the head of the queue, in order.
    pub(crate) fn requeue(&self, returned: impl DoubleEndedIterator<Item = Job>) {
        let mut jobs = lock(&self.jobs);
        let before = jobs.len();
        for job in returned.rev() {
            job.ticket.detach();
            jobs.push_front(job);
        }
        if jobs.len() > before {
            drop(jobs);
            self.available.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    fn job(bytes: usize) -> Job {
        Job {
            name: "t",
            frame: vec![0; bytes],
            ticket: Arc::default(),
        }
    }

    #[test]
    fn drivers_take_fair_shares_within_their_room_and_bytes() {
        let queue = Queue::new(2, None);
        queue.push(job(100));
        queue.push(job(100));
        // Two drivers start, one job each: both busy.
        assert_eq!(queue.wait_for_jobs(64, 1 << 20).len(), 1);
        queue.push(job(100));
        // A busy driver leaves jobs to a driver that is not busy yet.
        assert_eq!(queue.take_more(64, 1 << 20).len(), 0);
        assert_eq!(queue.wait_for_jobs(64, 1 << 20).len(), 1);
        assert_eq!(queue.wait_for_jobs(64, 1 << 20).len(), 1);
        for _ in 0..10 {
            queue.push(job(100));
        }
        assert_eq!(queue.take_more(64, 150).len(), 2); // the first, then 150 bytes at most
        assert_eq!(queue.take_more(64, 1 << 20).len(), 4); // half of the eight left
        assert_eq!(queue.take_more(1, 1 << 20).len(), 1); // its room
        // Three left: the last few go to drivers that become idle.
        assert_eq!(queue.take_more(64, 1 << 20).len(), 0);
        assert_eq!(queue.wait_for_jobs(64, 1 << 20).len(), 1);
        assert_eq!(queue.wait_for_jobs(64, 1 << 20).len(), 1);
        assert_eq!(queue.wait_for_jobs(64, 1 << 20).len(), 1);
        queue.requeue(vec![job(1), job(2)].into_iter());
        let head = queue.take_idle(64, 1 << 20);
        assert_eq!(head.iter().map(|j| j.frame.len()).collect::<Vec<_>>(), [1]);
        assert_eq!(queue.wait_for_jobs(64, 1 << 20).len(), 1);
        assert!(queue.is_empty());
    }

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_ticket_delivers_once_and_not_after_a_cancel() {
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(Arc::clone(&flag));
        let mut cx = Context::from_waker(&waker);
        let ticket = Ticket::default();
        assert!(ticket.poll_outcome(&mut cx).is_pending());
        ticket.finish(Ok(vec![1]));
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst));
        assert!(matches!(ticket.poll_outcome(&mut cx), Poll::Ready(Ok(bytes)) if bytes == [1]));

        let cancelled = Ticket::default();
        cancelled.cancel();
        assert!(cancelled.is_cancelled());
        cancelled.finish(Ok(vec![2]));
        assert!(
            cancelled.poll_outcome(&mut cx).is_pending(),
            "nobody waits any more"
        );
    }
}
