"""read_events: the durable event stream of a folder as dicts, on a live ledger too."""

import threading
import types
from typing import Any, Dict, List

import pytest

import stockledger as sl
from conftest import wait_for


def fill(led: sl.Ledger) -> None:
    led.set_stock("A1", "kol", 10)
    led.adjust_stock("A1", "kol", -1, "adj-1", reason="damaged")
    led.reserve("o-1", [("A1", "kol", 2)], ttl_seconds=60)
    led.commit("o-1")
    led.reserve("o-2", [("A1", "kol", 1)])
    led.release("o-2")


def test_shape_of_every_event(folder) -> None:
    with sl.Ledger(folder) as led:
        fill(led)
    evs = list(sl.read_events(folder))
    assert [e["seq"] for e in evs] == [1, 2, 3, 4, 5, 6]
    assert [e["type"] for e in evs] == [
        "stock.set",
        "stock.adjusted",
        "reservation.created",
        "order.paid",
        "reservation.created",
        "reservation.released",
    ]
    assert len({e["event_id"] for e in evs}) == 6
    for e in evs:
        assert list(e)[:4] == ["seq", "event_id", "type", "at"]
        assert e["at"].endswith("Z") and "T" in e["at"]
    s, a, c, p, _, r = evs
    assert {k: s[k] for k in ("sku", "warehouse", "on_hand", "delta", "source")} == {
        "sku": "A1", "warehouse": "kol", "on_hand": 10, "delta": 10, "source": "warehouse"}
    assert (a["on_hand"], a["delta"], a["reason"], a["adjustment_id"]) == (9, -1, "damaged", "adj-1")
    assert c["order_id"] == "o-1"
    assert c["lines"] == [{"sku": "A1", "warehouse": "kol", "qty": 2}]
    assert "expires_at" in c
    assert p["order_id"] == "o-1" and p["lines"] == c["lines"]
    assert r["order_id"] == "o-2"


def test_lazy_iterator_and_after(folder) -> None:
    with sl.Ledger(folder) as led:
        fill(led)
    it = sl.read_events(folder, after=4)
    assert isinstance(it, sl.EventIterator)
    assert iter(it) is it
    assert next(it)["seq"] == 5
    assert [e["seq"] for e in it] == [6]
    with pytest.raises(StopIteration):
        next(it)
    assert list(sl.read_events(folder, after=6)) == []
    assert list(sl.read_events(folder, after=10**6)) == []


def test_many_events_across_batches(folder) -> None:
    with sl.Ledger(folder, durability="async") as led:
        led.set_stock("A1", "kol", 10**6)
        for i in range(1500):
            led.reserve(f"o-{i}", [("A1", "kol", 1)])
    seqs = [e["seq"] for e in sl.read_events(folder)]
    assert seqs == list(range(1, 1502))


def test_read_events_on_a_live_ledger(folder) -> None:
    with sl.Ledger(folder) as led:
        led.set_stock("A1", "kol", 10**6)
        stop = threading.Event()
        written = [0]

        def writer() -> None:
            i = 0
            while not stop.is_set() and i < 3000:
                led.reserve(f"o-{i}", [("A1", "kol", 1)])
                i += 1
                written[0] = i

        th = threading.Thread(target=writer)
        th.start()
        try:
            seen: List[Dict[str, Any]] = []
            after = 0
            # Tail the folder while the writer runs: every read is gap-free and in order.
            wait_for(lambda: written[0] >= 200, what="the writer to start")
            for _ in range(5):
                batch = list(sl.read_events(folder, after=after))
                assert [e["seq"] for e in batch] == list(range(after + 1, after + 1 + len(batch)))
                seen.extend(batch)
                if batch:
                    after = batch[-1]["seq"]
        finally:
            stop.set()
            th.join()
        assert len(seen) >= 200
        # The reader did not disturb the writer: the ledger still works and sees it all.
        assert led.stock("A1", "kol").reserved == written[0]
        assert led.last_seq == written[0] + 1
    # And after close, the full stream is there.
    assert [e["seq"] for e in sl.read_events(folder)] == list(range(1, written[0] + 2))


def test_pandas_one_liner(folder) -> None:
    import pandas as pd  # installed by scripts/test.d/20-python.sh: the one-liner must work

    with sl.Ledger(folder) as led:
        fill(led)
    df = pd.DataFrame(sl.read_events(folder))
    assert len(df) == 6
    assert list(df.columns[:4]) == ["seq", "event_id", "type", "at"]
    assert list(df["type"].value_counts().sort_index().index) == sorted(set(df["type"]))
    at = pd.to_datetime(df["at"])
    assert str(at.dt.tz) == "UTC"


def test_iterator_is_a_generator_replacement() -> None:
    assert isinstance(sl.read_events, types.BuiltinFunctionType)
    assert sl.read_events.__doc__ and "pandas" in sl.read_events.__doc__
