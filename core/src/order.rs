//! One reservation as the table holds it: its lines, status and times. Live orders sit in
//! the table's slots (`orders.rs`); finished ones are kept in compact records
//! (`retained.rs`) and decoded back into this form when read.

use smallvec::SmallVec;

use crate::catalog::CellId;
use crate::time::Millis;
use crate::types::Status;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct HeldLine {
    pub(crate) cell: CellId,
    pub(crate) qty: u32,
}

/// The held lines of an order, sorted by cell id; up to four without an allocation.
pub(crate) type Lines = SmallVec<[HeldLine; 4]>;

#[derive(Debug, Clone)]
pub(crate) struct Order {
    /// Sorted by cell id: the one fixed order in which lines are held and compared.
    pub(crate) lines: Lines,
    pub(crate) status: Status,
    pub(crate) created_at: Millis,
    /// 0 while reserved.
    pub(crate) finished_at: Millis,
    /// `expires_at - created_at`; a ttl is at most `MAX_TTL_SECONDS` (7 days), so 32 bits
    /// hold it and the slot stays within 112 bytes.
    pub(crate) ttl_ms: u32,
}

impl Order {
    /// `None` when `expires_at` is before `created_at` or more than `u32::MAX` ms after it
    /// (the live path never makes one; a log or snapshot that holds one does not fit).
    pub(crate) fn new(
        lines: Lines,
        status: Status,
        created_at: Millis,
        expires_at: Millis,
        finished_at: Millis,
    ) -> Option<Order> {
        let ttl_ms = u32::try_from(expires_at.checked_sub(created_at)?).ok()?;
        Some(Order {
            lines,
            status,
            created_at,
            finished_at,
            ttl_ms,
        })
    }

    /// An order read back from a record (whose ttl was checked when it was made).
    pub(crate) fn from_ttl(
        lines: Lines,
        status: Status,
        created_at: Millis,
        ttl_ms: u32,
        finished_at: Millis,
    ) -> Order {
        Order {
            lines,
            status,
            created_at,
            finished_at,
            ttl_ms,
        }
    }

    #[inline]
    pub(crate) fn expires_at(&self) -> Millis {
        self.created_at + Millis::from(self.ttl_ms)
    }

    /// What a freed slot holds.
    pub(crate) fn vacant() -> Order {
        Order {
            lines: Lines::new(),
            status: Status::Released,
            created_at: 0,
            finished_at: 0,
            ttl_ms: 0,
        }
    }
}

const _: () = assert!(crate::limits::MAX_TTL_SECONDS * 1000 <= u32::MAX as u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_keeps_its_expiry_in_32_bits_or_is_refused() {
        let lines = || [HeldLine { cell: 1, qty: 2 }].into_iter().collect();
        let o = Order::new(lines(), Status::Reserved, 10, 10 + u64::from(u32::MAX), 0);
        assert_eq!(o.map(|o| o.expires_at()), Some(10 + u64::from(u32::MAX)));
        assert!(Order::new(lines(), Status::Reserved, 10, 11 + u64::from(u32::MAX), 0).is_none());
        assert!(Order::new(lines(), Status::Reserved, 10, 9, 0).is_none());
        let o = Order::new(lines(), Status::Paid, 10, 20, 30).expect("fits");
        assert_eq!((o.expires_at(), o.finished_at), (20, 30));
    }
}
