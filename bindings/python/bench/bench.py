"""Reservations per second from Python, and what the binding adds per call over Rust.

    python bindings/python/bench/bench.py            # after `pip install ./bindings/python`
    python bindings/python/bench/bench.py --quick    # smaller counts

1. Overhead: the same loop (one order id and one line built per call, one unit of one sku,
   durability "none") run from Python through `Ledger.reserve` and from Rust through the
   module's private `_rust_reserve_loop`; the difference per call is the binding's cost
   (argument checks, string copies, releasing the interpreter, the Reservation object).
2. Throughput: durability "none" and "sync", 1 and 4 Python threads sharing one Ledger,
   orders of one line spread over 1,000 skus.
3. Batches: `reserve_many` with 10,000 orders per call (the orders list built beforehand,
   once per call, and timed apart), durability "none" and "sync".
"""

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from typing import Callable, List

import stockledger as sl
from stockledger import _stockledger as native  # type: ignore[attr-defined]


def best_of(runs: int, f: Callable[[], float]) -> float:
    return min(f() for _ in range(runs))


def overhead(n: int, runs: int) -> None:
    def python_loop() -> float:
        with tempfile.TemporaryDirectory() as d, sl.Ledger(d, durability="none") as led:
            led.set_stock("A1", "kol", 10**12)
            reserve = led.reserve
            line = [("A1", "kol", 1)]
            t = time.perf_counter()
            for i in range(n):
                reserve(f"p-{i}", line)
            return (time.perf_counter() - t) / n

    def rust_loop() -> float:
        with tempfile.TemporaryDirectory() as d, sl.Ledger(d, durability="none") as led:
            led.set_stock("A1", "kol", 10**12)
            return float(native._rust_reserve_loop(led, "r-", "A1", "kol", n)) / n

    def empty_loop() -> float:
        line = [("A1", "kol", 1)]
        t = time.perf_counter()
        for i in range(n):
            (f"p-{i}", line)
        return (time.perf_counter() - t) / n

    py = best_of(runs, python_loop)
    rs = best_of(runs, rust_loop)
    loop = best_of(runs, empty_loop)
    print(f"overhead  n={n} best of {runs}, durability none, 1 thread, one sku")
    print(f"  Rust API     {rs * 1e6:6.2f} us/call  ({1 / rs:,.0f}/s)")
    print(f"  Python       {py * 1e6:6.2f} us/call  ({1 / py:,.0f}/s)")
    print(f"  of which the Python loop itself (f-string, tuple) {loop * 1e6:.2f} us")
    print(f"  binding adds {(py - rs) * 1e6:6.2f} us/call ({(py - loop - rs) * 1e6:.2f} us without the loop)")


def throughput(mode: str, threads: int, per_thread: int, skus: int = 1000) -> float:
    with tempfile.TemporaryDirectory() as d, sl.Ledger(d, durability=mode) as led:
        for s in range(skus):
            led.set_stock(f"S{s}", "kol", 10**12)
        start = threading.Barrier(threads + 1)
        errors: List[BaseException] = []

        def worker(t: int) -> None:
            reserve = led.reserve
            start.wait()
            try:
                for i in range(per_thread):
                    reserve(f"o-{t}-{i}", [(f"S{(i * 7 + t) % skus}", "kol", 1)])
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        ths = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
        for th in ths:
            th.start()
        start.wait()
        t0 = time.perf_counter()
        for th in ths:
            th.join()
        elapsed = time.perf_counter() - t0
        if errors:
            raise errors[0]
        return threads * per_thread / elapsed


def batches(mode: str, calls: int, size: int = 10_000, skus: int = 1000) -> None:
    with tempfile.TemporaryDirectory() as d, sl.Ledger(d, durability=mode) as led:
        for s in range(skus):
            led.set_stock(f"S{s}", "kol", 10**12)
        lines = [[(f"S{s}", "kol", 1)] for s in range(skus)]
        build = call = 0.0
        for c in range(calls):
            t0 = time.perf_counter()
            orders = [(f"b-{c}-{i}", lines[(i * 7) % skus]) for i in range(size)]
            t1 = time.perf_counter()
            got = led.reserve_many(orders)
            t2 = time.perf_counter()
            assert got.count(True) == size, got[:3]
            build += t1 - t0
            call += t2 - t1
        n = calls * size
        print(f"  durability={mode:<5} reserve_many x{size}: {n / call:>12,.0f}/s "
              f"({call / n * 1e6:.2f} us/order in the call; building the list took "
              f"{build / n * 1e6:.2f} us/order more)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    scale = 0.2 if args.quick else 1.0
    print(f"stockledger {sl.__version__}, Python {platform.python_version()}, "
          f"{platform.machine()}, {os.cpu_count()} cpus, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    overhead(int(200_000 * scale), 3)
    print("throughput (reservations/s, 1 line each, 1,000 skus)")
    for mode, per in [("none", 100_000), ("sync", 3_000)]:
        for threads in (1, 4):
            n = max(100, int(per * scale / threads))
            rate = best_of(2, lambda: -throughput(mode, threads, n)) * -1
            print(f"  durability={mode:<5} threads={threads}  {rate:>10,.0f}/s")
    print("batches (reserve_many, 1 thread, 1 line each, 1,000 skus)")
    for mode in ("none", "sync"):
        batches(mode, max(2, int(100 * scale)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
