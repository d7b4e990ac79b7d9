//! Time: an injectable clock in unix milliseconds, and RFC 3339 formatting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix time in milliseconds.
pub type Millis = u64;

/// A source of the current time, injected so tests control expiry.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> Millis;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now_ms(&self) -> Millis {
        coarse_now_ms().unwrap_or_else(precise_now_ms)
    }
}

/// The coarse wall clock is read from memory the kernel updates every tick (no TSC read and
/// conversion): ~4x cheaper here, and read on every operation. Its resolution is one tick
/// (1-4 ms), well inside the domain's tolerances (expiry within 1 s); where a tick is
/// coarser than `COARSE_MAX_RESOLUTION_NS` the precise clock is used instead.
#[cfg(target_os = "linux")]
fn coarse_now_ms() -> Option<Millis> {
    const COARSE_MAX_RESOLUTION_NS: i64 = 10_000_000;
    static USABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let usable = *USABLE.get_or_init(|| {
        read_clock(libc::CLOCK_REALTIME_COARSE, true)
            .is_some_and(|res| res.tv_sec == 0 && res.tv_nsec <= COARSE_MAX_RESOLUTION_NS)
    });
    if !usable {
        return None;
    }
    let ts = read_clock(libc::CLOCK_REALTIME_COARSE, false)?;
    let ms = (ts.tv_sec as u64).checked_mul(1000)? + ts.tv_nsec as u64 / 1_000_000;
    Some(ms)
}

#[cfg(not(target_os = "linux"))]
fn coarse_now_ms() -> Option<Millis> {
    None
}

/// Reads a clock (or its resolution); `None` if the kernel refuses.
#[cfg(target_os = "linux")]
fn read_clock(clock: libc::clockid_t, resolution: bool) -> Option<libc::timespec> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe {
        if resolution {
            libc::clock_getres(clock, &mut ts)
        } else {
            libc::clock_gettime(clock, &mut ts)
        }
    };
    (rc == 0 && ts.tv_sec >= 0).then_some(ts)
}

fn precise_now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    pub fn new(now_ms: Millis) -> ManualClock {
        ManualClock {
            now: AtomicU64::new(now_ms),
        }
    }
    pub fn set(&self, now_ms: Millis) {
        self.now.store(now_ms, Ordering::SeqCst);
    }
    pub fn advance(&self, ms: Millis) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.now.load(Ordering::SeqCst)
    }
}

/// `2026-11-25T10:00:00.123Z`
pub fn format_rfc3339(ms: Millis) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_agrees_with_the_precise_clock_within_a_tick() {
        for _ in 0..1000 {
            let before = precise_now_ms();
            let now = SystemClock.now_ms();
            let after = precise_now_ms();
            // A coarse reading lags the precise clock by at most one tick (<= 10 ms).
            assert!(now <= after, "{now} > {after}");
            assert!(now + 10 >= before, "{now} lags {before} by more than 10 ms");
        }
    }
}
