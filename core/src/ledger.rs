//! The ledger: decides every operation on the lock-free cells and the sharded reservation
//! table, stages the decided effects for the log, and acknowledges once the durability mode
//! allows.
//!
//! Ordering rule (why every prefix of the log is a consistent state): an effect that frees
//! stock (release, expiry, commit, a stock increase) takes its lsn *before* touching the
//! cell; an effect that consumes stock (reserve, a stock decrease) takes its lsn *after*.
//! So whenever a consumer relied on freed stock, the freeing record precedes it in the log,
//! and a crash that keeps a prefix of the log never keeps the consumer without the freeing.

use std::path::Path;
use std::sync::Arc;

use crate::apply::{adjustment_seen, claim_owner, finished_status};
use crate::catalog::CellId;
use crate::error::{Error, Result, Shortfall};
use crate::limits;
use crate::options::{Durability, Options};
use crate::orders::{HeldLine, Lines, Order, OrderShard, SlotId};
use crate::record::{Encoder, StockKind, TAG_EXPIRED, TAG_PAID, TAG_RELEASED};
use crate::sequencer::{Lsn, Sequencer};
use crate::state::{adjustment_key, State, WAREHOUSE_SOURCE};
use crate::time::Millis;
use crate::types::{Line, OrderLine, Reservation, Reserved, SkuStock, Source, Status, StockLevel};
use crate::wal::Log;

use crate::limits::RESERVE_ATTEMPTS;

/// Lines of an order whose cells are prefetched before they are looked up.
const PREFETCH_LINES: usize = 8;

/// An inventory ledger. Cheap to share between threads (`Arc<Ledger>`); every method takes
/// `&self`.
pub struct Ledger {
    pub(crate) state: Arc<State>,
    pub(crate) seq: Arc<Sequencer>,
    pub(crate) log: Log,
    pub(crate) options: Options,
    pub(crate) stats: crate::stats::Stats,
    /// `options.max_orders` spread over the order shards.
    pub(crate) orders_per_shard: usize,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Opens (creating if needed) the ledger in `dir`: takes the folder's lock, recovers
    /// from the newest snapshot and the log, and starts the log writer. With
    /// `Durability::None` the folder is not touched.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Ledger> {
        let log = crate::wal::open(dir.as_ref(), &options)?;
        Ok(Ledger::build(log, options))
    }

    /// A memory-only ledger (`Durability::None`).
    pub fn in_memory(mut options: Options) -> Ledger {
        options.durability = Durability::None;
        Ledger::build(crate::wal::open_in_memory(options.clock.clone()), options)
    }

    /// The ledger on an opened log (the log owns the recovered state and the sequencer).
    fn build(log: Log, options: Options) -> Ledger {
        debug_assert_eq!(log.shared.durability, options.durability);
        Ledger {
            state: log.state.clone(),
            seq: log.seq.clone(),
            log,
            orders_per_shard: crate::orders::Orders::per_shard(options.max_orders),
            options,
            stats: crate::stats::Stats::default(),
        }
    }

    pub fn durability(&self) -> Durability {
        self.options.durability
    }

    /// The ledger's clock (`Options::clock`): callers that judge time beside the ledger, such as
    /// a payment callback's signature window, read the same clock its expiry does.
    pub fn now_ms(&self) -> Millis {
        self.options.clock.now_ms()
    }

    /// Waits until `lsn` may be acknowledged under the durability mode.
    pub(crate) fn ack(&self, lsn: Lsn) -> Result<()> {
        self.log.wait(lsn)
    }

    /// The lsn of everything staged so far: a no-op answer waits for it, so that it never
    /// acknowledges a change another caller made but that is not yet durable.
    fn staged_so_far(&self) -> Lsn {
        self.seq.next_lsn() - 1
    }

    // ---- reads -------------------------------------------------------------------------

    /// The figures of one cell (zeros for an unknown cell).
    pub fn stock(&self, sku: &str, warehouse: &str) -> Result<StockLevel> {
        limits::check_name("sku", sku)?;
        limits::check_name("warehouse", warehouse)?;
        Ok(match self.state.catalog.find_cell(sku, warehouse) {
            Some(id) => self.level(id),
            None => StockLevel::default(),
        })
    }

    fn level(&self, id: CellId) -> StockLevel {
        let (on_hand, reserved) = self.state.catalog.cell(id).stock.load();
        StockLevel::new(on_hand, reserved)
    }

    /// Every cell of a sku, sorted by warehouse; `None` for a sku never set or adjusted.
    pub fn sku_stock(&self, sku: &str) -> Result<Option<SkuStock>> {
        limits::check_name("sku", sku)?;
        let Some(id) = self.state.catalog.find_sku(sku) else {
            return Ok(None);
        };
        let catalog = &self.state.catalog;
        let mut cells = catalog.sku_cells(id).peekable();
        if cells.peek().is_none() {
            // Made by a write that was then refused (see `stock_change`).
            return Ok(None);
        }
        let mut out = SkuStock {
            sku: sku.to_string(),
            ..SkuStock::default()
        };
        for cell in cells {
            let wh = catalog.cell(cell).warehouse();
            let level = self.level(cell);
            // Thousands of cells near the on_hand limit overflow u64: saturate.
            out.total.on_hand = out.total.on_hand.saturating_add(level.on_hand);
            out.total.reserved = out.total.reserved.saturating_add(level.reserved);
            out.total.available = out.total.available.saturating_add(level.available);
            out.warehouses.push((wh.to_string(), level));
        }
        Ok(Some(out))
    }

    /// The seller that owns a sku (the first to set or adjust it), if any.
    pub fn owner(&self, sku: &str) -> Option<String> {
        let id = self.state.catalog.find_sku(sku)?;
        self.state
            .catalog
            .sku(id)
            .owner
            .lock()
            .as_deref()
            .map(String::from)
    }

    pub fn reservation(&self, order_id: &str) -> Result<Option<Reservation>> {
        limits::check_key("order_id", order_id)?;
        let shard = self.state.orders.shard(order_id);
        Ok(shard.map.get(order_id).map(|o| self.view(order_id, &o)))
    }

    pub(crate) fn view(&self, order_id: &str, o: &Order) -> Reservation {
        Reservation {
            order_id: order_id.to_string(),
            status: o.status,
            lines: o
                .lines
                .iter()
                .map(|l| {
                    let slot = self.state.catalog.cell(l.cell);
                    Line {
                        sku: self.state.catalog.sku(slot.sku).name.to_string(),
                        warehouse: slot.warehouse().to_string(),
                        qty: l.qty as u64,
                    }
                })
                .collect(),
            created_at: o.created_at,
            expires_at: o.expires_at(),
            finished_at: (o.finished_at != 0).then_some(o.finished_at),
        }
    }

    pub(crate) fn line_names<'a>(
        &'a self,
        lines: &'a [HeldLine],
    ) -> impl ExactSizeIterator<Item = (&'a [u8], u64)> + 'a {
        lines
            .iter()
            .map(|l| (self.state.catalog.cell(l.cell).names(), l.qty as u64))
    }

    // ---- reserve -----------------------------------------------------------------------

    /// Hard-reserves every line or none (see `domain.md`). An idempotent replay (same
    /// order id, same lines in any order) returns the existing reservation unchanged.
    pub fn reserve(&self, order_id: &str, lines: &[Line], ttl_seconds: u64) -> Result<Reserved> {
        let (created, _, lsn, reservation) =
            self.reserve_decide(order_id, lines, ttl_seconds, |o| self.view(order_id, o))?;
        self.ack(lsn)?;
        Ok(Reserved {
            reservation,
            created,
        })
    }

    /// Like [`Ledger::reserve`] without copying the reservation back: (created, status).
    /// For callers that already hold the lines (the hot path of a service or a benchmark).
    pub fn reserve_ack(
        &self,
        order_id: &str,
        lines: &[Line],
        ttl_seconds: u64,
    ) -> Result<(bool, Status)> {
        let (created, status, lsn) = self.reserve_nowait(order_id, lines, ttl_seconds)?;
        self.ack(lsn)?;
        Ok((created, status))
    }

    /// Like [`Ledger::commit`] without copying the reservation back.
    pub fn commit_ack(&self, order_id: &str) -> Result<()> {
        let lsn = self.commit_nowait(order_id, None)?;
        self.ack(lsn)
    }

    /// Like [`Ledger::release`] without copying the reservation back.
    pub fn release_ack(&self, order_id: &str) -> Result<()> {
        let lsn = self.release_nowait(order_id)?;
        self.ack(lsn)
    }

    /// The reserve decision without waiting for durability: (created, status, lsn to ack).
    pub(crate) fn reserve_nowait<L: OrderLine>(
        &self,
        order_id: &str,
        lines: &[L],
        ttl_seconds: u64,
    ) -> Result<(bool, Status, Lsn)> {
        let (created, status, lsn, ()) =
            self.reserve_decide(order_id, lines, ttl_seconds, |_| ())?;
        Ok((created, status, lsn))
    }

    /// The reserve decision, with `answer` applied to the order as decided (under its
    /// shard's lock, so no second lookup): (created, status, lsn to ack, answer).
    pub(crate) fn reserve_decide<L: OrderLine, R>(
        &self,
        order_id: &str,
        lines: &[L],
        ttl_seconds: u64,
        answer: impl FnOnce(&Order) -> R,
    ) -> Result<(bool, Status, Lsn, R)> {
        limits::check_key("order_id", order_id)?;
        // A new id misses in the index of every order of the retention: start that load
        // now and resolve the lines while it arrives.
        let hash = self.state.orders.hash(order_id);
        self.state.orders.prefetch(hash);
        let (held, unknown) = self.resolve(lines)?;
        limits::check_ttl(ttl_seconds)?;
        self.log.check_writable()?;

        let mut shard = self.state.orders.lock_hashed(hash);
        if let Some(s) = shard.map.find(hash, order_id) {
            let existing = shard.map.order(s);
            if unknown || existing.lines[..] != held[..] {
                return Err(Error::OrderConflict {
                    order_id: order_id.into(),
                });
            }
            let status = existing.status;
            let answered = answer(&existing);
            drop(shard);
            self.stats.replays.inc();
            return Ok((false, status, self.staged_so_far(), answered));
        }
        if unknown {
            drop(shard);
            return Err(self.shortfalls(lines));
        }
        if shard.map.len() >= self.orders_per_shard || shard.map.is_nearly_full() {
            return Err(Error::CapacityExhausted {
                limit: "max_orders",
                max: self.options.max_orders as u64,
            });
        }
        self.hold_all(&held).map_err(|()| {
            self.stats.refusals.inc();
            self.shortfalls(lines)
        })?;

        let now = self.now_ms();
        let expires_at = now + ttl_seconds * 1000;
        // Consumer: the lsn comes after the cells moved.
        let (lsn, ()) = self.seq.stage(
            || (),
            |enc, _| enc.created(order_id, now, expires_at, self.line_names(&held)),
        );
        let s = State::enter_reserved(&mut shard, hash, order_id, held, now, expires_at);
        let answered = answer(&shard.map.order(s));
        drop(shard);
        self.stats.reserved.inc();
        Ok((true, Status::Reserved, lsn, answered))
    }

    /// Resolves the lines to cells, sorted by cell id, and says whether any cell is unknown.
    /// A found cell proves its names valid (they were checked when it was made), so the
    /// full check of `limits::check_lines` runs only for unknown cells, bad quantities or
    /// duplicates, where it also yields the error naming the field.
    fn resolve<L: OrderLine>(&self, lines: &[L]) -> Result<(Lines, bool)> {
        if lines.is_empty() || lines.len() > limits::MAX_LINES {
            limits::check_lines(lines)?;
        }
        let catalog = &self.state.catalog;
        // Hash the first lines and prefetch their index slots, then their cells, then find
        // them: the cache misses of an order's lines overlap instead of adding up.
        let mut hashes = [0u64; PREFETCH_LINES];
        let ahead = lines.len().min(PREFETCH_LINES);
        for (hash, line) in hashes.iter_mut().zip(&lines[..ahead]) {
            *hash = catalog.prefetch_cell(line.sku().as_bytes(), line.warehouse().as_bytes());
        }
        for &hash in &hashes[..ahead] {
            catalog.prefetch_found_cell(hash);
        }
        let mut held = Lines::new();
        let mut unknown = false;
        let mut slow = false;
        for (i, line) in lines.iter().enumerate() {
            let qty = line.qty();
            if !(1..=limits::MAX_QTY).contains(&qty) {
                slow = true;
                continue;
            }
            let (sku, warehouse) = (line.sku().as_bytes(), line.warehouse().as_bytes());
            let found = if i < ahead {
                catalog.find_cell_hashed(hashes[i], sku, warehouse)
            } else {
                catalog.find_cell_bytes(sku, warehouse)
            };
            match found {
                Some(cell) => held.push(HeldLine {
                    cell,
                    qty: qty as u32,
                }),
                None => unknown = true,
            }
        }
        held.sort_unstable();
        if slow || unknown || held.windows(2).any(|w| w[0].cell == w[1].cell) {
            limits::check_lines(lines)?;
        }
        debug_assert!(unknown || held.len() == lines.len());
        Ok((held, unknown))
    }

    /// Holds every line in cell order, undoing on a shortfall. A shortfall seen while the
    /// re-read shows every line fitting was caused by another order's brief hold: retry.
    pub(crate) fn hold_all(&self, held: &[HeldLine]) -> std::result::Result<(), ()> {
        let catalog = &self.state.catalog;
        for attempt in 0..RESERVE_ATTEMPTS {
            if self.state.hold_lines(held).is_ok() {
                return Ok(());
            }
            let fits_now = held.iter().all(|l| {
                let (on_hand, reserved) = catalog.cell(l.cell).stock.load();
                on_hand - reserved >= l.qty as u64
            });
            if !fits_now {
                return Err(());
            }
            self.stats.transient_retries.inc();
            if attempt + 1 == RESERVE_ATTEMPTS {
                self.stats.spurious_refusals.inc();
            }
        }
        Err(())
    }

    fn shortfalls<L: OrderLine>(&self, lines: &[L]) -> Error {
        let mut shortfalls = Vec::new();
        for line in lines {
            let available = match self.state.catalog.find_cell(line.sku(), line.warehouse()) {
                Some(id) => self.level(id).available,
                None => 0,
            };
            if available < line.qty() {
                shortfalls.push(Shortfall {
                    sku: line.sku().to_owned(),
                    warehouse: line.warehouse().to_owned(),
                    requested: line.qty(),
                    available,
                });
            }
        }
        if shortfalls.is_empty() {
            // Stock came back between the refusal and this read; report the first line as
            // it was requested, with what is available now, rather than an empty list.
            if let Some(line) = lines.first() {
                let available = self
                    .stock(line.sku(), line.warehouse())
                    .map(|l| l.available)
                    .unwrap_or(0);
                shortfalls.push(Shortfall {
                    sku: line.sku().to_owned(),
                    warehouse: line.warehouse().to_owned(),
                    requested: line.qty(),
                    available,
                });
            }
        }
        Error::InsufficientStock { shortfalls }
    }

    // ---- commit, release, expire -------------------------------------------------------

    /// `reserved` -> `paid`: each line leaves the warehouse.
    pub fn commit(&self, order_id: &str) -> Result<Reservation> {
        let lsn = self.commit_nowait(order_id, None)?;
        self.ack(lsn)?;
        self.reservation(order_id)?
            .ok_or_else(|| Error::OrderNotFound {
                order_id: order_id.into(),
            })
    }

    pub(crate) fn commit_nowait(&self, order_id: &str, payment_id: Option<&str>) -> Result<Lsn> {
        limits::check_key("order_id", order_id)?;
        self.log.check_writable()?;
        let (hash, mut shard) = self.state.orders.shard_hashed(order_id);
        let s = Self::find(&shard, hash, order_id)?;
        self.commit_slot(&mut shard, s, order_id, payment_id)
    }

    fn find(shard: &OrderShard, hash: u64, order_id: &str) -> Result<SlotId> {
        shard
            .map
            .find(hash, order_id)
            .ok_or_else(|| Error::OrderNotFound {
                order_id: order_id.into(),
            })
    }

    pub(crate) fn commit_locked(
        &self,
        shard: &mut OrderShard,
        order_id: &str,
        payment_id: Option<&str>,
    ) -> Result<Lsn> {
        let hash = self.state.orders.hash(order_id);
        let s = Self::find(shard, hash, order_id)?;
        self.commit_slot(shard, s, order_id, payment_id)
    }

    fn commit_slot(
        &self,
        shard: &mut OrderShard,
        s: SlotId,
        order_id: &str,
        payment_id: Option<&str>,
    ) -> Result<Lsn> {
        let now = self.now_ms();
        let order = shard.map.order(s);
        match order.status {
            Status::Paid => return Ok(self.staged_so_far()),
            Status::Released | Status::Expired => {
                return Err(Error::OrderNotActive {
                    order_id: order_id.into(),
                    status: order.status.as_str(),
                })
            }
            Status::Reserved if now >= order.expires_at() => {
                return Err(Error::OrderNotActive {
                    order_id: order_id.into(),
                    status: "expired",
                })
            }
            Status::Reserved => {}
        }
        let lines = &order.lines;
        let (lsn, ()) = self.seq.stage(
            || self.state.end_holds(lines, Status::Paid),
            |enc, _| enc.finished(TAG_PAID, order_id, now, payment_id, self.line_names(lines)),
        );
        State::enter_finished(shard, s, Status::Paid, now);
        self.stats.committed.inc();
        Ok(lsn)
    }

    /// `reserved` -> `released`; a released or expired one is returned as it is.
    pub fn release(&self, order_id: &str) -> Result<Reservation> {
        let lsn = self.release_nowait(order_id)?;
        self.ack(lsn)?;
        self.reservation(order_id)?
            .ok_or_else(|| Error::OrderNotFound {
                order_id: order_id.into(),
            })
    }

    pub(crate) fn release_nowait(&self, order_id: &str) -> Result<Lsn> {
        limits::check_key("order_id", order_id)?;
        self.log.check_writable()?;
        let (hash, mut shard) = self.state.orders.shard_hashed(order_id);
        let s = Self::find(&shard, hash, order_id)?;
        match shard.map.order(s).status {
            Status::Paid => Err(Error::OrderPaid {
                order_id: order_id.into(),
            }),
            Status::Released | Status::Expired => Ok(self.staged_so_far()),
            Status::Reserved => {
                let lsn = self.finish_slot_unheld(&mut shard, s, order_id, TAG_RELEASED, None);
                self.stats.released.inc();
                Ok(lsn)
            }
        }
    }

    /// Ends a reserved order by giving its stock back (release, expiry, failed payment).
    pub(crate) fn finish_unheld(
        &self,
        shard: &mut OrderShard,
        order_id: &str,
        tag: u8,
        payment_id: Option<&str>,
    ) -> Lsn {
        let hash = self.state.orders.hash(order_id);
        let Some(s) = shard.map.find(hash, order_id) else {
            unreachable!("finish_unheld on a missing order");
        };
        self.finish_slot_unheld(shard, s, order_id, tag, payment_id)
    }

    fn finish_slot_unheld(
        &self,
        shard: &mut OrderShard,
        s: SlotId,
        order_id: &str,
        tag: u8,
        payment_id: Option<&str>,
    ) -> Lsn {
        let now = self.now_ms();
        let order = shard.map.order(s);
        assert_eq!(order.status, Status::Reserved);
        let lines = &order.lines;
        let status = finished_status(tag).filter(|s| *s != Status::Paid);
        let Some(status) = status else {
            unreachable!("finish_slot_unheld with tag {tag}");
        };
        // Freeing: the lsn is fixed before the cells move.
        let (lsn, ()) = self.seq.stage(
            || self.state.end_holds(lines, status),
            |enc, _| enc.finished(tag, order_id, now, payment_id, self.line_names(lines)),
        );
        State::enter_finished(shard, s, status, now);
        lsn
    }

    /// Expires every reservation due by the clock's now.
    pub fn expire_due(&self) -> Result<Vec<String>> {
        self.expire_due_at(self.now_ms())
    }

    /// Expires every reservation whose `expires_at <= now`, returns their order ids, and
    /// prunes finished reservations and idempotency keys older than the retention.
    pub fn expire_due_at(&self, now: Millis) -> Result<Vec<String>> {
        self.log.check_writable()?;
        let mut due = Vec::new();
        let mut expired = Vec::new();
        let mut last = 0;
        for mut shard in self.state.orders.shards() {
            due.clear();
            shard.pop_due(now, &mut due);
            for &s in due.iter() {
                let id = shard.map.id(s).to_string();
                last = self.finish_slot_unheld(&mut shard, s, &id, TAG_EXPIRED, None);
                expired.push(id);
            }
        }
        let cutoff = now.saturating_sub(self.options.retention_ms);
        if self.state.prune_retained(cutoff) > 0 {
            // Replay prunes at this point of the log too (see `TAG_RETENTION_NOTE`).
            let (lsn, ()) = self.seq.stage(|| (), |enc, _| enc.retention_note(cutoff));
            last = last.max(lsn);
        }
        self.stats.expired.add(expired.len() as u64);
        if last != 0 {
            self.ack(last)?;
        }
        Ok(expired)
    }

    // ---- stock -------------------------------------------------------------------------

    /// Sets a cell's on_hand; refused with `below_reserved` below what is reserved.
    pub fn set_stock(
        &self,
        sku: &str,
        warehouse: &str,
        on_hand: u64,
        source: Source<'_>,
    ) -> Result<StockLevel> {
        let (level, lsn) = self.set_stock_nowait(sku, warehouse, on_hand, None, source)?;
        self.ack(lsn)?;
        Ok(level)
    }

    fn check_source(source: Source<'_>) -> Result<()> {
        if let Source::Seller(s) = source {
            if s == WAREHOUSE_SOURCE || s.is_empty() || s.len() > limits::MAX_KEY_BYTES {
                return Err(Error::invalid(
                    "source",
                    "seller id must be 1 to 128 bytes and not 'warehouse'",
                ));
            }
        }
        Ok(())
    }

    /// Sets on_hand at most once per `(source, key)`: a replay of the key returns the cell
    /// as it is now and applies nothing; the same key with another cell or on_hand is an
    /// `adjustment_conflict`. For feeds that redeliver (the warehouse stock topic).
    pub fn set_stock_once(
        &self,
        sku: &str,
        warehouse: &str,
        on_hand: u64,
        key: &str,
        source: Source<'_>,
    ) -> Result<StockLevel> {
        limits::check_key("key", key)?;
        let (level, lsn) = self.set_stock_nowait(sku, warehouse, on_hand, Some(key), source)?;
        self.ack(lsn)?;
        Ok(level)
    }

    pub(crate) fn set_stock_nowait(
        &self,
        sku: &str,
        warehouse: &str,
        on_hand: u64,
        key: Option<&str>,
        source: Source<'_>,
    ) -> Result<(StockLevel, Lsn)> {
        limits::check_name("sku", sku)?;
        limits::check_name("warehouse", warehouse)?;
        limits::check_on_hand("on_hand", on_hand)?;
        Self::check_source(source)?;
        self.log.check_writable()?;
        let Some(key) = key else {
            return self.set_stock_decided(sku, warehouse, on_hand, StockKind::Set, source);
        };
        let mut full = String::new();
        adjustment_key(source.name(), key, &mut full);
        let mut keys = self.state.adjustments.shard(&full);
        if let Some(seen) = keys.map.get(full.as_str()) {
            let same_cell = self.state.catalog.find_cell(sku, warehouse) == Some(seen.cell);
            if !same_cell || !seen.is_set || seen.delta != on_hand as i64 {
                return Err(Error::AdjustmentConflict {
                    adjustment_id: key.into(),
                });
            }
            return Ok((self.level(seen.cell), self.staged_so_far()));
        }
        let now = self.now_ms();
        let (level, lsn) =
            self.set_stock_decided(sku, warehouse, on_hand, StockKind::SetKeyed(key), source)?;
        if let Some(cell) = self.state.catalog.find_cell(sku, warehouse) {
            keys.insert(&full, now, adjustment_seen(cell, on_hand as i64, true, now));
        }
        Ok((level, lsn))
    }

    fn set_stock_decided(
        &self,
        sku: &str,
        warehouse: &str,
        on_hand: u64,
        kind: StockKind<'_>,
        source: Source<'_>,
    ) -> Result<(StockLevel, Lsn)> {
        self.stock_change(sku, warehouse, source, kind, |old, reserved| {
            if on_hand < reserved {
                Err(Error::BelowReserved {
                    on_hand: old,
                    reserved,
                    requested_on_hand: on_hand as i128,
                })
            } else {
                Ok(on_hand)
            }
        })
    }

    /// Adds `delta` to on_hand, idempotent by `(source, adjustment_id)`.
    #[allow(clippy::too_many_arguments)]
    pub fn adjust_stock(
        &self,
        sku: &str,
        warehouse: &str,
        delta: i64,
        adjustment_id: &str,
        reason: Option<&str>,
        source: Source<'_>,
    ) -> Result<StockLevel> {
        let (level, lsn) =
            self.adjust_stock_nowait(sku, warehouse, delta, adjustment_id, reason, source)?;
        self.ack(lsn)?;
        Ok(level)
    }

    pub(crate) fn adjust_stock_nowait(
        &self,
        sku: &str,
        warehouse: &str,
        delta: i64,
        adjustment_id: &str,
        reason: Option<&str>,
        source: Source<'_>,
    ) -> Result<(StockLevel, Lsn)> {
        limits::check_name("sku", sku)?;
        limits::check_name("warehouse", warehouse)?;
        limits::check_delta(delta)?;
        limits::check_key("adjustment_id", adjustment_id)?;
        limits::check_reason(reason)?;
        Self::check_source(source)?;
        self.log.check_writable()?;
        let mut key = String::new();
        adjustment_key(source.name(), adjustment_id, &mut key);
        let mut keys = self.state.adjustments.shard(&key);
        if let Some(seen) = keys.map.get(key.as_str()) {
            let same_cell = self.state.catalog.find_cell(sku, warehouse) == Some(seen.cell);
            if !same_cell || seen.is_set || seen.delta != delta {
                return Err(Error::AdjustmentConflict {
                    adjustment_id: adjustment_id.into(),
                });
            }
            let level = self.level(seen.cell);
            return Ok((level, self.staged_so_far()));
        }
        let now = self.now_ms();
        let (level, lsn) = self.stock_change(
            sku,
            warehouse,
            source,
            StockKind::Adjusted(adjustment_id, reason),
            |old, reserved| {
                let next = old as i128 + delta as i128;
                if next < reserved as i128 || next > limits::MAX_ON_HAND as i128 {
                    Err(Error::BelowReserved {
                        on_hand: old,
                        reserved,
                        requested_on_hand: next,
                    })
                } else {
                    Ok(next as u64)
                }
            },
        )?;
        let cell = self.state.catalog.find_cell(sku, warehouse);
        if let Some(cell) = cell {
            keys.insert(&key, now, adjustment_seen(cell, delta, false, now));
        }
        Ok((level, lsn))
    }

    /// One stock write: ownership check and claim, the cell change, its event. Serialised
    /// per sku by the owner lock, so stock events of a cell are in the order they happened.
    fn stock_change(
        &self,
        sku: &str,
        warehouse: &str,
        source: Source<'_>,
        kind: StockKind<'_>,
        decide: impl Fn(u64, u64) -> Result<u64>,
    ) -> Result<(StockLevel, Lsn)> {
        let catalog = &self.state.catalog;
        let full = || Error::CapacityExhausted {
            limit: "catalog cells",
            max: limits::MAX_CELLS as u64,
        };
        // Ownership is checked under the sku's owner lock *before* a cell is made, so a
        // seller that loses the race to claim a new sku leaves no cell behind (a bare sku
        // slot without cells is invisible to readers).
        let sku_id = catalog.sku_or_insert(sku).ok_or_else(full)?;
        let mut owner = catalog.sku(sku_id).owner.lock();
        if let Source::Seller(seller) = source {
            if matches!(owner.as_deref(), Some(o) if o != seller) {
                return Err(Error::Forbidden { sku: sku.into() });
            }
        }
        if catalog.find_cell(sku, warehouse).is_none() {
            // A refused write must not make an unknown cell known.
            decide(0, 0)?;
        }
        let cell = catalog.cell_or_insert(sku, warehouse).ok_or_else(full)?;
        let slot = catalog.cell(cell);
        let now = self.now_ms();
        let encode = |enc: &mut Encoder<'_>, moved: &(u64, u64)| {
            let (old, next) = *moved;
            let delta = next as i64 - old as i64;
            enc.stock(sku, warehouse, now, next, delta, source.name(), kind)
        };
        // Only commits move on_hand concurrently (down), so a write that is an increase when
        // decided stays one; a decrease may turn into an increase and then goes that way.
        let (old, reserved) = slot.stock.load();
        let decrease = decide(old, reserved)? < old;
        let consumed = if decrease {
            match slot.stock.update_on_hand(|o, r| match decide(o, r) {
                Ok(n) if n > o => Err(None),
                Ok(n) => Ok(n),
                Err(e) => Err(Some(e)),
            }) {
                Ok(moved) => Some(moved),
                Err(Some(e)) => return Err(e),
                Err(None) => None,
            }
        } else {
            None
        };
        let lsn = match consumed {
            // Consumer: the lsn after the cell moved.
            Some(moved) => self.seq.stage(|| moved, encode).0,
            // Freeing: the lsn before the cell moves.
            None => {
                self.seq
                    .stage(
                        || {
                            slot.stock
                                .update_on_hand(&decide)
                                .unwrap_or_else(|e| panic!("stock increase refused: {e}"))
                        },
                        encode,
                    )
                    .0
            }
        };
        claim_owner(&mut owner, source.name());
        drop(owner);
        Ok((self.level(cell), lsn))
    }

    // ---- the log -----------------------------------------------------------------------

    /// Writes a snapshot of the durable state now; returns the last seq it holds.
    pub fn checkpoint(&self) -> Result<u64> {
        self.log.checkpoint()
    }

    /// Durable events with `seq > after`, at most `limit`.
    pub fn events(&self, after: u64, limit: usize) -> Result<Vec<crate::Event>> {
        if self.log.check_writable().is_ok() {
            self.log.flush(self.staged_so_far())?;
        }
        self.log.events(after, limit)
    }

    /// The seq of the last durable event.
    pub fn last_seq(&self) -> u64 {
        self.log.durable_seq()
    }

    /// Why the ledger refuses writes, if it does.
    pub fn unavailable_reason(&self) -> Option<String> {
        self.log.check_writable().err().map(|e| e.to_string())
    }

    /// Flushes the log and stops the writer; every later call fails with
    /// `ledger_unavailable`. Idempotent.
    pub fn close(&self) -> Result<()> {
        self.log.close()
    }

    /// Counters of what the ledger did.
    pub fn stats(&self) -> crate::stats::StatsSnapshot {
        self.stats.snapshot(
            self.state.catalog.cell_count(),
            self.state.catalog.sku_count(),
            (self.state.orders.len(), self.state.orders.live()),
            self.log.counters(),
        )
    }

    /// Checks invariants 1-3 of `domain.md` over the whole state (tests; takes every shard
    /// lock in turn, so it is exact only while no writer runs).
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        self.state.check_invariants()
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        let _ = self.log.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::ManualClock;

    /// A shard whose records span as far as their handles may (cut here to two chunks a
    /// shard) refuses new reservations with `capacity_exhausted`, changing nothing, while
    /// its live reservations still finish into records; once the retention prunes them, it
    /// takes new ones again.
    #[test]
    fn a_shard_whose_records_span_too_far_refuses_new_orders_and_finishes_live_ones() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let ledger = Ledger::in_memory(Options {
            clock: clock.clone(),
            ..Options::default()
        });
        ledger
            .set_stock("s", "w", 10_000_000, Source::Warehouse)
            .expect("stock");
        let line = [Line::new("s", "w", 1)];
        let live: Vec<String> = (0..500).map(|i| format!("live-{i}")).collect();
        for id in &live {
            ledger.reserve(id, &line, 900).expect("reserve");
        }
        for mut shard in ledger.state.orders.shards() {
            shard.map.limit_record_span(2);
        }
        // Long ids fill a shard's first chunk of records in ~480 finished orders.
        let mut refused = None;
        for i in 0..200_000 {
            let id = format!("done-{i:0>100}");
            match ledger.reserve(&id, &line, 900) {
                Ok(_) => {
                    ledger.release(&id).expect("release");
                }
                Err(Error::CapacityExhausted { limit, .. }) => {
                    assert_eq!(limit, "max_orders");
                    refused = Some(id);
                    break;
                }
                Err(e) => panic!("{id}: {e}"),
            }
        }
        let refused = refused.expect("no shard filled its span");
        let level = ledger.stock("s", "w").expect("level");
        let seq = ledger.last_seq();
        let again = ledger.reserve(&refused, &line, 900);
        assert!(
            matches!(again, Err(Error::CapacityExhausted { .. })),
            "{again:?}"
        );
        assert_eq!(ledger.stock("s", "w").expect("level"), level);
        assert_eq!(ledger.last_seq(), seq);
        assert!(ledger.reservation(&refused).expect("read").is_none());
        // Every live reservation finishes, whatever its shard.
        for (i, id) in live.iter().enumerate() {
            if i % 2 == 0 {
                ledger.commit(id).expect("commit");
            } else {
                ledger.release(id).expect("release");
            }
        }
        ledger.check_invariants().expect("invariants");
        clock.advance(ledger.options.retention_ms + 1_000);
        ledger.expire_due().expect("prune");
        ledger
            .reserve(&refused, &line, 900)
            .expect("taken once the records were pruned");
        ledger.check_invariants().expect("invariants");
    }
}
