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
    fn now_ms(&self) -> Millis {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as Millis)
            .unwrap_or(0)
    }
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

/// A wall clock for tests of the retention: mostly forward, now and then a step back (fewer
/// than `MAX_RETENTION_RUNS` between passes that clear the old runs), driven by a xorshift
/// whose value each tick also returns for the test's own choices.
#[cfg(test)]
pub(crate) struct SteppingClock {
    x: u64,
    now: Millis,
}

#[cfg(test)]
impl SteppingClock {
    pub(crate) fn new() -> SteppingClock {
        SteppingClock {
            x: 0x2545_F491_4F6C_DD1D,
            now: 1_000_000,
        }
    }

    /// Moves the clock; returns (the random value, the new time).
    pub(crate) fn tick(&mut self) -> (u64, Millis) {
        let x = &mut self.x;
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        self.now = if x.is_multiple_of(97) {
            self.now.saturating_sub(*x % 5_000)
        } else {
            self.now + *x % 50
        };
        (*x, self.now)
    }
}
