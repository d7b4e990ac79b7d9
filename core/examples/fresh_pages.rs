//! Machine diagnostic: what a fresh page of memory costs here. A ledger that keeps every
//! finished reservation for 24 h grows by ~200 bytes per lifecycle, so in a benchmark it
//! keeps touching memory it never touched before; this prints, per 4 KiB page, the first
//! touch of fresh anonymous memory (a page fault and the zeroing of the page, plus whatever
//! the hypervisor does the first time a guest page is used), a second touch of the same
//! memory (mapped: no fault), and a fill of it (bandwidth), for a few rounds of allocating
//! and freeing. `cargo run -p stockledger --release --example fresh_pages -- [MiB]`
use std::time::Instant;

const PAGE: usize = 4096;

fn touch(buf: &mut [u8], value: u8) {
    for page in buf.chunks_mut(PAGE) {
        // Volatile: the store must happen, once per page.
        unsafe { std::ptr::write_volatile(page.as_mut_ptr(), value) };
    }
}

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let bytes = mib << 20;
    let pages = (bytes / PAGE) as f64;
    for round in 1..=3 {
        // `vec![0; n]` of this size is a fresh mapping (calloc): untouched until written.
        let mut buf = vec![0u8; bytes];
        let t = Instant::now();
        touch(&mut buf, 1);
        let first = t.elapsed().as_secs_f64();
        let t = Instant::now();
        touch(&mut buf, 2);
        let again = t.elapsed().as_secs_f64();
        let t = Instant::now();
        buf.fill(3);
        let fill = t.elapsed().as_secs_f64();
        std::hint::black_box(&buf);
        println!(
            "round {round}: first touch {:.0} ns/page ({:.2} GB/s), touch again {:.0} ns/page, fill {:.1} GB/s",
            first * 1e9 / pages,
            bytes as f64 / first / 1e9,
            again * 1e9 / pages,
            bytes as f64 / fill / 1e9,
        );
    }
}
