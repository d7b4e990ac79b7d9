//! One stock cell: `on_hand` and `reserved` in a single 128-bit word, so that every read sees
//! both figures from one moment and every change to them is one compare-and-swap.

use portable_atomic::{AtomicU128, Ordering};

/// `on_hand` in the high half, `reserved` in the low half.
#[derive(Debug, Default)]
pub(crate) struct Cell {
    word: AtomicU128,
}

#[inline]
fn pack(on_hand: u64, reserved: u64) -> u128 {
    ((on_hand as u128) << 64) | reserved as u128
}

#[inline]
fn unpack(word: u128) -> (u64, u64) {
    ((word >> 64) as u64, word as u64)
}

impl Cell {
    #[cfg(test)]
    pub(crate) fn new(on_hand: u64, reserved: u64) -> Cell {
        assert!(reserved <= on_hand);
        Cell {
            word: AtomicU128::new(pack(on_hand, reserved)),
        }
    }

    /// `(on_hand, reserved)` from one moment.
    #[inline]
    pub(crate) fn load(&self) -> (u64, u64) {
        unpack(self.word.load(Ordering::Acquire))
    }

    /// Holds `qty` if that much is available; otherwise returns what is available.
    #[inline]
    pub(crate) fn try_hold(&self, qty: u64) -> Result<(), u64> {
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            let (on_hand, reserved) = unpack(current);
            let available = on_hand - reserved;
            if available < qty {
                return Err(available);
            }
            let next = pack(on_hand, reserved + qty);
            match self.word.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(seen) => current = seen,
            }
        }
    }

    /// Gives back `qty` held by a reservation.
    #[inline]
    pub(crate) fn unhold(&self, qty: u64) {
        // The holder's qty is part of `reserved`, so the low half cannot borrow from on_hand.
        let before = self.word.fetch_sub(qty as u128, Ordering::AcqRel);
        let (_, reserved) = unpack(before);
        assert!(reserved >= qty, "cell reserved underflow");
    }

    /// A paid line leaves the warehouse: on_hand and reserved both fall by `qty`.
    #[inline]
    pub(crate) fn ship(&self, qty: u64) {
        let before = self.word.fetch_sub(pack(qty, qty), Ordering::AcqRel);
        let (on_hand, reserved) = unpack(before);
        assert!(reserved >= qty && on_hand >= qty, "cell ship underflow");
    }

    /// Sets on_hand to `f(on_hand, reserved)` unless `f` refuses; returns (old, new) on_hand.
    pub(crate) fn update_on_hand<E>(
        &self,
        mut f: impl FnMut(u64, u64) -> Result<u64, E>,
    ) -> Result<(u64, u64), E> {
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            let (on_hand, reserved) = unpack(current);
            let next_on_hand = f(on_hand, reserved)?;
            assert!(next_on_hand >= reserved);
            match self.word.compare_exchange_weak(
                current,
                pack(next_on_hand, reserved),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok((on_hand, next_on_hand)),
                Err(seen) => current = seen,
            }
        }
    }

    /// Snapshot restore only: adds figures to a fresh cell without checks (the snapshot's
    /// checksum and the invariant check after recovery vouch for them). Replay of log
    /// entries uses the checked operations instead (`apply.rs`).
    pub(crate) fn apply_delta(&self, on_hand_delta: i128, reserved_delta: i128) {
        let (on_hand, reserved) = self.load();
        let on_hand = (on_hand as i128 + on_hand_delta).max(0) as u64;
        let reserved = (reserved as i128 + reserved_delta).max(0) as u64;
        self.word.store(pack(on_hand, reserved), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_refuses_beyond_available_and_reports_it() {
        let cell = Cell::new(5, 0);
        assert_eq!(cell.try_hold(3), Ok(()));
        assert_eq!(cell.try_hold(3), Err(2));
        cell.unhold(3);
        assert_eq!(cell.load(), (5, 0));
        cell.try_hold(5).unwrap();
        cell.ship(5);
        assert_eq!(cell.load(), (0, 0));
    }

    #[test]
    fn on_hand_never_falls_below_reserved() {
        let cell = Cell::new(10, 4);
        let r: Result<_, ()> = cell.update_on_hand(|_, reserved| Ok(reserved));
        assert_eq!(r, Ok((10, 4)));
        let r: Result<_, ()> = cell.update_on_hand(|o, _| Ok(o + 1));
        assert_eq!(r, Ok((4, 5)));
        assert_eq!(cell.load(), (5, 4));
    }

    #[test]
    fn the_128_bit_word_is_lock_free_here() {
        // cmpxchg16b on x86_64; a lock-based fallback would defeat the design.
        #[cfg(target_arch = "x86_64")]
        assert!(AtomicU128::is_lock_free());
    }
}
