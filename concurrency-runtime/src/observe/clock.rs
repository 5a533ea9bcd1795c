//! The one clock of a recording: `CLOCK_MONOTONIC`, read as nanoseconds. On Linux it
//! is one clock for every process of the machine, so a worker process's timings (it
//! reads the same clock) fall on the parent's timeline as they are, with no offset to
//! estimate.

/// Nanoseconds on the machine's monotonic clock.
#[cfg(unix)]
#[inline]
pub(crate) fn now() -> u64 {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `time` is a valid, writable `timespec` for the call's duration, and
    // `CLOCK_MONOTONIC` is a clock every unix kernel provides; on failure (which it
    // cannot do for these arguments) `time` stays zero.
    let failed = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut time) } != 0;
    if failed {
        return 0;
    }
    u64::try_from(time.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(time.tv_nsec).unwrap_or(0))
}

/// Nanoseconds since the first reading (no worker processes off unix).
#[cfg(not(unix))]
pub(crate) fn now() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(std::time::Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::now;
    use std::time::{Duration, Instant};

    #[test]
    fn the_clock_is_monotonic_and_counts_nanoseconds_as_std_does() {
        let (ours, std) = (now(), Instant::now());
        assert!(ours > 0, "the monotonic clock read zero");
        let mut spins = 0u64;
        while std.elapsed() < Duration::from_millis(20) {
            spins += 1;
        }
        let (ours_after, std_elapsed) = (now(), std.elapsed());
        assert!(spins > 0 && ours_after >= ours);
        let ours_elapsed = Duration::from_nanos(ours_after - ours);
        // Both read CLOCK_MONOTONIC: the two spans agree to well within a millisecond.
        let difference = ours_elapsed.abs_diff(std_elapsed);
        assert!(
            difference < Duration::from_millis(5),
            "{ours_elapsed:?} against std's {std_elapsed:?}"
        );
    }
}
