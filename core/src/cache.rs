//! CPU cache and page hints. A prefetch never faults and changes no value, so it is safe
//! on any address; it only starts the load early.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ptr::NonNull;

/// Starts loading the cache line of `value` (into every level), so that several
/// independent misses are waited for together instead of one after another.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    prefetch_ptr(value as *const T);
}

/// [`prefetch`] of a raw address, which may be stale or dangling: a prefetch never faults.
#[inline(always)]
pub(crate) fn prefetch_ptr<T>(at: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` reads nothing architecturally and never faults, whatever the
    // address.
    #[allow(unused_unsafe)]
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(at.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// A table of `n` zero words, written: `vec![0; n]` would take untouched pages from the
/// allocator, the first probe of each (a read) would map the shared zero page, and the first
/// insert would then take a second, copy-on-write fault with a TLB flush on every core (seen
/// as `do_wp_page` and `smp_call_function_many_cond` in profiles of open and replay).
#[allow(clippy::slow_vector_initialization)] // the point: written, not calloc'd
pub(crate) fn written_zeros(n: usize) -> Vec<u64> {
    let mut words = Vec::with_capacity(n);
    words.resize(n, 0);
    words
}

/// Tables at least this large are placed on 2 MiB boundaries and backed by transparent
/// huge pages: they are probed at random (a new order id misses in the index of every order
/// of the retention), and on 4 KiB pages nearly every such probe also misses the TLB.
const HUGE_PAGE_BYTES: usize = 2 << 20;

/// Zeroed words, written (see [`written_zeros`]), on huge pages when large.
pub(crate) struct Words {
    ptr: NonNull<u64>,
    len: usize,
}

// SAFETY: `Words` owns its allocation like a `Box<[u64]>`.
unsafe impl Send for Words {}
unsafe impl Sync for Words {}

impl Words {
    pub(crate) fn zeroed(len: usize) -> Words {
        assert!(len > 0, "a table has at least one word");
        let layout = Self::layout(len);
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc(layout) }.cast::<u64>();
        let Some(ptr) = NonNull::new(ptr) else {
            handle_alloc_error(layout);
        };
        if layout.size() >= HUGE_PAGE_BYTES {
            advise_huge_pages(ptr.as_ptr().cast(), layout.size());
        }
        // SAFETY: `ptr` is valid for `len` words; writing (not calloc) maps them now.
        unsafe { std::ptr::write_bytes(ptr.as_ptr(), 0, len) };
        Words { ptr, len }
    }

    fn layout(len: usize) -> Layout {
        let bytes = len.saturating_mul(8);
        let align = if bytes >= HUGE_PAGE_BYTES {
            HUGE_PAGE_BYTES
        } else {
            8
        };
        Layout::from_size_align(bytes, align).unwrap_or_else(|_| panic!("{len} words"))
    }
}

impl Drop for Words {
    fn drop(&mut self) {
        // SAFETY: allocated by `zeroed` with this very layout.
        unsafe { dealloc(self.ptr.as_ptr().cast(), Self::layout(self.len)) }
    }
}

impl std::ops::Deref for Words {
    type Target = [u64];
    #[inline]
    fn deref(&self) -> &[u64] {
        // SAFETY: `len` initialised words, owned.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for Words {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u64] {
        // SAFETY: as in `deref`, and `&mut self` is unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

/// Asks for transparent huge pages over `[at, at + len)` (2 MiB aligned; the usual THP mode
/// is `madvise`). A hint: nothing depends on it.
fn advise_huge_pages(at: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    // SAFETY: the range is an allocation the caller owns and has not touched; MADV_HUGEPAGE
    // changes no contents, and a failure is harmless.
    unsafe {
        libc::madvise(at.cast(), len, libc::MADV_HUGEPAGE);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (at, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_zeroed_writable_and_large_ones_sit_on_huge_page_boundaries() {
        for len in [1usize, 64, HUGE_PAGE_BYTES / 8 - 1, HUGE_PAGE_BYTES / 8, 3 << 18] {
            let mut w = Words::zeroed(len);
            assert_eq!(w.len(), len);
            assert!(w.iter().all(|&x| x == 0));
            w[len - 1] = 7;
            assert_eq!(w.iter().sum::<u64>(), 7);
            let aligned = (w.as_ptr() as usize).is_multiple_of(HUGE_PAGE_BYTES);
            assert!(len * 8 < HUGE_PAGE_BYTES || aligned, "{len} words");
        }
    }
}
