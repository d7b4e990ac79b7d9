//! The catalog interns sku and warehouse names to dense ids once, at the edge, and owns the
//! stock cells. Reads are lock-free (append-only `boxcar` vectors); a new sku or cell takes
//! one shard's write lock.

use std::collections::HashMap;

use crossbeam_utils::CachePadded;
use parking_lot::{Mutex, RwLock};

use crate::cell::Cell;

pub(crate) type SkuId = u32;
pub(crate) type CellId = u32;

const INDEX_SHARDS: usize = 64;
/// Hard limits so that a hostile caller cannot grow the catalog without bound.
pub const MAX_SKUS: usize = 50_000_000;
pub const MAX_CELLS: usize = 100_000_000;

type Hasher = foldhash::fast::RandomState;

pub(crate) struct SkuSlot {
    pub(crate) name: Box<str>,
    /// The sku's cells sorted by warehouse name.
    pub(crate) cells: RwLock<Vec<(Box<str>, CellId)>>,
    /// The seller that first set or adjusted it. The lock also serialises stock writes to
    /// the sku, so that stock events of one cell appear in the order they happened.
    pub(crate) owner: Mutex<Option<Box<str>>>,
}

/// A cell with its names, on a cache line of its own so hot cells do not share lines.
#[repr(align(64))]
pub(crate) struct CellSlot {
    pub(crate) stock: Cell,
    pub(crate) sku: SkuId,
    pub(crate) warehouse: Box<str>,
}

/// One shard of the name -> sku id index.
type IndexShard = CachePadded<RwLock<HashMap<Box<str>, SkuId, Hasher>>>;

pub(crate) struct Catalog {
    index: Box<[IndexShard]>,
    hasher: Hasher,
    skus: boxcar::Vec<SkuSlot>,
    cells: boxcar::Vec<CellSlot>,
}

impl Catalog {
    pub(crate) fn new() -> Catalog {
        let hasher = Hasher::default();
        Catalog {
            index: (0..INDEX_SHARDS)
                .map(|_| CachePadded::new(RwLock::new(HashMap::with_hasher(hasher.clone()))))
                .collect(),
            hasher,
            skus: boxcar::Vec::new(),
            cells: boxcar::Vec::new(),
        }
    }

    fn shard(&self, sku: &str) -> &RwLock<HashMap<Box<str>, SkuId, Hasher>> {
        use std::hash::BuildHasher;
        let h = self.hasher.hash_one(sku);
        &self.index[(h as usize) % INDEX_SHARDS]
    }

    pub(crate) fn find_sku(&self, sku: &str) -> Option<SkuId> {
        self.shard(sku).read().get(sku).copied()
    }

    pub(crate) fn find_cell(&self, sku: &str, warehouse: &str) -> Option<CellId> {
        let id = self.find_sku(sku)?;
        let slot = self.sku(id);
        let cells = slot.cells.read();
        cells
            .binary_search_by(|(w, _)| (**w).cmp(warehouse))
            .ok()
            .map(|i| cells[i].1)
    }

    /// Returns `None` only when a catalog limit is reached.
    pub(crate) fn sku_or_insert(&self, sku: &str) -> Option<SkuId> {
        if let Some(id) = self.find_sku(sku) {
            return Some(id);
        }
        let mut shard = self.shard(sku).write();
        if let Some(id) = shard.get(sku) {
            return Some(*id);
        }
        if self.skus.count() >= MAX_SKUS {
            return None;
        }
        let id = self.skus.push(SkuSlot {
            name: sku.into(),
            cells: RwLock::new(Vec::new()),
            owner: Mutex::new(None),
        }) as SkuId;
        shard.insert(sku.into(), id);
        Some(id)
    }

    pub(crate) fn cell_or_insert(&self, sku: &str, warehouse: &str) -> Option<CellId> {
        let sku_id = self.sku_or_insert(sku)?;
        let slot = self.sku(sku_id);
        if let Some(id) = self.find_cell(sku, warehouse) {
            return Some(id);
        }
        let mut cells = slot.cells.write();
        match cells.binary_search_by(|(w, _)| (**w).cmp(warehouse)) {
            Ok(i) => Some(cells[i].1),
            Err(i) => {
                if self.cells.count() >= MAX_CELLS {
                    return None;
                }
                let id = self.cells.push(CellSlot {
                    stock: Cell::default(),
                    sku: sku_id,
                    warehouse: warehouse.into(),
                }) as CellId;
                cells.insert(i, (warehouse.into(), id));
                Some(id)
            }
        }
    }

    #[inline]
    pub(crate) fn cell(&self, id: CellId) -> &CellSlot {
        // Ids are handed out only after the push that created them.
        &self.cells[id as usize]
    }

    #[inline]
    pub(crate) fn sku(&self, id: SkuId) -> &SkuSlot {
        &self.skus[id as usize]
    }

    pub(crate) fn cell_count(&self) -> usize {
        self.cells.count()
    }

    pub(crate) fn sku_count(&self) -> usize {
        self.skus.count()
    }

    pub(crate) fn cells(&self) -> impl Iterator<Item = (CellId, &CellSlot)> {
        self.cells.iter().map(|(i, c)| (i as CellId, c))
    }

    pub(crate) fn skus(&self) -> impl Iterator<Item = (SkuId, &SkuSlot)> {
        self.skus.iter().map(|(i, s)| (i as SkuId, s))
    }
}
