//! The index of one shard of the reservation table: open addressing over 64-bit words
//! `(tag << 32) | (slot + 1)` (0 is empty), linear probing, at most 5/8 full, removal by
//! shifting the rest of the run back (no tombstones). The tag is the high half of the id's
//! hash and its low bits pick the bucket, so growing moves words without reading a slot.
//!
//! It replaced hashbrown's table (2026-12-03) for one reason: a reserve of a new id must
//! miss in a table of every order of the last 24 h, and only a table whose bucket address
//! can be computed before the shard is locked lets the caller prefetch that miss while it
//! resolves the order's lines ([`IndexHint`]).

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::Arc;

/// A slot number of one shard of the reservation table.
pub(crate) type SlotId = u32;

const FIRST_BUCKETS: usize = 64;

/// Where a shard's words are, readable without the shard's lock: only ever used to
/// prefetch, so a stale value (the table grew meanwhile) costs a useless prefetch, never a
/// wrong answer (a prefetch does not fault and reads nothing architecturally).
#[derive(Default)]
pub(crate) struct IndexHint {
    words: AtomicPtr<u64>,
    mask: AtomicUsize,
}

impl IndexHint {
    #[inline]
    pub(crate) fn prefetch(&self, tag: u32) {
        let words = self.words.load(Ordering::Relaxed);
        let at = tag as usize & self.mask.load(Ordering::Relaxed);
        crate::cache::prefetch_ptr(words.wrapping_add(at).cast_const());
    }
}

pub(crate) struct SlotIndex {
    words: Vec<u64>,
    len: usize,
    hint: Arc<IndexHint>,
}

#[inline]
fn word(tag: u32, slot: SlotId) -> u64 {
    (u64::from(tag) << 32) | (u64::from(slot) + 1)
}

impl SlotIndex {
    pub(crate) fn new() -> SlotIndex {
        let index = SlotIndex {
            words: crate::cache::written_zeros(FIRST_BUCKETS),
            len: 0,
            hint: Arc::default(),
        };
        index.publish();
        index
    }

    pub(crate) fn hint(&self) -> Arc<IndexHint> {
        self.hint.clone()
    }

    fn publish(&self) {
        let words = self.words.as_ptr().cast_mut();
        self.hint.words.store(words, Ordering::Relaxed);
        self.hint.mask.store(self.mask(), Ordering::Relaxed);
    }

    #[inline]
    fn mask(&self) -> usize {
        self.words.len() - 1
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The slot of `tag` for which `is` holds (it compares the id).
    #[inline]
    pub(crate) fn find(&self, tag: u32, is: impl Fn(SlotId) -> bool) -> Option<SlotId> {
        let mask = self.mask();
        let mut i = tag as usize & mask;
        loop {
            let w = self.words[i];
            if w == 0 {
                return None;
            }
            if (w >> 32) as u32 == tag && is((w as u32) - 1) {
                return Some((w as u32) - 1);
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds `slot` (absent) under `tag`.
    pub(crate) fn insert(&mut self, tag: u32, slot: SlotId) {
        assert!(slot < u32::MAX, "slot numbers stay below u32::MAX");
        self.reserve(1);
        self.place(word(tag, slot));
        self.len += 1;
    }

    fn place(&mut self, w: u64) {
        let mask = self.mask();
        let mut i = (w >> 32) as usize & mask;
        while self.words[i] != 0 {
            i = (i + 1) & mask;
        }
        self.words[i] = w;
    }

    /// Points the entry of `old` filed under `tag` at `new` instead (same tag, so the same
    /// place); false if there is none.
    pub(crate) fn replace(&mut self, tag: u32, old: SlotId, new: SlotId) -> bool {
        assert!(new < u32::MAX, "slot numbers stay below u32::MAX");
        let Some(i) = self.position(tag, old) else {
            return false;
        };
        self.words[i] = word(tag, new);
        true
    }

    /// Where the entry of `slot` filed under `tag` is.
    fn position(&self, tag: u32, slot: SlotId) -> Option<usize> {
        let mask = self.mask();
        let target = word(tag, slot);
        let mut i = tag as usize & mask;
        loop {
            match self.words[i] {
                0 => return None,
                w if w == target => return Some(i),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Removes the entry of `slot` filed under `tag`; false if there is none.
    pub(crate) fn remove(&mut self, tag: u32, slot: SlotId) -> bool {
        let mask = self.mask();
        let Some(mut hole) = self.position(tag, slot) else {
            return false;
        };
        // Shift back every later word of the run that may live in the hole: one whose home
        // bucket is not cyclically within (hole, j].
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let w = self.words[j];
            if w == 0 {
                break;
            }
            let home = (w >> 32) as usize & mask;
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.words[hole] = w;
                hole = j;
            }
        }
        self.words[hole] = 0;
        self.len -= 1;
        true
    }

    /// Makes room for `additional` more entries without passing 5/8 full.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let needed = self.len + additional;
        if needed * 8 <= self.words.len() * 5 {
            return;
        }
        let buckets = (needed * 8).div_ceil(5).next_power_of_two();
        let old = std::mem::replace(&mut self.words, crate::cache::written_zeros(buckets));
        for w in old.into_iter().filter(|&w| w != 0) {
            self.place(w);
        }
        self.publish();
        debug_assert!(self.len * 8 <= self.words.len() * 5);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;

    /// Against a `HashMap` model, with tags crowded into few buckets so that runs wrap
    /// around the table's end and removals shift words back across it.
    #[test]
    fn finds_what_was_inserted_and_not_what_was_removed() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x9e37_79b9_7f4a_7c15);
        let mut next = move || rng.random::<u64>();
        let mut index = SlotIndex::new();
        let mut model: HashMap<SlotId, u32> = HashMap::new();
        for step in 0..200_000u32 {
            let r = next();
            let slot = (r % 5_000) as SlotId;
            // Tags that share their low bits (same bucket) or sit near the table's end.
            let tag =
                ((r >> 20) as u32 & 0xff00_0000) | [0, 1, 62, 63, 127][(r >> 16) as usize % 5];
            if let Some(&t) = model.get(&slot) {
                assert!(index.remove(t, slot), "step {step}");
                model.remove(&slot);
            } else {
                index.insert(tag, slot);
                model.insert(slot, tag);
            }
            if step % 1_000 == 0 {
                for (&s, &t) in &model {
                    assert_eq!(index.find(t, |x| x == s), Some(s), "step {step}");
                }
            }
            assert_eq!(index.len(), model.len());
        }
        assert!(!index.remove(7, 1_000_000));
        for (s, t) in model.drain() {
            assert!(index.remove(t, s));
        }
        assert_eq!(index.len(), 0);
        assert!(index.words.iter().all(|&w| w == 0));
    }

    #[test]
    fn growth_keeps_every_entry_and_publishes_the_new_table() {
        let mut index = SlotIndex::new();
        let hint = index.hint();
        for s in 0..10_000u32 {
            index.insert(s.wrapping_mul(0x9e37_79b9), s);
        }
        for s in 0..10_000u32 {
            assert_eq!(index.find(s.wrapping_mul(0x9e37_79b9), |x| x == s), Some(s));
        }
        assert_eq!(hint.mask.load(Ordering::Relaxed), index.mask());
        assert_eq!(
            hint.words.load(Ordering::Relaxed).cast_const(),
            index.words.as_ptr()
        );
        assert!(index.len() * 8 <= index.words.len() * 5);
    }
}
