//! The catalog interns sku and warehouse names to dense ids once, at the edge, and owns the
//! stock cells. Finding a cell by its names is lock-free and hashes once: one hash of
//! (sku, warehouse) probes an open-addressing table of atomic slots. New cells are added
//! under one mutex (stock writes, not reservations, create them); a table that would pass
//! half full is replaced by one twice its size, and old tables stay alive so that readers in
//! flight never see freed memory (their total is below the size of the newest one).

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use hashbrown::hash_table::{Entry, HashTable};
use parking_lot::{Mutex, RwLock};

use crate::cell::Cell;
use crate::chunked::ChunkedVec;
use crate::inline::InlineBytes;

pub(crate) type SkuId = u32;
pub(crate) type CellId = u32;

const INDEX_SHARDS: usize = 64;
/// Hard limits so that a hostile caller cannot grow the catalog without bound.
use crate::limits::{shard_of, MAX_CELLS, MAX_SKUS};
/// Slots of the first cell table (a power of two).
const FIRST_TABLE_SLOTS: usize = 1 << 12;

// A slot packs a 32-bit hash tag with `cell id + 1`, so cell ids must fit 32 bits.
const _: () = assert!(FIRST_TABLE_SLOTS.is_power_of_two());

type Hasher = foldhash::fast::FixedState;

/// The end of a sku's chain of cells.
const NO_CELL: CellId = CellId::MAX;
const _: () = assert!(MAX_CELLS < NO_CELL as usize);

/// Sku names of up to this many bytes are stored inline (the slot's name takes 24 bytes).
const INLINE_SKU: usize = 22;

pub(crate) struct SkuSlot {
    /// The one copy of the name: the sku index holds only the id.
    pub(crate) name: SkuName,
    /// The first of the sku's cells, chained by `CellSlot::next` in warehouse name order
    /// (`NO_CELL`: none); read with [`Catalog::sku_cells`].
    first: AtomicU32,
    /// The seller that first set or adjusted it. The lock also serialises stock writes to
    /// the sku, so that stock events of one cell appear in the order they happened.
    pub(crate) owner: Mutex<Option<Box<str>>>,
}

/// A cell with its names, on one cache line of its own: a lookup by name and the hold that
/// follows touch this line and nothing else (short names are inline).
#[repr(align(64))]
pub(crate) struct CellSlot {
    pub(crate) stock: Cell,
    pub(crate) sku: SkuId,
    /// The sku's next cell by warehouse name (`NO_CELL`: the last); in the line's padding.
    next: AtomicU32,
    /// Both names as log records carry them (`encode_names`); lookups compare them.
    names: Names,
}

const _: () = assert!(std::mem::size_of::<CellSlot>() == 64);

/// A sku name, inline up to `INLINE_SKU` bytes (no allocation); reads as a `&str`.
pub(crate) struct SkuName(InlineBytes<INLINE_SKU>);

const _: () = assert!(std::mem::size_of::<SkuName>() == 24);

impl SkuName {
    fn new(name: &str) -> SkuName {
        SkuName(InlineBytes::new(name.as_bytes()))
    }
}

impl std::ops::Deref for SkuName {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        // Made from a `&str` only, so this never falls back.
        std::str::from_utf8(self.0.as_bytes()).unwrap_or("")
    }
}

/// Encoded names of up to this many bytes are stored inline.
const INLINE_NAMES: usize = 38;

type Names = InlineBytes<INLINE_NAMES>;

impl CellSlot {
    /// (u16 len, sku, u16 len, warehouse), exactly as log records carry a line's names.
    #[inline]
    pub(crate) fn names(&self) -> &[u8] {
        self.names.as_bytes()
    }

    pub(crate) fn warehouse(&self) -> &str {
        let names = self.names();
        let sku_len = u16::from_le_bytes([names[0], names[1]]) as usize;
        // Only whole `&str`s are encoded, so this never falls back.
        std::str::from_utf8(&names[4 + sku_len..]).unwrap_or("")
    }
}

/// One shard of the name -> sku id index (not on the reservation path).
type IndexShard = CachePadded<RwLock<SkuIndex>>;

/// Sku ids, probed by the name's hash (the one that picked the shard): one hash per lookup
/// or insert. An entry is compared by the name in its sku's slot (4 bytes an entry, the name
/// is stored once).
type SkuIndex = HashTable<SkuId>;

/// Entries of a chunk of the cell and sku stores (4 MiB of cells; allocated when the first
/// entry is pushed, so a small catalog touches only the pages it uses).
const CELL_CHUNK: usize = 1 << 16;
const SKU_CHUNK: usize = 1 << 16;

/// An open-addressing table of `(tag << 32) | (cell id + 1)`; 0 is empty.
struct CellTable {
    mask: usize,
    slots: Box<[AtomicU64]>,
}

impl CellTable {
    fn new(slots: usize) -> CellTable {
        assert!(slots.is_power_of_two());
        CellTable {
            mask: slots - 1,
            slots: (0..slots).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Stores into the first empty slot of the probe; only the writer (under the mutex).
    fn put(&self, hash: u64, cell: CellId) {
        let mut i = hash as usize & self.mask;
        loop {
            if self.slots[i].load(Ordering::Relaxed) == 0 {
                self.slots[i].store(slot_word(hash, cell), Ordering::Release);
                return;
            }
            i = (i + 1) & self.mask;
        }
    }
}

/// A cell's names as every line of a record carries them: (u16 len, sku, u16 len,
/// warehouse). Encoded once per cell, copied with one `memcpy` per line.
pub(crate) fn encode_names(sku: &str, warehouse: &str) -> Box<[u8]> {
    let mut out = Vec::with_capacity(4 + sku.len() + warehouse.len());
    for s in [sku, warehouse] {
        debug_assert!(s.len() <= u16::MAX as usize);
        out.extend_from_slice(&(s.len() as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out.into_boxed_slice()
}

/// Whether encoded names (u16 len, sku, u16 len, warehouse) are these two.
#[inline]
fn names_match(names: &[u8], s: &[u8], w: &[u8]) -> bool {
    names.len() == 4 + s.len() + w.len()
        && names[..2] == (s.len() as u16).to_le_bytes()
        && names[2..2 + s.len()] == *s
        && names[4 + s.len()..] == *w
}

#[inline]
fn slot_word(hash: u64, cell: CellId) -> u64 {
    (hash & 0xffff_ffff_0000_0000) | (cell as u64 + 1)
}

pub(crate) struct Catalog {
    hasher: Hasher,
    index: Box<[IndexShard]>,
    skus: ChunkedVec<SkuSlot, SKU_CHUNK>,
    cells: ChunkedVec<CellSlot, CELL_CHUNK>,
    /// Every cell table ever made; `current` names the one in use.
    tables: boxcar::Vec<CellTable>,
    current: AtomicUsize,
    /// Serialises cell creation: cells in the current table.
    writer: Mutex<usize>,
}

impl Catalog {
    pub(crate) fn new() -> Catalog {
        let seed = foldhash::fast::RandomState::default().hash_one(0xca7_u64);
        let hasher = Hasher::with_seed(seed);
        let tables = boxcar::Vec::new();
        tables.push(CellTable::new(FIRST_TABLE_SLOTS));
        Catalog {
            hasher: hasher.clone(),
            index: (0..INDEX_SHARDS)
                .map(|_| CachePadded::new(RwLock::new(SkuIndex::new())))
                .collect(),
            skus: ChunkedVec::new(MAX_SKUS),
            cells: ChunkedVec::new(MAX_CELLS),
            tables,
            current: AtomicUsize::new(0),
            writer: Mutex::new(0),
        }
    }

    fn sku_hash(&self, sku: &str) -> u64 {
        self.hasher.hash_one(sku)
    }

    fn index_shard(&self, hash: u64) -> &RwLock<SkuIndex> {
        &self.index[shard_of(hash, INDEX_SHARDS)]
    }

    pub(crate) fn find_sku(&self, sku: &str) -> Option<SkuId> {
        let hash = self.sku_hash(sku);
        let shard = self.index_shard(hash).read();
        shard.find(hash, |&id| *self.sku(id).name == *sku).copied()
    }

    #[inline]
    fn cell_hash(&self, sku: &[u8], warehouse: &[u8]) -> u64 {
        self.hasher.hash_one((sku, warehouse))
    }

    /// Lock-free: one hash, a short probe, one comparison of the names.
    #[inline]
    pub(crate) fn find_cell(&self, sku: &str, warehouse: &str) -> Option<CellId> {
        self.find_cell_bytes(sku.as_bytes(), warehouse.as_bytes())
    }

    /// [`Catalog::find_cell`] by the names' bytes (replay reads them from a record whose
    /// names were checked when it was decoded).
    #[inline]
    pub(crate) fn find_cell_bytes(&self, sku: &[u8], warehouse: &[u8]) -> Option<CellId> {
        self.find_cell_hashed(self.cell_hash(sku, warehouse), sku, warehouse)
    }

    /// The hash [`Catalog::find_cell_hashed`] takes, with the index slot it probes first
    /// prefetched: an order's lines are hashed and prefetched first, then found, so their
    /// cache misses overlap.
    #[inline]
    pub(crate) fn prefetch_cell(&self, sku: &[u8], warehouse: &[u8]) -> u64 {
        let hash = self.cell_hash(sku, warehouse);
        let table = &self.tables[self.current.load(Ordering::Acquire)];
        crate::cache::prefetch(&table.slots[hash as usize & table.mask]);
        hash
    }

    /// The second step after [`Catalog::prefetch_cell`]: if the first slot probed holds a
    /// cell of this hash, prefetches that cell's line (where the names are compared).
    #[inline]
    pub(crate) fn prefetch_found_cell(&self, hash: u64) {
        let table = &self.tables[self.current.load(Ordering::Acquire)];
        let word = table.slots[hash as usize & table.mask].load(Ordering::Relaxed);
        if word != 0 && word >> 32 == hash >> 32 {
            let id = (word as u32) - 1;
            if (id as usize) < self.cells.count() {
                crate::cache::prefetch(self.cell(id));
            }
        }
    }

    /// [`Catalog::find_cell_bytes`] with the hash already computed (by `prefetch_cell`).
    #[inline]
    pub(crate) fn find_cell_hashed(
        &self,
        hash: u64,
        sku: &[u8],
        warehouse: &[u8],
    ) -> Option<CellId> {
        let table = &self.tables[self.current.load(Ordering::Acquire)];
        let mut i = hash as usize & table.mask;
        loop {
            let word = table.slots[i].load(Ordering::Acquire);
            if word == 0 {
                return None;
            }
            if word >> 32 == hash >> 32 {
                let id = (word as u32) - 1;
                let slot = self.cell(id);
                if names_match(slot.names(), sku, warehouse) {
                    return Some(id);
                }
            }
            i = (i + 1) & table.mask;
        }
    }

    /// Returns `None` only when a catalog limit is reached.
    pub(crate) fn sku_or_insert(&self, sku: &str) -> Option<SkuId> {
        let hash = self.sku_hash(sku);
        let shard = self.index_shard(hash);
        let found = shard
            .read()
            .find(hash, |&id| *self.sku(id).name == *sku)
            .copied();
        if found.is_some() {
            return found;
        }
        let mut shard = shard.write();
        let vacant = match shard.entry(
            hash,
            |&id| *self.sku(id).name == *sku,
            |&id| self.sku_hash(&self.sku(id).name),
        ) {
            Entry::Occupied(seen) => return Some(*seen.get()),
            Entry::Vacant(vacant) => vacant,
        };
        // Pushed before its id enters the index (under the shard's write lock), so an id
        // found in the index always names a pushed slot.
        let id = self
            .skus
            .push(SkuSlot {
                name: SkuName::new(sku),
                first: AtomicU32::new(NO_CELL),
                owner: Mutex::new(None),
            })
            .ok()? as SkuId;
        vacant.insert(id);
        Some(id)
    }

    pub(crate) fn cell_or_insert(&self, sku: &str, warehouse: &str) -> Option<CellId> {
        if let Some(id) = self.find_cell(sku, warehouse) {
            return Some(id);
        }
        self.insert_cell(sku, warehouse)
    }

    /// Like [`Catalog::cell_or_insert`] without the lock-free look first: for recovery,
    /// whose cells are (almost) all new, one look under the writer lock is enough.
    pub(crate) fn insert_cell(&self, sku: &str, warehouse: &str) -> Option<CellId> {
        let sku_id = self.sku_or_insert(sku)?;
        let mut writer = self.writer.lock();
        if let Some(id) = self.find_cell(sku, warehouse) {
            return Some(id);
        }
        if self.cells.count() >= MAX_CELLS {
            return None;
        }
        let count = &mut *writer;
        // Where the new cell goes in the sku's chain: after the cells of smaller warehouse
        // names. Only this writer (under the mutex) changes chains, so Relaxed loads see the
        // latest links.
        let mut link = &self.sku(sku_id).first;
        loop {
            let next = link.load(Ordering::Relaxed);
            if next == NO_CELL || self.cell(next).warehouse() > warehouse {
                break;
            }
            link = &self.cell(next).next;
        }
        let id = self
            .cells
            .push(CellSlot {
                stock: Cell::default(),
                sku: sku_id,
                next: AtomicU32::new(link.load(Ordering::Relaxed)),
                names: Names::new(&encode_names(sku, warehouse)),
            })
            .ok()? as CellId;
        self.grow_if_needed(*count + 1);
        *count += 1;
        let table = &self.tables[self.current.load(Ordering::Acquire)];
        table.put(self.cell_hash(sku.as_bytes(), warehouse.as_bytes()), id);
        // Release, after the cell is pushed with its successor: a reader that follows the
        // link to `id` finds it counted and its `next` set (the chain is never torn).
        link.store(id, Ordering::Release);
        Some(id)
    }

    /// The cells of a sku in warehouse name order; lock-free (a cell added meanwhile is
    /// seen or not, the others always).
    pub(crate) fn sku_cells(&self, sku: SkuId) -> impl Iterator<Item = CellId> + '_ {
        let mut at = self.sku(sku).first.load(Ordering::Acquire);
        std::iter::from_fn(move || {
            let cell = at;
            if cell == NO_CELL {
                return None;
            }
            at = self.cell(cell).next.load(Ordering::Acquire);
            Some(cell)
        })
    }

    /// Sizes the cell index for `cells` cells at once (recovery knows the count), so that
    /// loading them does not double and rehash the table again and again.
    pub(crate) fn reserve_cells(&self, cells: usize) {
        let writer = self.writer.lock();
        let table = &self.tables[self.current.load(Ordering::Acquire)];
        let want = (cells.min(MAX_CELLS) * 2).next_power_of_two();
        if want <= table.slots.len() {
            return;
        }
        let bigger = CellTable::new(want);
        for word in table.slots.iter() {
            let word = word.load(Ordering::Acquire);
            if word != 0 {
                let id = (word as u32) - 1;
                let c = self.cell(id);
                bigger.put(
                    self.cell_hash(self.sku(c.sku).name.as_bytes(), c.warehouse().as_bytes()),
                    id,
                );
            }
        }
        let next = self.tables.push(bigger);
        self.current.store(next, Ordering::Release);
        debug_assert!(*writer * 2 <= want);
        drop(writer);
        // At most one sku per cell: the sku index is sized for that many.
        for shard in self.index.iter() {
            shard
                .write()
                .reserve(cells.min(MAX_CELLS) / INDEX_SHARDS, |&id| {
                    self.sku_hash(&self.sku(id).name)
                });
        }
    }

    /// Keeps the table at most half full; only the writer calls it.
    fn grow_if_needed(&self, cells: usize) {
        let table = &self.tables[self.current.load(Ordering::Acquire)];
        if cells * 2 <= table.slots.len() {
            return;
        }
        let bigger = CellTable::new(table.slots.len() * 2);
        for word in table.slots.iter() {
            let word = word.load(Ordering::Acquire);
            if word != 0 {
                let id = (word as u32) - 1;
                let c = self.cell(id);
                bigger.put(
                    self.cell_hash(self.sku(c.sku).name.as_bytes(), c.warehouse().as_bytes()),
                    id,
                );
            }
        }
        let next = self.tables.push(bigger);
        self.current.store(next, Ordering::Release);
    }

    #[inline]
    pub(crate) fn cell(&self, id: CellId) -> &CellSlot {
        // Lock-free; panics on a cell not made (see `ChunkedVec::get` for why an entry below
        // the count is always initialised).
        self.cells.get(id as usize)
    }

    #[inline]
    pub(crate) fn sku(&self, id: SkuId) -> &SkuSlot {
        self.skus.get(id as usize)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_found_by_both_names_across_table_growth() {
        let c = Catalog::new();
        let n = FIRST_TABLE_SLOTS * 3;
        for i in 0..n {
            let id = c.cell_or_insert(&format!("s{i}"), if i % 2 == 0 { "a" } else { "b" });
            assert_eq!(id, Some(i as CellId));
        }
        for i in 0..n {
            let wh = if i % 2 == 0 { "a" } else { "b" };
            assert_eq!(c.find_cell(&format!("s{i}"), wh), Some(i as CellId));
            let other = if i % 2 == 0 { "b" } else { "a" };
            assert_eq!(c.find_cell(&format!("s{i}"), other), None);
        }
        assert_eq!(c.cell_or_insert("s0", "a"), Some(0));
        assert_eq!(c.cell_count(), n);
        assert_eq!(c.sku_cells(c.find_sku("s7").unwrap_or(0)).count(), 1);
    }

    #[test]
    fn a_skus_cells_are_sorted_by_warehouse_and_long_names_round_trip() {
        let c = Catalog::new();
        let long = "a-sku-name-longer-than-22-bytes-kept-on-the-heap";
        for (sku, wh) in [
            (long, "kol"),
            ("s", "mum"),
            (long, "del"),
            ("s", "agr"),
            (long, "pun"),
        ] {
            assert!(c.cell_or_insert(sku, wh).is_some());
        }
        for (sku, want) in [(long, vec!["del", "kol", "pun"]), ("s", vec!["agr", "mum"])] {
            let id = c.find_sku(sku).unwrap_or(SkuId::MAX);
            assert_eq!(&*c.sku(id).name, sku);
            let cells: Vec<CellId> = c.sku_cells(id).collect();
            let whs: Vec<&str> = cells.iter().map(|&cell| c.cell(cell).warehouse()).collect();
            assert_eq!(whs, want);
            assert!(cells.iter().all(|&cell| c.cell(cell).sku == id));
        }
        assert_eq!(
            c.find_sku("a-sku-name-longer-than-22-bytes-kept-on-the-hea"),
            None
        );
    }

    #[test]
    fn readers_of_a_skus_cells_see_a_sorted_chain_while_cells_are_added() {
        const WAREHOUSES: usize = 3_000;
        let c = std::sync::Arc::new(Catalog::new());
        let sku = c.sku_or_insert("s").unwrap_or(SkuId::MAX);
        let done = std::sync::Arc::new(AtomicUsize::new(0));
        let reader = {
            let (c, done) = (c.clone(), done.clone());
            std::thread::spawn(move || {
                let mut seen = 0;
                while done.load(Ordering::Acquire) == 0 {
                    let whs: Vec<&str> = c.sku_cells(sku).map(|x| c.cell(x).warehouse()).collect();
                    assert!(whs.windows(2).all(|w| w[0] < w[1]), "{whs:?}");
                    assert!(whs.len() >= seen, "cells lost: {} after {seen}", whs.len());
                    seen = whs.len();
                }
            })
        };
        // Inserted in an order that puts new cells at the front, the back and between.
        for i in 0..WAREHOUSES {
            let w = (i * 7919) % WAREHOUSES;
            assert!(c.cell_or_insert("s", &format!("w{w:05}")).is_some());
        }
        done.store(1, Ordering::Release);
        assert!(reader.join().is_ok());
        let whs: Vec<String> = c
            .sku_cells(sku)
            .map(|x| c.cell(x).warehouse().to_string())
            .collect();
        let want: Vec<String> = (0..WAREHOUSES).map(|w| format!("w{w:05}")).collect();
        assert_eq!(whs, want);
    }

    #[test]
    fn cells_and_skus_keep_their_names_across_store_chunks() {
        let c = Catalog::new();
        // Past the first chunk of both stores: every cell 2 of a sku, skus 1 cell in 2.
        let n = CELL_CHUNK + SKU_CHUNK / 2 + 3;
        for i in 0..n {
            let (sku, wh) = (format!("s{}", i / 2), format!("w{}", i % 2));
            assert_eq!(c.cell_or_insert(&sku, &wh), Some(i as CellId));
        }
        assert_eq!((c.cell_count(), c.sku_count()), (n, n.div_ceil(2)));
        for i in [0, 1, CELL_CHUNK - 1, CELL_CHUNK, CELL_CHUNK + 1, n - 1]
            .into_iter()
            .chain((0..n).step_by(97))
        {
            let (sku, wh) = (format!("s{}", i / 2), format!("w{}", i % 2));
            let cell = c.cell(i as CellId);
            assert_eq!(&*c.sku(cell.sku).name, sku.as_str(), "cell {i}");
            assert_eq!(cell.warehouse(), wh, "cell {i}");
            assert_eq!(c.find_sku(&sku), Some(cell.sku), "cell {i}");
            assert_eq!(cell.sku as usize, i / 2, "cell {i}");
            assert_eq!(c.find_cell(&sku, &wh), Some(i as CellId));
        }
        let listed: Vec<_> = c.cells().map(|(id, s)| (id, s.sku)).collect();
        assert_eq!(listed.len(), n);
        assert!(listed
            .iter()
            .all(|&(id, sku)| sku as usize == id as usize / 2));
        assert!(c
            .skus()
            .all(|(id, s)| *s.name == format!("s{id}") && c.sku_cells(id).count() <= 2));
    }

    #[test]
    fn readers_find_every_published_cell_while_the_table_grows() {
        // Past the first chunk of the cell store, too.
        const N: usize = CELL_CHUNK + 4_000;
        let c = std::sync::Arc::new(Catalog::new());
        let published = std::sync::Arc::new(AtomicUsize::new(0));
        let reader = {
            let (c, published) = (c.clone(), published.clone());
            std::thread::spawn(move || {
                let mut checks = 0u64;
                while published.load(Ordering::Acquire) < N {
                    let n = published.load(Ordering::Acquire);
                    if n > 0 {
                        let i = (checks as usize * 7919) % n;
                        assert_eq!(c.find_cell(&format!("s{i}"), "w"), Some(i as CellId));
                        checks += 1;
                    }
                    // The newest cell, as soon as it is counted (often the first of a chunk).
                    if let Some(last) = c.cell_count().checked_sub(1) {
                        let slot = c.cell(last as CellId);
                        assert_eq!(*c.sku(slot.sku).name, format!("s{last}"));
                        assert_eq!((slot.warehouse(), slot.stock.load()), ("w", (0, 0)));
                    }
                }
                checks
            })
        };
        for i in 0..N {
            c.cell_or_insert(&format!("s{i}"), "w");
            published.store(i + 1, Ordering::Release);
        }
        assert!(reader.join().is_ok());
    }
}
