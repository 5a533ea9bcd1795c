//! The blocking detector: every poll of an async task passes through the library's
//! guard, which times it (see the module documentation of `observe`).

use super::Site;
#[cfg(feature = "tracing")]
use std::collections::HashSet;
#[cfg(feature = "tracing")]
use std::sync::Mutex;
#[cfg(feature = "tracing")]
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(feature = "tracing")]
use std::time::{Duration, Instant};

/// What the detector needs of an async task: its name and call site (nothing
/// without the feature).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Watch {
    #[cfg(feature = "tracing")]
    name: &'static str,
}

impl Watch {
    #[inline(always)]
    pub(crate) fn new(name: &'static str) -> Self {
        #[cfg(not(feature = "tracing"))]
        let _ = name;
        Watch {
            #[cfg(feature = "tracing")]
            name,
        }
    }

    /// Runs one poll of the task called at `site`, timed when the detector is on.
    #[inline(always)]
    pub(crate) fn poll<R>(self, site: Site, poll: impl FnOnce() -> R) -> R {
        // `poll` is called in one place only, so that it is inlined once.
        #[cfg(feature = "tracing")]
        let started = self.start();
        let polled = poll();
        #[cfg(feature = "tracing")]
        if let Some((started, threshold)) = started {
            self.end(site, started, threshold);
        }
        #[cfg(not(feature = "tracing"))]
        let _ = site;
        polled
    }

    /// When the poll starts and the threshold, if the detector is on and someone
    /// listens (no subscriber, no one to tell: not even the clock is read).
    #[cfg(feature = "tracing")]
    #[inline(always)]
    fn start(self) -> Option<(Instant, u64)> {
        let threshold = threshold_nanos();
        if threshold == 0 || !tracing::level_enabled!(tracing::Level::WARN) {
            return None;
        }
        Some((Instant::now(), threshold))
    }

    #[cfg(feature = "tracing")]
    #[inline(never)]
    fn end(self, site: Site, started: Instant, threshold: u64) {
        let took = started.elapsed();
        if took.as_nanos() > u128::from(threshold) {
            report(self.name, site, took);
        }
    }
}

/// Not looked up yet (the environment is read once, at the first poll).
#[cfg(feature = "tracing")]
const UNSET: u64 = u64::MAX;

#[cfg(feature = "tracing")]
static THRESHOLD: AtomicU64 = AtomicU64::new(UNSET);

/// The default threshold.
#[cfg(feature = "tracing")]
const DEFAULT: Duration = Duration::from_millis(10);

/// Sets how long one poll of an async task may take before it is reported as
/// blocking its executor thread; `Duration::ZERO` turns the detector off. It
/// overrides `CONCURRENCY_BLOCKING_MS` (the threshold in milliseconds, read at the
/// first poll otherwise; the default is 10 ms).
///
/// ```
/// use std::time::Duration;
/// use concurrency_runtime::observe;
///
/// observe::set_blocking_threshold(Duration::from_millis(2));
/// assert_eq!(observe::blocking_threshold(), Duration::from_millis(2));
/// ```
#[cfg(feature = "tracing")]
pub fn set_blocking_threshold(threshold: Duration) {
    let nanos = u64::try_from(threshold.as_nanos()).unwrap_or(UNSET - 1);
    THRESHOLD.store(nanos.min(UNSET - 1), Ordering::Relaxed);
}

/// The current threshold of the blocking detector (zero: off); see
/// [`set_blocking_threshold`].
///
/// ```
/// use concurrency_runtime::observe;
///
/// let threshold = observe::blocking_threshold(); // 10 ms unless configured
/// assert!(threshold <= std::time::Duration::from_secs(3600));
/// ```
#[cfg(feature = "tracing")]
pub fn blocking_threshold() -> Duration {
    Duration::from_nanos(threshold_nanos())
}

#[cfg(feature = "tracing")]
#[inline(always)]
pub(crate) fn threshold_nanos() -> u64 {
    match THRESHOLD.load(Ordering::Relaxed) {
        UNSET => threshold_from_environment(),
        nanos => nanos,
    }
}

#[cfg(feature = "tracing")]
#[cold]
fn threshold_from_environment() -> u64 {
    let threshold = std::env::var("CONCURRENCY_BLOCKING_MS")
        .ok()
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .map_or(DEFAULT, |ms| Duration::from_secs_f64(ms / 1e3));
    let nanos = u64::try_from(threshold.as_nanos()).unwrap_or(UNSET - 1);
    // A threshold set meanwhile wins.
    match THRESHOLD.compare_exchange(UNSET, nanos, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => nanos,
        Err(set) => set,
    }
}

/// Reports a poll that blocked, once per call site.
///
/// A task made by a function passed by name (`.map(fetch)`) was called by the
/// standard library's `FnMut` glue, whose location says nothing: such a task is
/// reported once per task name instead, without a call site.
#[cfg(feature = "tracing")]
#[cold]
#[inline(never)]
fn report(name: &'static str, site: Site, took: Duration) {
    /// A call site (or, without one, a task's name), as a set's key.
    type Key = (&'static str, &'static str, u32, u32);
    static REPORTED: Mutex<Option<HashSet<Key>>> = Mutex::new(None);
    // (A task made before anyone observed has no call site either.)
    let known = site.filter(|site| !site.file().starts_with("/rustc/"));
    let key = match known {
        Some(site) => ("", site.file(), site.line(), site.column()),
        None => (name, "", 0, 0),
    };
    let first = REPORTED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get_or_insert_with(HashSet::new)
        .insert(key);
    if !first {
        return;
    }
    let ms = took.as_secs_f64() * 1e3;
    let hint = "every other task on that thread waited; make blocking calls in an `#[io_task] fn` \
                (a blocking thread) or CPU work in a `#[cpu_task]` (rayon)";
    if let Some(site) = known {
        tracing::warn!(
            target: "concurrency_runtime::blocking",
            task = name,
            call_site = %site,
            poll_ms = ms,
            "async task `{name}` (called at {site}) blocked its executor thread for {ms:.1} ms in \
             one poll: {hint}"
        );
    } else {
        tracing::warn!(
            target: "concurrency_runtime::blocking",
            task = name,
            poll_ms = ms,
            "async task `{name}` blocked its executor thread for {ms:.1} ms in one poll: {hint}"
        );
    }
}

#[cfg(all(test, feature = "tracing"))]
mod tests {
    use super::*;

    #[test]
    fn a_threshold_set_in_code_overrides_the_environment_and_zero_turns_it_off() {
        set_blocking_threshold(Duration::from_millis(3));
        assert_eq!(blocking_threshold(), Duration::from_millis(3));
        set_blocking_threshold(Duration::ZERO);
        assert_eq!(threshold_nanos(), 0);
        set_blocking_threshold(DEFAULT);
    }
}
