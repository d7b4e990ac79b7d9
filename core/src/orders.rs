//! The reservation table: sharded by order id, each shard behind its own mutex. A shard
//! lock is held while one reservation changes, which is what keeps the changes of one
//! reservation in the log in the order they happened.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use parking_lot::{Mutex, MutexGuard};

use crate::catalog::CellId;
use crate::time::Millis;
use crate::types::Status;

const SHARDS: usize = 256;
/// Live plus retained reservations, at most; a reserve beyond it is refused.
pub const MAX_ORDERS: usize = 50_000_000;

type Hasher = foldhash::fast::RandomState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct HeldLine {
    pub(crate) cell: CellId,
    pub(crate) qty: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Order {
    /// Sorted by cell id: the one fixed order in which lines are held and compared.
    pub(crate) lines: Box<[HeldLine]>,
    pub(crate) status: Status,
    pub(crate) created_at: Millis,
    pub(crate) expires_at: Millis,
    /// 0 while reserved.
    pub(crate) finished_at: Millis,
    /// The payment that paid it, if any (a second one is a double charge).
    pub(crate) paid_by: Option<Box<str>>,
}

#[derive(Default)]
pub(crate) struct OrderShard {
    pub(crate) map: HashMap<Arc<str>, Order, Hasher>,
    /// (expires_at, order id) of reserved orders; stale entries are skipped when popped.
    due: BinaryHeap<Reverse<(Millis, Arc<str>)>>,
    /// Finished orders in the order they finished, for pruning after retention.
    finished: VecDeque<(Millis, Arc<str>)>,
}

impl OrderShard {
    pub(crate) fn insert(&mut self, order_id: &str, order: Order) {
        let key: Arc<str> = Arc::from(order_id);
        if order.status == Status::Reserved {
            self.compact_due();
            self.due.push(Reverse((order.expires_at, key.clone())));
        } else {
            self.finished.push_back((order.finished_at, key.clone()));
        }
        self.map.insert(key, order);
    }

    /// Marks a reserved order finished and remembers when, for pruning.
    pub(crate) fn finish(&mut self, order_id: &str, status: Status, at: Millis) {
        let Some(key) = self.map.get_key_value(order_id).map(|(k, _)| k.clone()) else {
            return;
        };
        if let Some(order) = self.map.get_mut(order_id) {
            assert_eq!(order.status, Status::Reserved);
            order.status = status;
            order.finished_at = at;
            self.finished.push_back((at, key));
        }
    }

    /// Order ids whose reservation is due at `now`, popped from the heap.
    pub(crate) fn pop_due(&mut self, now: Millis, out: &mut Vec<Arc<str>>) {
        while let Some(Reverse((at, _))) = self.due.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((at, id))) = self.due.pop() {
                match self.map.get(&*id) {
                    Some(o) if o.status == Status::Reserved && o.expires_at == at => out.push(id),
                    _ => {}
                }
            }
        }
        self.compact_due();
    }

    /// Drops heap entries of orders that finished before their expiry, once they outnumber
    /// the live ones (amortised O(1) per insert); they would otherwise wait out their ttl.
    fn compact_due(&mut self) {
        if self.due.len() > 64 && self.due.len() > 2 * self.live_count() {
            let map = &self.map;
            self.due.retain(|Reverse((at, id))| {
                matches!(map.get(&**id), Some(o) if o.status == Status::Reserved && o.expires_at == *at)
            });
        }
    }

    fn live_count(&self) -> usize {
        self.map.len().saturating_sub(self.finished.len())
    }

    /// Forgets finished orders that finished before `cutoff`.
    pub(crate) fn prune(&mut self, cutoff: Millis) -> usize {
        let mut pruned = 0;
        while let Some((at, _)) = self.finished.front() {
            if *at >= cutoff {
                break;
            }
            if let Some((at, id)) = self.finished.pop_front() {
                // A pruned id may have started a new reservation since; keep that one.
                if matches!(self.map.get(&*id), Some(o) if o.status.is_finished() && o.finished_at == at)
                {
                    self.map.remove(&*id);
                    pruned += 1;
                }
            }
        }
        pruned
    }
}

pub(crate) struct Orders {
    shards: Box<[CachePadded<Mutex<OrderShard>>]>,
    hasher: Hasher,
}

impl Orders {
    pub(crate) fn new() -> Orders {
        Orders {
            shards: (0..SHARDS)
                .map(|_| CachePadded::new(Mutex::new(OrderShard::default())))
                .collect(),
            hasher: Hasher::default(),
        }
    }

    pub(crate) fn shard(&self, order_id: &str) -> MutexGuard<'_, OrderShard> {
        let h = self.hasher.hash_one(order_id);
        self.shards[(h as usize) % SHARDS].lock()
    }

    pub(crate) fn shards(&self) -> impl Iterator<Item = MutexGuard<'_, OrderShard>> {
        self.shards.iter().map(|s| s.lock())
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map.len()).sum()
    }
}
