//! The state machine's effects: the one place where a decided change touches the state.
//!
//! The live path (`ledger.rs`, `payment.rs`) decides: it checks the request against the
//! state, and for a reservation the checked compare-and-swap of each cell *is* the decision.
//! Then it calls the effects below. Replay (`State::apply`) checks that a logged entry fits
//! the state before it (a log and a state that disagree are corruption, never clamped) and
//! calls the same effects, with the same checked cell operations. So the two paths cannot
//! drift: there is one way an order enters or leaves the table, one way its cells move, one
//! way an idempotency key is remembered.

use std::sync::atomic::Ordering;

use crate::catalog::CellId;
use crate::limits;
use crate::orders::{HeldLine, Lines, Order, OrderShard, SlotId};
use crate::record::{
    EntryRef, LinesRef, ANSWER_PAID, ANSWER_REFUND, ANSWER_RELEASED, TAG_EXPIRED, TAG_PAID,
    TAG_PAYMENT_FAILED, TAG_RELEASED, TAG_STOCK_SET_KEYED,
};
use crate::state::{adjustment_key, AdjustmentKey, KeyShard, PaymentKey, State, WAREHOUSE_SOURCE};
use crate::time::Millis;
use crate::types::Status;

/// The status a finishing record gives its reservation.
pub(crate) fn finished_status(tag: u8) -> Option<Status> {
    match tag {
        TAG_RELEASED | TAG_PAYMENT_FAILED => Some(Status::Released),
        TAG_EXPIRED => Some(Status::Expired),
        TAG_PAID => Some(Status::Paid),
        _ => None,
    }
}

/// What an adjustment id remembers: the delta of an adjustment, or the on_hand of a keyed set.
pub(crate) fn adjustment_seen(
    cell: CellId,
    amount: i64,
    is_set: bool,
    at: Millis,
) -> AdjustmentKey {
    AdjustmentKey {
        cell,
        delta: amount,
        is_set,
        at,
    }
}

/// Remembers a payment callback's answer for its replays.
pub(crate) fn remember_payment(
    keys: &mut KeyShard<PaymentKey>,
    payment_id: &str,
    order_id: &str,
    succeeded: bool,
    answer: u8,
    at: Millis,
) {
    let key = PaymentKey {
        order_id: order_id.into(),
        succeeded,
        answer,
        at,
    };
    keys.insert(payment_id, at, key);
}

/// A seller's first stock write claims the sku; the warehouse side never does.
pub(crate) fn claim_owner(owner: &mut Option<Box<str>>, source: &str) {
    if owner.is_none() && source != WAREHOUSE_SOURCE {
        *owner = Some(source.into());
    }
}

impl State {
    /// Holds every line with the checked compare-and-swap, in the given (cell) order. On a
    /// shortfall gives back what it held and returns the index of the line that did not fit.
    pub(crate) fn hold_lines(&self, held: &[HeldLine]) -> Result<(), usize> {
        for (i, l) in held.iter().enumerate() {
            if self
                .catalog
                .cell(l.cell)
                .stock
                .try_hold(l.qty as u64)
                .is_err()
            {
                for done in &held[..i] {
                    self.catalog.cell(done.cell).stock.unhold(done.qty as u64);
                }
                return Err(i);
            }
        }
        Ok(())
    }

    /// A granted reservation (its cells already held) enters its shard.
    pub(crate) fn enter_reserved(
        shard: &mut OrderShard,
        hash: u64,
        order_id: &str,
        lines: Lines,
        at: Millis,
        expires_at: Millis,
    ) -> SlotId {
        debug_assert!(!lines.is_empty() && lines.windows(2).all(|w| w[0].cell < w[1].cell));
        let order = Order::new(lines, Status::Reserved, at, expires_at, 0);
        // Both paths check the ttl's range first: the live path by `limits::check_ttl`,
        // replay by `apply_created`.
        let order = order.expect("a ttl of at most MAX_TTL_SECONDS");
        shard.insert_hashed(hash, order_id, order)
    }

    /// The cells of a reservation that ends: shipped when paid, given back otherwise.
    pub(crate) fn end_holds(&self, lines: &[HeldLine], status: Status) {
        debug_assert!(status.is_finished());
        for l in lines {
            let cell = &self.catalog.cell(l.cell).stock;
            if status == Status::Paid {
                cell.ship(l.qty as u64);
            } else {
                cell.unhold(l.qty as u64);
            }
        }
    }

    /// Whether [`State::end_holds`] can apply: every line is still held (and, when paid, on
    /// hand). The live path holds them by construction; replay must check.
    fn holds_present(&self, lines: &[HeldLine]) -> bool {
        lines.iter().all(|l| {
            let (on_hand, reserved) = self.catalog.cell(l.cell).stock.load();
            reserved >= l.qty as u64 && on_hand >= l.qty as u64
        })
    }

    /// A reserved order ends (its cells moved by [`State::end_holds`]).
    pub(crate) fn enter_finished(shard: &mut OrderShard, s: SlotId, status: Status, at: Millis) {
        shard.finish_slot(s, status, at);
    }

    /// Moves a cell's on_hand by a decided delta, refusing (not clamping) a move below
    /// reserved or outside the domain's range. Returns (old, new) on_hand.
    pub(crate) fn move_on_hand(&self, cell: CellId, delta: i64) -> Result<(u64, u64), ()> {
        self.catalog
            .cell(cell)
            .stock
            .update_on_hand(|old, reserved| {
                let next = old as i128 + delta as i128;
                if next < reserved as i128 || next > limits::MAX_ON_HAND as i128 {
                    Err(())
                } else {
                    Ok(next as u64)
                }
            })
    }

    // ---- replay ----------------------------------------------------------------------

    /// Applies one decided entry (replay). Returns false if the entry does not fit the
    /// state before it, which means the log and the state disagree; nothing is applied then.
    pub(crate) fn apply(&self, entry: &EntryRef<'_>) -> bool {
        match *entry {
            EntryRef::Created {
                order_id,
                at,
                expires_at,
                lines,
            } => {
                self.note_replayed_at(at);
                self.apply_created(order_id, at, expires_at, lines)
            }
            EntryRef::Finished {
                tag,
                order_id,
                at,
                payment_id,
                ..
            } => {
                self.note_replayed_at(at);
                self.apply_finished(tag, order_id, at, payment_id)
            }
            EntryRef::RefundRequired {
                order_id,
                at,
                payment_id,
                ..
            } => {
                self.note_replayed_at(at);
                let mut keys = self.payments.shard(payment_id);
                remember_payment(&mut keys, payment_id, order_id, true, ANSWER_REFUND, at);
                true
            }
            EntryRef::Stock {
                tag,
                sku,
                warehouse,
                at,
                on_hand,
                delta,
                source,
                adjustment_id,
                ..
            } => {
                self.note_replayed_at(at);
                let keyed = adjustment_id.map(|id| (id, tag == TAG_STOCK_SET_KEYED));
                self.apply_stock(sku, warehouse, at, (on_hand, delta), source, keyed)
            }
            EntryRef::PaymentNote {
                payment_id,
                order_id,
                succeeded,
                answer,
                at,
            } => {
                // An old note (tag 100) has no time: the latest time replayed so far is the
                // closest lower bound (0 would let the first expiry pass prune its key).
                let at = at.unwrap_or_else(|| self.replayed_at.load(Ordering::Relaxed));
                let mut keys = self.payments.shard(payment_id);
                remember_payment(&mut keys, payment_id, order_id, succeeded, answer, at);
                true
            }
            EntryRef::RetentionNote { cutoff } => {
                self.prune_retained(cutoff);
                true
            }
        }
    }

    fn resolve_logged(&self, lines: LinesRef<'_>) -> Option<Lines> {
        let mut held = Lines::with_capacity(lines.len());
        let mut valid = true;
        lines.for_each(|sku, warehouse, qty| {
            let qty = u32::try_from(qty).ok().filter(|q| *q > 0);
            match (qty, self.logged_cell(sku, warehouse)) {
                (Some(qty), Some(cell)) => held.push(HeldLine { cell, qty }),
                _ => valid = false,
            }
        });
        held.sort_unstable();
        let distinct = held.windows(2).all(|w| w[0].cell < w[1].cell);
        (valid && distinct && !held.is_empty()).then_some(held)
    }

    /// The cell of a logged line. A reservation can only hold stock of a cell that a stock
    /// entry (or the snapshot) made before it, so an unknown cell means the entry does not
    /// fit; nothing is made. A match by bytes proves the names valid UTF-8.
    fn logged_cell(&self, sku: &[u8], warehouse: &[u8]) -> Option<CellId> {
        self.catalog.find_cell_bytes(sku, warehouse)
    }

    fn apply_created(
        &self,
        order_id: &str,
        at: Millis,
        expires_at: Millis,
        lines: LinesRef<'_>,
    ) -> bool {
        let Some(held) = self.resolve_logged(lines) else {
            return false;
        };
        if expires_at < at || expires_at - at > crate::limits::MAX_TTL_SECONDS * 1000 {
            return false;
        }
        let (hash, mut shard) = self.orders.shard_hashed(order_id);
        let existing = shard.map.find(hash, order_id);
        if existing.is_some_and(|s| shard.map.order(s).status == Status::Reserved) {
            return false;
        }
        if self.hold_lines(&held).is_err() {
            return false;
        }
        if existing.is_some() {
            // A finished order of that id: a late payment re-created it.
            shard.map.remove(order_id);
        }
        State::enter_reserved(&mut shard, hash, order_id, held, at, expires_at);
        true
    }

    fn apply_finished(
        &self,
        tag: u8,
        order_id: &str,
        at: Millis,
        payment_id: Option<&str>,
    ) -> bool {
        let Some(status) = finished_status(tag) else {
            return false;
        };
        let (hash, mut shard) = self.orders.shard_hashed(order_id);
        let Some(s) = shard.map.find(hash, order_id) else {
            return false;
        };
        let order = shard.map.order(s);
        if order.status != Status::Reserved || !self.holds_present(&order.lines) {
            return false;
        }
        self.end_holds(&order.lines, status);
        State::enter_finished(&mut shard, s, status, at);
        drop(shard);
        if let Some(p) = payment_id {
            let paid = status == Status::Paid;
            let answer = if paid { ANSWER_PAID } else { ANSWER_RELEASED };
            let mut keys = self.payments.shard(p);
            remember_payment(&mut keys, p, order_id, paid, answer, at);
        }
        true
    }

    fn apply_stock(
        &self,
        sku: &str,
        warehouse: &str,
        at: Millis,
        (on_hand, delta): (u64, i64),
        source: &str,
        keyed: Option<(&str, bool)>,
    ) -> bool {
        let Some(cell) = self.catalog.cell_or_insert(sku, warehouse) else {
            return false;
        };
        // Replayed by its delta, never by the absolute on_hand (docs/log-format.md).
        if self.move_on_hand(cell, delta).is_err() {
            return false;
        }
        let slot = self.catalog.sku(self.catalog.cell(cell).sku);
        claim_owner(&mut slot.owner.lock(), source);
        if let Some((id, is_set)) = keyed {
            let mut key = String::new();
            adjustment_key(source, id, &mut key);
            let amount = if is_set { on_hand as i64 } else { delta };
            let seen = adjustment_seen(cell, amount, is_set, at);
            self.adjustments.shard(&key).insert(&key, at, seen);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Entry, TAG_STOCK_ADJUSTED, TAG_STOCK_SET};

    fn apply(state: &State, entry: Entry) -> bool {
        state.apply(&entry.as_ref())
    }

    fn stock(sku: &str, on_hand: u64, delta: i64) -> Entry {
        Entry::Stock {
            tag: TAG_STOCK_SET,
            sku: sku.into(),
            warehouse: "w".into(),
            at: 1,
            on_hand,
            delta,
            source: "seller-1".into(),
            adjustment_id: None,
            reason: None,
        }
    }

    fn created(id: &str, lines: &[(&str, u64)]) -> Entry {
        Entry::Created {
            order_id: id.into(),
            at: 2,
            expires_at: 900_002,
            lines: lines
                .iter()
                .map(|(sku, qty)| (sku.to_string(), "w".to_string(), *qty))
                .collect(),
        }
    }

    fn finished(tag: u8, id: &str) -> Entry {
        Entry::Finished {
            tag,
            order_id: id.into(),
            at: 3,
            payment_id: None,
            lines: Vec::new(),
        }
    }

    fn level(state: &State, sku: &str) -> (u64, u64) {
        let cell = state.catalog.find_cell(sku, "w").expect("cell");
        state.catalog.cell(cell).stock.load()
    }

    #[test]
    fn replay_applies_what_the_live_path_decided() {
        let state = State::new(1);
        assert!(apply(&state, stock("A", 5, 5)));
        assert!(apply(&state, stock("B", 2, 2)));
        assert!(apply(&state, created("o1", &[("A", 2), ("B", 1)])));
        assert_eq!(level(&state, "A"), (5, 2));
        assert!(apply(&state, finished(TAG_PAID, "o1")));
        assert_eq!((level(&state, "A"), level(&state, "B")), ((3, 0), (1, 0)));
        assert!(apply(&state, created("o2", &[("A", 3)])));
        assert!(apply(&state, finished(TAG_EXPIRED, "o2")));
        assert_eq!(level(&state, "A"), (3, 0));
        assert_eq!(state.check_invariants(), Ok(()));
        let owner = state
            .catalog
            .sku(state.catalog.find_sku("A").expect("sku"))
            .owner
            .lock();
        assert_eq!(owner.as_deref(), Some("seller-1"));
    }

    /// A slot keeps `expires_at - created_at` in 32 bits: a created entry whose ttl is
    /// negative or beyond `MAX_TTL_SECONDS` does not fit and changes nothing.
    #[test]
    fn a_created_entry_with_a_ttl_out_of_range_is_refused() {
        let state = State::new(1);
        assert!(apply(&state, stock("A", 5, 5)));
        for expires_at in [1, 2 + crate::limits::MAX_TTL_SECONDS * 1000 + 1, u64::MAX] {
            let mut e = created("o1", &[("A", 1)]);
            if let Entry::Created { expires_at: x, .. } = &mut e {
                *x = expires_at;
            }
            assert!(!apply(&state, e), "expires_at {expires_at}");
            assert_eq!(level(&state, "A"), (5, 0));
        }
        let mut e = created("o1", &[("A", 1)]);
        if let Entry::Created { expires_at: x, .. } = &mut e {
            *x = 2 + crate::limits::MAX_TTL_SECONDS * 1000;
        }
        assert!(apply(&state, e), "the longest ttl fits");
        assert_eq!(level(&state, "A"), (5, 1));
    }

    /// Before 2026-12-03 replay clamped cell figures at zero, so a log that disagreed with
    /// its state was silently "repaired". Now nothing applies and the caller is told.
    #[test]
    fn an_entry_that_does_not_fit_its_state_changes_nothing() {
        let state = State::new(1);
        assert!(apply(&state, stock("A", 3, 3)));
        assert!(apply(&state, stock("B", 1, 1)));
        // More than is available, on the second line: the first line's hold is given back.
        assert!(!apply(&state, created("o1", &[("A", 2), ("B", 2)])));
        assert_eq!((level(&state, "A"), level(&state, "B")), ((3, 0), (1, 0)));
        assert!(state.orders.shard("o1").map.get("o1").is_none());
        assert!(apply(&state, created("o1", &[("A", 2)])));
        // A stock move below what is reserved, or a second reservation of a live id.
        assert!(!apply(&state, stock("A", 1, -2)));
        assert!(!apply(&state, created("o1", &[("A", 1)])));
        assert_eq!(level(&state, "A"), (3, 2));
        // An end of an unknown or already finished order, or with an unknown tag.
        assert!(!apply(&state, finished(TAG_RELEASED, "nobody")));
        assert!(!apply(&state, finished(TAG_STOCK_ADJUSTED, "o1")));
        assert!(apply(&state, finished(TAG_RELEASED, "o1")));
        assert!(!apply(&state, finished(TAG_PAID, "o1")));
        assert_eq!(level(&state, "A"), (3, 0));
        // A refused re-creation keeps the finished order; a line of an unknown cell makes none.
        assert!(!apply(&state, created("o1", &[("A", 9)])));
        let status = state.orders.shard("o1").map.get("o1").map(|o| o.status);
        assert_eq!(status, Some(Status::Released));
        assert!(!apply(&state, created("o3", &[("A", 1), ("Z", 1)])));
        assert!(state.catalog.find_cell("Z", "w").is_none());
        // Lines that are empty, zero, or the same cell twice.
        assert!(!apply(&state, created("o2", &[])));
        assert!(!apply(&state, created("o2", &[("A", 0)])));
        assert!(!apply(&state, created("o2", &[("A", 1), ("A", 1)])));
        assert_eq!(level(&state, "A"), (3, 0));
        assert_eq!(state.check_invariants(), Ok(()));
    }

    #[test]
    fn a_late_payment_record_replaces_the_finished_order() {
        let state = State::new(1);
        assert!(apply(&state, stock("A", 4, 4)));
        assert!(apply(&state, created("o1", &[("A", 1)])));
        assert!(apply(&state, finished(TAG_EXPIRED, "o1")));
        assert!(apply(&state, created("o1", &[("A", 1)])));
        assert!(apply(&state, finished(TAG_PAID, "o1")));
        let shard = state.orders.shard("o1");
        assert_eq!(shard.map.get("o1").map(|o| o.status), Some(Status::Paid));
        assert_eq!(shard.map.len(), 1);
        drop(shard);
        assert_eq!(level(&state, "A"), (3, 0));
        assert_eq!(state.check_invariants(), Ok(()));
    }

    /// Replay reads line names as bytes and only finds existing cells by them: a record whose
    /// names are not UTF-8 must still be refused, by replay and by the event reader.
    #[test]
    fn a_line_name_that_is_not_utf8_is_refused() {
        use crate::record::{decode_entry_refs, Encoder};
        let mut names = Vec::new();
        names.extend_from_slice(&2u16.to_le_bytes());
        names.extend_from_slice(&[0xff, 0xfe]);
        names.extend_from_slice(&1u16.to_le_bytes());
        names.push(b'w');
        let mut buf = Vec::new();
        let mut enc = Encoder::new(&mut buf);
        enc.created("o1", 1, 2, [(&names[..], 1u64)].into_iter());
        let entries = decode_entry_refs(&buf, 1).expect("decodes");
        let state = State::new(1);
        assert!(!state.apply(&entries[0]));
        assert_eq!(state.catalog.cell_count(), 0);
        assert!(entries[0].into_entry().is_none());
    }
}
