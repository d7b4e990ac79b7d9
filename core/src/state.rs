//! The in-memory state of a ledger (catalog, reservations, idempotency keys). How a decided
//! change is applied to it, live and in replay, is `apply.rs`.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use parking_lot::{Mutex, MutexGuard};

use crate::aging::Aging;
use crate::catalog::{Catalog, CellId};
use crate::orders::Orders;
use crate::time::Millis;
use crate::types::Status;

use crate::limits::{shard_of, KEY_SHARDS};

type Hasher = foldhash::fast::RandomState;

/// What an adjustment id was used for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AdjustmentKey {
    pub(crate) cell: CellId,
    /// The delta of an adjustment, or the on_hand of a keyed set.
    pub(crate) delta: i64,
    pub(crate) is_set: bool,
    pub(crate) at: Millis,
}

/// The answer given to a payment callback, remembered for its replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PaymentKey {
    pub(crate) order_id: Box<str>,
    pub(crate) succeeded: bool,
    pub(crate) answer: u8,
    pub(crate) at: Millis,
}

/// A value that knows when it was inserted.
pub(crate) trait Stamped {
    fn at(&self) -> Millis;
}

impl Stamped for AdjustmentKey {
    fn at(&self) -> Millis {
        self.at
    }
}

impl Stamped for PaymentKey {
    fn at(&self) -> Millis {
        self.at
    }
}

/// A map of idempotency keys, sharded, pruned after retention by insertion time.
pub(crate) struct KeyTable<V> {
    shards: Box<[CachePadded<Mutex<KeyShard<V>>>]>,
    hasher: Hasher,
}

pub(crate) struct KeyShard<V> {
    pub(crate) map: HashMap<Box<str>, V, Hasher>,
    order: Aging<Box<str>>,
}

impl<V> KeyShard<V> {
    pub(crate) fn insert(&mut self, key: &str, at: Millis, value: V) {
        self.map.insert(key.into(), value);
        self.order.push(at, key.into());
    }

    /// Inserts a key of a snapshot (in any order): [`KeyTable::settle_retention`] must
    /// follow the last one.
    pub(crate) fn insert_restored(&mut self, key: &str, at: Millis, value: V) {
        self.map.insert(key.into(), value);
        self.order.push_unsorted(at, key.into());
    }
}

impl<V> KeyTable<V> {
    pub(crate) fn new() -> KeyTable<V> {
        let hasher = Hasher::default();
        KeyTable {
            shards: (0..KEY_SHARDS)
                .map(|_| {
                    CachePadded::new(Mutex::new(KeyShard {
                        map: HashMap::with_hasher(hasher.clone()),
                        order: Aging::default(),
                    }))
                })
                .collect(),
            hasher,
        }
    }

    pub(crate) fn shard(&self, key: &str) -> MutexGuard<'_, KeyShard<V>> {
        let h = self.hasher.hash_one(key);
        self.shards[shard_of(h, KEY_SHARDS)].lock()
    }

    /// Forgets keys inserted before `cutoff`; returns how many.
    pub(crate) fn prune(&self, cutoff: Millis) -> usize
    where
        V: Stamped,
    {
        let mut pruned = 0;
        for s in self.shards.iter() {
            let mut s = s.lock();
            let KeyShard { map, order } = &mut *s;
            order.prune(cutoff, |at, k| {
                // The key may have been inserted again since: only its latest insertion
                // decides (that one has its own, later, entry).
                if map.get(&k).is_some_and(|v| v.at() <= at) {
                    map.remove(&k);
                    pruned += 1;
                }
            });
        }
        pruned
    }

    /// Sorts the keys a snapshot filled in (see `aging.rs`).
    pub(crate) fn settle_retention(&self) {
        for s in self.shards.iter() {
            s.lock().order.settle();
        }
    }

    pub(crate) fn for_each(&self, mut f: impl FnMut(&str, &V)) {
        for s in self.shards.iter() {
            let s = s.lock();
            for (k, v) in s.map.iter() {
                f(k, v);
            }
        }
    }
}

/// Adjustment ids are idempotent per source (a seller, or the warehouse side).
pub(crate) fn adjustment_key(source: &str, adjustment_id: &str, buf: &mut String) {
    buf.clear();
    buf.push_str(source);
    buf.push('\u{1f}');
    buf.push_str(adjustment_id);
}

pub(crate) struct State {
    pub(crate) ledger_id: u64,
    pub(crate) catalog: Catalog,
    pub(crate) orders: Orders,
    pub(crate) adjustments: KeyTable<AdjustmentKey>,
    pub(crate) payments: KeyTable<PaymentKey>,
    /// The latest time of an entry replayed so far (replay only).
    pub(crate) replayed_at: AtomicU64,
}

pub(crate) const WAREHOUSE_SOURCE: &str = "warehouse";

impl State {
    pub(crate) fn new(ledger_id: u64) -> State {
        State {
            ledger_id,
            catalog: Catalog::new(),
            orders: Orders::new(),
            adjustments: KeyTable::new(),
            payments: KeyTable::new(),
            replayed_at: AtomicU64::new(0),
        }
    }

    /// Remembers the latest time replayed so far (a lower bound for entries without one).
    pub(crate) fn note_replayed_at(&self, at: Millis) {
        self.replayed_at.fetch_max(at, Ordering::Relaxed);
    }

    /// Prunes finished reservations and idempotency keys older than `cutoff` (the live
    /// path's expiry pass, and replay at a retention note); returns how many went.
    pub(crate) fn prune_retained(&self, cutoff: Millis) -> usize {
        let orders: usize = self.orders.shards().map(|mut s| s.prune(cutoff)).sum();
        orders + self.adjustments.prune(cutoff) + self.payments.prune(cutoff)
    }

    /// After a snapshot filled the retention queues in its own order: sorts them, so a
    /// pass prunes exactly what the live ledger's pass would (`aging.rs`).
    pub(crate) fn settle_retention(&self) {
        for mut shard in self.orders.shards() {
            shard.settle_retention();
        }
        self.adjustments.settle_retention();
        self.payments.settle_retention();
    }

    /// Checks invariants 1-3 of `domain.md` over the whole state. Only meaningful while no
    /// writer runs (tests, recovery).
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        // Cell ids are dense (0..count): a plain vector beats a map by far at a million cells.
        let mut held = crate::cache::written_zeros(self.catalog.cell_count());
        for shard in self.orders.shards() {
            let mut live = 0;
            for (id, o) in shard.map.iter() {
                if o.lines.is_empty() {
                    return Err(format!("order {id} has no lines"));
                }
                if o.status != Status::Reserved {
                    continue;
                }
                live += 1;
                for l in o.lines.iter() {
                    let Some(sum) = held.get_mut(l.cell as usize) else {
                        return Err(format!("order {id} holds unknown cell {}", l.cell));
                    };
                    *sum += l.qty as u64;
                }
            }
            if live != shard.live() {
                return Err(format!(
                    "a shard counts {} live reservations but holds {live}",
                    shard.live()
                ));
            }
        }
        for (id, slot) in self.catalog.cells() {
            let (on_hand, reserved) = slot.stock.load();
            if reserved > on_hand {
                return Err(format!(
                    "cell {id}: reserved {reserved} > on_hand {on_hand}"
                ));
            }
            let expect = held.get(id as usize).copied().unwrap_or(0);
            if reserved != expect {
                return Err(format!(
                    "cell {id}: reserved {reserved} but live reservations hold {expect}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(at: Millis) -> PaymentKey {
        PaymentKey {
            order_id: "o".into(),
            succeeded: true,
            answer: 1,
            at,
        }
    }

    /// Defect 6: pruning the first insertion of a key must not remove a later one.
    #[test]
    fn pruning_keeps_a_key_inserted_again_later() {
        let t: KeyTable<PaymentKey> = KeyTable::new();
        t.shard("p").insert("p", 10, key(10));
        t.shard("p").insert("p", 50, key(50));
        t.prune(20);
        assert_eq!(t.shard("p").map.get("p").map(|k| k.at), Some(50));
        t.prune(51);
        assert!(!t.shard("p").map.contains_key("p"));
    }
}
