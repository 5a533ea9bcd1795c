//! The queue of process tasks waiting for a worker, and what the caller and the driver
//! of a task share: its request, its cancellation, and where its answer goes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::Waker;
use std::time::{Duration, Instant};

use super::cancel_line;
use crate::error::TaskError;
use crate::process::protocol::Ran;
use crate::sync::{lock, wait};

/// A worker's answer to a task, as its sink takes it: the encoded result (borrowed from
/// the driver's read buffer), or why there is none.
pub(crate) enum Answer<'a> {
    Ok(&'a [u8]),
    Err(TaskError),
}

/// Where the tasks of one caller live while they run: their requests, their
/// cancellation, and the place their answers go. A single task's sink is its ticket
/// (`placement/process.rs`); a collection's is one batch for all of its tasks
/// (`placement/process_batch.rs`), so that the drivers deliver every answer in place
/// and its caller is woken once, not once per task.
pub(crate) trait Sink: Send + Sync {
    /// The task's name, for errors.
    fn name(&self, index: usize) -> &'static str;
    /// The request's body: everything after the frame's length and id.
    fn body(&self, index: usize) -> &[u8];
    /// The task's cancellation.
    fn control(&self, index: usize) -> &Control;
    /// Takes the task's answer (decoding it here, on the driver's thread), and when
    /// and where the worker ran it. Nobody is woken yet: see `settle`.
    fn deliver(&self, index: usize, answer: Answer<'_>, ran: Ran);
    /// `count` more of its tasks were delivered; the waker to wake if the caller has
    /// something to see now (`None`: nothing yet, or nobody to wake).
    fn settle(&self, count: usize) -> Option<Waker>;
    /// Whether the whole sink was stopped (a batch whose group failed or was
    /// dropped): its tasks are being cancelled one by one, and none may be sent
    /// meanwhile, even one whose own cancellation has not come yet.
    fn stopped(&self) -> bool {
        false
    }
}

/// One task sent to the pool: its sink, and its place in it.
pub(crate) struct Job {
    pub(crate) sink: Arc<dyn Sink>,
    pub(crate) index: usize,
}

impl Job {
    pub(crate) fn name(&self) -> &'static str {
        self.sink.name(self.index)
    }

    pub(crate) fn body(&self) -> &[u8] {
        self.sink.body(self.index)
    }

    pub(crate) fn control(&self) -> &Control {
        self.sink.control(self.index)
    }

    /// Records that request `id` to the worker on `slot` is this task, before it is
    /// written; `false` if the task, or its whole sink, was cancelled (then it is not
    /// sent).
    pub(crate) fn attach(&self, slot: usize, id: u64) -> bool {
        !self.sink.stopped() && self.control().attach(slot, id)
    }

    /// Delivers the answer, unless the task was cancelled (then nobody waits for it);
    /// its caller is woken with the others of this read, by `wakes`.
    pub(crate) fn deliver(&self, answer: Answer<'_>, ran: Ran, wakes: &mut Wakes) {
        if self.control().finish() {
            self.sink.deliver(self.index, answer, ran);
            wakes.add(&self.sink);
        }
    }

    /// Delivers a failure and wakes its caller at once (outside a driver's read loop).
    pub(crate) fn fail(&self, error: TaskError) {
        if self.control().finish() {
            self.sink
                .deliver(self.index, Answer::Err(error), Ran::default());
            if let Some(waker) = self.sink.settle(1) {
                waker.wake();
            }
        }
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.name())
            .field("index", &self.index)
            .finish()
    }
}

/// The sinks a driver delivered answers to since it last woke their callers, and how
/// many each: settled (and their callers woken) once per read, however many answers
/// it held.
#[derive(Default)]
pub(crate) struct Wakes(Vec<(Arc<dyn Sink>, usize)>);

impl Wakes {
    fn add(&mut self, sink: &Arc<dyn Sink>) {
        // Answers come in the order of requests, so a batch's are mostly together.
        match self
            .0
            .iter_mut()
            .rev()
            .find(|(known, _)| Arc::ptr_eq(known, sink))
        {
            Some((_, count)) => *count += 1,
            None => self.0.push((Arc::clone(sink), 1)),
        }
    }

    /// Settles every sink, then wakes the callers that have something to see.
    pub(crate) fn wake(&mut self) {
        for (sink, count) in self.0.drain(..) {
            if let Some(waker) = sink.settle(count) {
                waker.wake();
            }
        }
    }
}

/// A task's cancellation, shared by its caller and the driver that runs it: one word,
/// so that sending a task and delivering its answer take no lock.
///
/// Once the task is sent to a worker, the word holds the worker's slot and the
/// request's id. Cancelling sends the id down that slot's cancel line, and the
/// *worker* decides: it skips the request if it has not started it, kills itself if
/// it is running it, and ignores the message if it has finished it. Only the worker
/// knows which of the requests sent to it runs at this instant, so only it can stop
/// exactly this task and never the next one. (If the worker does not react, the
/// driver stops it; see `driver.rs`.)
#[derive(Debug, Default)]
pub(crate) struct Control {
    state: AtomicU64,
}

/// The task was cancelled: it is not sent, or its answer goes nowhere.
const CANCELLED: u64 = 1 << 63;
/// The task ended (answered, or failed).
const DONE: u64 = 1 << 62;
/// Where a sent task went: `(slot + 1) << ID_BITS | id`.
const ID_BITS: u32 = 48;
const SENT: u64 = !(CANCELLED | DONE);

impl Control {
    /// Cancels the task: a queued task is never sent; a sent one is stopped by its
    /// worker (skipped, or the worker is killed if it is running it).
    pub(crate) fn cancel(&self) {
        let previous = self.state.fetch_or(CANCELLED, Ordering::AcqRel);
        let sent = previous & SENT;
        if previous & (CANCELLED | DONE) == 0 && sent != 0 {
            let slot = (sent >> ID_BITS) as usize - 1;
            cancel_line::cancel(slot, sent & ((1 << ID_BITS) - 1));
        }
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.state.load(Ordering::Acquire) & CANCELLED != 0
    }

    /// Records that request `id` to the worker on `slot` is this task, before it is
    /// written; `false` if the task was cancelled (then it is not sent).
    pub(crate) fn attach(&self, slot: usize, id: u64) -> bool {
        let sent = ((slot as u64 + 1) << ID_BITS) | (id & ((1 << ID_BITS) - 1));
        self.state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                (state & (CANCELLED | DONE) == 0).then_some((state & !SENT) | sent)
            })
            .is_ok()
    }

    /// The task is back in the queue: nothing to cancel on that worker.
    pub(crate) fn detach(&self) {
        self.state.fetch_and(CANCELLED | DONE, Ordering::AcqRel);
    }

    /// The task ended (answered, or failed): nothing to cancel any more. `false` if it
    /// was cancelled, or had ended already, so that its answer goes nowhere.
    fn finish(&self) -> bool {
        self.state.fetch_or(DONE, Ordering::AcqRel) & (CANCELLED | DONE) == 0
    }
}

/// Tasks waiting for a worker, first come, first served.
#[derive(Debug)]
pub(crate) struct Queue {
    jobs: Mutex<Jobs>,
    available: Condvar,
    /// How many jobs are queued, for drivers that watch the queue without its lock.
    queued: AtomicUsize,
    /// How many drivers share the queue (for each one's fair share).
    drivers: usize,
}

/// The queued jobs, and what the drivers are doing.
#[derive(Debug)]
struct Jobs {
    queue: VecDeque<Job>,
    /// Drivers whose worker has requests in flight (see `Queue::take_more`).
    busy: usize,
    /// Drivers asleep on `available` (a wake-up is a system call: only for them).
    sleeping: usize,
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

/// How long an idle driver looks for a new job before it sleeps (yielding its core to
/// any thread that needs it): a caller that just got its answers often submits its
/// next tasks within microseconds, and a sleep and wake-up costs 10-25 µs on a small
/// VM.
const SPIN_FOR_JOBS: Duration = Duration::from_micros(100);

impl Queue {
    pub(crate) fn new(drivers: usize) -> Self {
        Queue {
            jobs: Mutex::new(Jobs {
                queue: VecDeque::new(),
                busy: 0,
                sleeping: 0,
            }),
            available: Condvar::new(),
            queued: AtomicUsize::new(0),
            drivers: drivers.max(1),
        }
    }

    /// Queues `jobs`, in order, and wakes the sleeping drivers they need.
    pub(crate) fn push(&self, jobs: impl IntoIterator<Item = Job>) {
        let mut queue = lock(&self.jobs);
        let before = queue.len();
        queue.extend(jobs);
        self.queued.store(queue.len(), Ordering::Relaxed);
        let wake = (queue.len() - before).min(queue.sleeping);
        drop(queue);
        match wake {
            0 => {}
            1 => self.available.notify_one(),
            _ => self.available.notify_all(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        lock(&self.jobs).is_empty()
    }

    /// Waits for work, then takes a fair share of the queue: at least one job, at most
    /// `room`. The driver counts as busy from then on, until it calls `idle`.
    pub(crate) fn wait_for_jobs(&self, room: usize, bytes: usize) -> Vec<Job> {
        // Watched without the lock, which the callers that queue jobs need; after a
        // few spins the driver yields between looks, so that on a machine with fewer
        // cores than threads the caller about to queue the next job gets to run.
        let started = Instant::now();
        for round in 0u32.. {
            if self.queued.load(Ordering::Relaxed) > 0 {
                break;
            }
            if round % 16 == 15 && started.elapsed() >= SPIN_FOR_JOBS {
                break;
            }
            if round < 32 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        let mut jobs = lock(&self.jobs);
        while jobs.is_empty() {
            jobs.sleeping += 1;
            jobs = wait(&self.available, jobs);
            jobs.sleeping -= 1;
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
    /// `room` and, beyond the first, at most `bytes` of requests.
    fn share(&self, jobs: &mut Jobs, room: usize, bytes: usize) -> Vec<Job> {
        let take = (jobs.len() / self.drivers).clamp(1, room.max(1));
        let mut total = 0;
        let take = jobs
            .iter()
            .take(take)
            .skip(1)
            .position(|job| {
                total += job.body().len() + 16;
                total > bytes
            })
            .map_or(take, |over| over + 1);
        let taken: Vec<Job> = jobs.drain(..take).collect();
        self.queued.store(jobs.len(), Ordering::Relaxed);
        if !jobs.is_empty() && jobs.sleeping > 0 {
            self.available.notify_one();
        }
        taken
    }

    /// Puts jobs that never started back at the head of the queue, in order.
    pub(crate) fn requeue(&self, returned: impl DoubleEndedIterator<Item = Job>) {
        let mut jobs = lock(&self.jobs);
        let before = jobs.len();
        for job in returned.rev() {
            job.control().detach();
            jobs.push_front(job);
        }
        self.queued.store(jobs.len(), Ordering::Relaxed);
        if jobs.len() > before && jobs.sleeping > 0 {
            drop(jobs);
            self.available.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink of jobs of the given sizes, that counts what it is told.
    #[derive(Default)]
    struct TestSink(Vec<Vec<u8>>, Vec<Control>, Mutex<(usize, usize)>);

    impl Sink for TestSink {
        fn name(&self, _: usize) -> &'static str {
            "t"
        }
        fn body(&self, index: usize) -> &[u8] {
            &self.0[index]
        }
        fn control(&self, index: usize) -> &Control {
            &self.1[index]
        }
        fn deliver(&self, _: usize, _: Answer<'_>, _: Ran) {
            lock(&self.2).0 += 1;
        }
        fn settle(&self, count: usize) -> Option<Waker> {
            lock(&self.2).1 += count;
            Some(Waker::noop().clone())
        }
    }

    fn jobs(sizes: &[usize]) -> Vec<Job> {
        let sink: Arc<dyn Sink> = Arc::new(TestSink(
            sizes.iter().map(|size| vec![0; *size]).collect(),
            sizes.iter().map(|_| Control::default()).collect(),
            Mutex::default(),
        ));
        (0..sizes.len())
            .map(|index| Job {
                sink: Arc::clone(&sink),
                index,
            })
            .collect()
    }

    #[test]
    fn drivers_take_fair_shares_within_their_room_and_bytes() {
        let queue = Queue::new(2);
        queue.push(jobs(&[100, 100]));
        // Two drivers start, one job each: both busy.
        assert_eq!(queue.wait_for_jobs(64, 1 << 20).len(), 1);
        queue.push(jobs(&[100]));
        // A busy driver leaves jobs to a driver that is not busy yet.
        assert_eq!(queue.take_more(64, 1 << 20).len(), 0);
        assert_eq!(queue.wait_for_jobs(64, 1 << 20).len(), 1);
        assert_eq!(queue.wait_for_jobs(64, 1 << 20).len(), 1);
        queue.push(jobs(&[100; 10]));
        assert_eq!(queue.take_more(64, 150).len(), 2); // the first, then 150 bytes at most
        assert_eq!(queue.take_more(64, 1 << 20).len(), 4); // half of the eight left
        assert_eq!(queue.take_more(1, 1 << 20).len(), 1); // its room
        // Three left: the last few go to drivers that become idle.
        assert_eq!(queue.take_more(64, 1 << 20).len(), 0);
        assert_eq!(queue.wait_for_jobs(64, 1 << 20).len(), 1);
        assert_eq!(queue.wait_for_jobs(64, 1 << 20).len(), 1);
        assert_eq!(queue.wait_for_jobs(64, 1 << 20).len(), 1);
        queue.requeue(jobs(&[1, 2]).into_iter());
        let head = queue.take_idle(64, 1 << 20);
        assert_eq!(head.iter().map(|j| j.body().len()).collect::<Vec<_>>(), [1]);
        assert_eq!(queue.wait_for_jobs(64, 1 << 20).len(), 1);
        assert!(queue.is_empty());
    }

    /// A sink that was stopped as a whole (a batch being cancelled task by task).
    struct StoppedSink(Control);

    impl Sink for StoppedSink {
        fn name(&self, _: usize) -> &'static str {
            "stopped"
        }
        fn body(&self, _: usize) -> &[u8] {
            &[]
        }
        fn control(&self, _: usize) -> &Control {
            &self.0
        }
        fn deliver(&self, _: usize, _: Answer<'_>, _: Ran) {}
        fn settle(&self, _: usize) -> Option<Waker> {
            None
        }
        fn stopped(&self) -> bool {
            true
        }
    }

    #[test]
    fn a_task_of_a_stopped_sink_is_never_sent_even_before_its_own_cancellation_comes() {
        // (A batch being dropped cancels its tasks one by one; a driver that re-queued
        // one of them after a worker died must not send it meanwhile.)
        let job = Job {
            sink: Arc::new(StoppedSink(Control::default())),
            index: 0,
        };
        assert!(
            !job.control().is_cancelled(),
            "its own cancellation has not come"
        );
        assert!(!job.attach(0, 1), "but its sink is stopped: it is not sent");
        let live = &jobs(&[1])[0];
        assert!(live.attach(0, 2), "a task of a live sink is sent");
    }

    #[test]
    fn a_control_is_sent_and_finished_at_most_once_and_cancelling_wins() {
        let control = Control::default();
        assert!(control.attach(3, 42));
        // Back in the queue (its worker died before it started), then sent again.
        control.detach();
        assert!(control.attach(1, 7));
        assert!(control.finish(), "its answer goes to its caller");
        assert!(!control.finish(), "once");
        assert!(!control.attach(1, 8), "an ended task is not sent again");

        let cancelled = Control::default();
        cancelled.cancel();
        assert!(cancelled.is_cancelled());
        assert!(!cancelled.attach(0, 1), "a cancelled task is never sent");
        assert!(!cancelled.finish(), "nobody waits for its answer");

        let running = Control::default();
        assert!(running.attach(0, 9));
        running.cancel(); // (no pool here: the line lookup finds none)
        assert!(running.is_cancelled());
        assert!(!running.finish());
    }

    #[test]
    fn answers_are_settled_once_per_sink_and_a_cancelled_task_gets_none() {
        let sink = Arc::new(TestSink(
            vec![Vec::new(); 3],
            (0..3).map(|_| Control::default()).collect(),
            Mutex::default(),
        ));
        let as_sink: Arc<dyn Sink> = Arc::clone(&sink) as Arc<dyn Sink>;
        let job = |index| Job {
            sink: Arc::clone(&as_sink),
            index,
        };
        let (first, second, third) = (job(0), job(1), job(2));
        third.control().cancel();
        assert!(third.control().is_cancelled());
        let mut wakes = Wakes::default();
        first.deliver(Answer::Ok(b""), Ran::default(), &mut wakes);
        second.deliver(Answer::Ok(b""), Ran::default(), &mut wakes);
        third.deliver(Answer::Ok(b""), Ran::default(), &mut wakes);
        assert_eq!(wakes.0.len(), 1, "one entry for the sink");
        assert_eq!(*lock(&sink.2), (2, 0), "delivered, not settled yet");
        wakes.wake();
        assert_eq!(*lock(&sink.2), (2, 2));
        assert!(wakes.0.is_empty());
    }
}
