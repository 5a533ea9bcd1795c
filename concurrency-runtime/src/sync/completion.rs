//! A value that one side delivers and another awaits: a result cell with its waker.

use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use super::lock;

/// Where a value waits for the future that wants it: the producer `complete`s it, the
/// consumer `poll`s for it. The value and the waker share one lock, so a value that
/// arrives while the consumer registers is never missed.
#[derive(Debug)]
pub(crate) struct Completion<T> {
    state: Mutex<State<T>>,
}

#[derive(Debug)]
struct State<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

impl<T> Default for Completion<T> {
    fn default() -> Self {
        Completion {
            state: Mutex::new(State {
                value: None,
                waker: None,
            }),
        }
    }
}

impl<T> Completion<T> {
    /// Delivers `value` and wakes the consumer (outside the lock: an executor may poll
    /// at once).
    pub(crate) fn complete(&self, value: T) {
        let waker = {
            let mut state = lock(&self.state);
            state.value = Some(value);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Delivers `value` without waking the consumer, for a producer that delivers many
    /// values and wakes each consumer once at the end (see `take_waker`).
    pub(crate) fn put(&self, value: T) {
        lock(&self.state).value = Some(value);
    }

    /// The consumer's waker, taken (after a `put`, to wake it).
    pub(crate) fn take_waker(&self) -> Option<Waker> {
        lock(&self.state).waker.take()
    }

    /// The value once it was delivered (taken: a second poll waits again).
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<T> {
        let mut state = lock(&self.state);
        match state.value.take() {
            Some(value) => Poll::Ready(value),
            None => {
                register(&mut state.waker, cx.waker());
                Poll::Pending
            }
        }
    }
}

/// Keeps `waker` in `slot` unless the one there already wakes the same task.
fn register(slot: &mut Option<Waker>, waker: &Waker) {
    if !slot
        .as_ref()
        .is_some_and(|current| current.will_wake(waker))
    {
        *slot = Some(waker.clone());
    }
}

/// The waker of a future that waits for an event other threads signal (the end of a
/// batch, a collection's task waking).
#[derive(Debug, Default)]
pub(crate) struct WakerCell {
    waker: Mutex<Option<Waker>>,
}

impl WakerCell {
    /// Keeps the waker of the task polling now (before it looks for the event, so that
    /// an event signalled meanwhile wakes it).
    pub(crate) fn register(&self, waker: &Waker) {
        register(&mut lock(&self.waker), waker);
    }

    /// Wakes the registered task, if any (outside the lock: waking with it held would
    /// deadlock an executor that polls right away).
    pub(crate) fn wake(&self) {
        let waker = lock(&self.waker).clone();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// As `wake`, and forgets the waker (there will be no further event).
    pub(crate) fn wake_last(&self) {
        if let Some(waker) = self.take() {
            waker.wake();
        }
    }

    /// Takes the registered waker, for a producer that wakes it later (after more
    /// work, outside its own locks).
    pub(crate) fn take(&self) -> Option<Waker> {
        lock(&self.waker).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    #[derive(Default)]
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_completion_wakes_its_consumer_once_and_hands_over_the_value() {
        let count = Arc::new(Count::default());
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let completion = Completion::default();
        assert!(completion.poll(&mut cx).is_pending());
        assert!(completion.poll(&mut cx).is_pending()); // the same waker, kept once
        completion.complete(7);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(completion.poll(&mut cx), Poll::Ready(7));
        assert!(completion.poll(&mut cx).is_pending());
        // Delivered without a wake-up: the waker comes back to the producer.
        assert!(completion.poll(&mut cx).is_pending());
        completion.put(8);
        let waker = completion.take_waker().expect("the consumer's waker");
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        waker.wake();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert_eq!(completion.poll(&mut cx), Poll::Ready(8));
    }

    #[test]
    fn a_waker_cell_wakes_the_last_registered_task() {
        let (first, second) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let cell = WakerCell::default();
        cell.wake(); // nobody yet
        cell.register(&Waker::from(Arc::clone(&first)));
        cell.register(&Waker::from(Arc::clone(&second)));
        cell.wake();
        cell.wake_last();
        cell.wake();
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(second.0.load(Ordering::SeqCst), 2);
    }
}
