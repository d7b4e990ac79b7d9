//! CPU cache and page hints. A prefetch never faults and changes no value, so it is safe
//! on any address; it only starts the load early.

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

/// `n` zero words, written: `vec![0; n]` would take untouched pages from the allocator, the
/// first probe of each (a read) would map the shared zero page, and the first insert would
/// then take a second, copy-on-write fault with a TLB flush on every core (seen as
/// `do_wp_page` and `smp_call_function_many_cond` in profiles of open and replay).
#[allow(clippy::slow_vector_initialization)] // the point: written, not calloc'd
pub(crate) fn written_zeros(n: usize) -> Vec<u64> {
    let mut words = Vec::with_capacity(n);
    words.resize(n, 0);
    words
}
