//! An append-only store of a fixed capacity whose entries never move: the catalog's cells
//! and skus. Entries live in chunks of `CHUNK` allocated on demand (a fixed array of chunk
//! pointers, sized for the capacity), so an entry costs its own size and nothing more (no
//! per-entry flag, unlike `boxcar`), and reads are lock-free: one Acquire load of the count,
//! one of the chunk pointer. Pushes are serialised by the store's own mutex; entries are
//! dropped with the store.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::marker::PhantomData;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use parking_lot::Mutex;

pub(crate) struct ChunkedVec<T, const CHUNK: usize> {
    /// `capacity.div_ceil(CHUNK)` pointers, null until their chunk is needed.
    chunks: Box<[AtomicPtr<T>]>,
    /// Entries written; an entry below it is initialised and never changes place.
    len: AtomicUsize,
    capacity: usize,
    /// Serialises pushes (and so chunk allocation).
    push: Mutex<()>,
    _owns: PhantomData<T>,
}

// SAFETY: the store owns its `T`s (dropped with it), so it may move to another thread when
// `T` may; shared access hands out `&T` to many threads (needs `T: Sync`) and a push from any
// thread moves a `T` in (needs `T: Send`), like `boxcar::Vec`.
unsafe impl<T: Send, const CHUNK: usize> Send for ChunkedVec<T, CHUNK> {}
unsafe impl<T: Send + Sync, const CHUNK: usize> Sync for ChunkedVec<T, CHUNK> {}

impl<T, const CHUNK: usize> ChunkedVec<T, CHUNK> {
    const CHUNK_OK: () = assert!(CHUNK > 0 && std::mem::size_of::<T>() > 0);

    /// A store for at most `capacity` entries; allocates only the chunk pointers.
    pub(crate) fn new(capacity: usize) -> Self {
        let () = Self::CHUNK_OK;
        ChunkedVec {
            chunks: (0..capacity.div_ceil(CHUNK))
                .map(|_| AtomicPtr::new(ptr::null_mut()))
                .collect(),
            len: AtomicUsize::new(0),
            capacity,
            push: Mutex::new(()),
            _owns: PhantomData,
        }
    }

    fn layout() -> Layout {
        // CHUNK * size_of::<T>() is far below isize::MAX for the catalog's types.
        Layout::array::<T>(CHUNK).unwrap_or_else(|_| panic!("chunk of {CHUNK} too large"))
    }

    /// Entries pushed so far (Acquire: every entry below it is visible, initialised).
    #[inline]
    pub(crate) fn count(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Appends `value` and returns its index, or gives it back when the store is full.
    pub(crate) fn push(&self, value: T) -> Result<usize, T> {
        let _serial = self.push.lock();
        // Only pushes (serialised here) store `len`, so Relaxed reads our own last store.
        let at = self.len.load(Ordering::Relaxed);
        if at >= self.capacity {
            return Err(value);
        }
        let slot = &self.chunks[at / CHUNK];
        let mut chunk = slot.load(Ordering::Relaxed);
        if chunk.is_null() {
            let layout = Self::layout();
            // SAFETY: the layout has a non-zero size (CHUNK > 0, T not zero-sized).
            chunk = unsafe { alloc(layout) } as *mut T;
            if chunk.is_null() {
                handle_alloc_error(layout);
            }
            slot.store(chunk, Ordering::Release);
        }
        // SAFETY: `chunk` holds CHUNK entries and `at % CHUNK < CHUNK`. The entry is not yet
        // initialised and no reader can reach it: readers only read entries below `len`,
        // and `len` is raised below, after the write (we hold the push lock, so no other
        // push writes here).
        unsafe { chunk.add(at % CHUNK).write(value) };
        // Release: a reader that sees the new count (Acquire) sees the entry written and the
        // chunk pointer stored.
        self.len.store(at + 1, Ordering::Release);
        Ok(at)
    }

    /// The entry at `index`; panics if it has not been pushed.
    #[inline]
    pub(crate) fn get(&self, index: usize) -> &T {
        let len = self.count();
        assert!(index < len, "entry {index} does not exist ({len} entries)");
        let chunk = self.chunks[index / CHUNK].load(Ordering::Acquire);
        debug_assert!(!chunk.is_null());
        // SAFETY: `index < len` as loaded with Acquire, paired with the Release store of
        // `len` in `push` after the entry was written into its chunk (and after the chunk
        // pointer was stored): the chunk is allocated and the entry initialised. Entries are
        // never moved, overwritten or dropped before the store itself (`drop` takes `&mut`),
        // so the reference lives as long as `&self`.
        unsafe { &*chunk.add(index % CHUNK) }
    }

    /// The entries pushed so far, with their indices.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        (0..self.count()).map(move |i| (i, self.get(i)))
    }
}

impl<T, const CHUNK: usize> Drop for ChunkedVec<T, CHUNK> {
    fn drop(&mut self) {
        let len = *self.len.get_mut();
        for (c, slot) in self.chunks.iter_mut().enumerate() {
            let chunk = *slot.get_mut();
            if chunk.is_null() {
                // Chunks are allocated in order: the rest are null too.
                break;
            }
            let here = len.saturating_sub(c * CHUNK).min(CHUNK);
            // SAFETY: the first `here` entries of this chunk were written by `push` (every
            // index below `len`) and are dropped once, here; the chunk was allocated with
            // `Self::layout()` and is freed once. `&mut self`: no reader is left.
            unsafe {
                ptr::drop_in_place(ptr::slice_from_raw_parts_mut(chunk, here));
                dealloc(chunk as *mut u8, Self::layout());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ChunkedVec;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn entries_keep_their_index_across_chunk_boundaries() {
        let v: ChunkedVec<(u64, String), 4> = ChunkedVec::new(23);
        for i in 0..23u64 {
            assert_eq!(v.push((i * 3, format!("e{i}"))).ok(), Some(i as usize));
            // Every entry so far, the ones of earlier chunks included, is still in place.
            for j in 0..=i {
                let (n, s) = v.get(j as usize);
                assert_eq!((*n, s.as_str()), (j * 3, format!("e{j}").as_str()));
            }
        }
        assert_eq!(v.count(), 23);
        // Full: the value comes back, nothing changes.
        assert_eq!(v.push((99, "x".into())).err(), Some((99, "x".to_string())));
        assert_eq!(v.count(), 23);
        let seen: Vec<u64> = v.iter().map(|(i, (n, _))| (i as u64) * 3 - n).collect();
        assert_eq!(seen, vec![0; 23]);
    }

    #[test]
    #[should_panic(expected = "does not exist")]
    fn an_entry_not_pushed_is_refused() {
        let v: ChunkedVec<u32, 4> = ChunkedVec::new(8);
        let _ = v.push(1);
        v.get(1);
    }

    #[test]
    fn drop_drops_every_entry_once() {
        let live = Arc::new(());
        {
            let v: ChunkedVec<Arc<()>, 3> = ChunkedVec::new(10);
            for _ in 0..7 {
                assert!(v.push(live.clone()).is_ok());
            }
            assert_eq!(Arc::strong_count(&live), 8);
        }
        assert_eq!(Arc::strong_count(&live), 1);
    }

    #[test]
    fn readers_see_every_counted_entry_while_chunks_are_added() {
        const N: usize = 20_000;
        let v: Arc<ChunkedVec<[u64; 3], 64>> = Arc::new(ChunkedVec::new(N));
        let done = Arc::new(AtomicUsize::new(0));
        let readers: Vec<_> = (0..2)
            .map(|r| {
                let (v, done) = (v.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut checks = 0u64;
                    while done.load(Ordering::Acquire) == 0 {
                        let n = v.count();
                        if n > 0 {
                            // The newest entry (often the first of a fresh chunk) and another.
                            for i in [n - 1, (checks as usize * 7919 + r) % n] {
                                let e = v.get(i);
                                assert_eq!(*e, [i as u64, !(i as u64), i as u64 * 7]);
                            }
                            checks += 1;
                        }
                    }
                    checks
                })
            })
            .collect();
        for i in 0..N as u64 {
            assert!(v.push([i, !i, i * 7]).is_ok());
        }
        done.store(1, Ordering::Release);
        for r in readers {
            assert!(r.join().is_ok());
        }
        assert_eq!(v.count(), N);
    }
}
