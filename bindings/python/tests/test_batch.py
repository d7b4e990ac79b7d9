"""reserve_many: one call for many orders, each answered as reserve would answer it."""

from typing import Any, List, Tuple

import pytest

import stockledger as sl


def _ledger(tmp_path, name: str, mode: str = "none") -> sl.Ledger:
    led = sl.Ledger(tmp_path / name, durability=mode)
    led.set_stock("A1", "kol", 3)
    led.set_stock("B2", "kol", 10)
    return led


ORDERS: List[Tuple[str, List[Tuple[Any, Any, Any]]]] = [
    ("o-1", [("A1", "kol", 2)]),
    ("o-2", [("B2", "kol", 1), ("A1", "kol", 2)]),  # A1 short: nothing held
    ("o-1", [("A1", "kol", 2)]),  # replay
    ("o-1", [("B2", "kol", 1)]),  # conflict
    ("o-3", [("A1", "kol", 1), ("A1", "kol", 1)]),  # duplicate cell
    ("o-4", [("Z9", "kol", 1)]),  # unknown cell
    ("", [("B2", "kol", 1)]),  # empty id
    ("o-5", [("B2", "kol", 4)]),
]


@pytest.mark.parametrize("mode", ["none", "sync"])
def test_each_result_is_what_reserve_gives(tmp_path, mode: str) -> None:
    with _ledger(tmp_path, "batch", mode) as batch, _ledger(tmp_path, "one", mode) as one:
        got = batch.reserve_many(ORDERS)
        assert len(got) == len(ORDERS)
        for (order_id, lines), result in zip(ORDERS, got):
            try:
                one.reserve(order_id, lines)
            except sl.StockLedgerError as e:
                assert isinstance(result, type(e)), (order_id, result, e)
                assert result.code == e.code
                assert str(result) == str(e)
                continue
            assert isinstance(result, bool), (order_id, result)
        assert got[0] is True and got[2] is False and got[7] is True
        assert isinstance(got[1], sl.InsufficientStock)
        assert got[1].shortfalls == [sl.Shortfall("A1", "kol", 2, 1)]
        assert isinstance(got[3], sl.OrderConflict)
        assert isinstance(got[4], sl.InvalidInput) and got[4].field == "lines[1]"
        for sku in ("A1", "B2"):
            assert batch.stock(sku, "kol") == one.stock(sku, "kol")
        assert batch.stock("B2", "kol").reserved == 4
        r1 = batch.reservation("o-1")
        assert r1 is not None and r1.lines == [("A1", "kol", 2)] and r1.status == "reserved"


def test_a_batch_is_durable_in_sync_mode(tmp_path) -> None:
    folder = tmp_path / "l"
    with sl.Ledger(folder) as led:
        led.set_stock("A1", "kol", 1000)
        got = led.reserve_many([(f"o-{i}", [("A1", "kol", 1)]) for i in range(500)], ttl_seconds=60)
        assert got == [True] * 500
    with sl.Ledger(folder) as led:
        assert led.stock("A1", "kol").reserved == 500
        r = led.reservation("o-499")
        assert r is not None
        assert (r.expires_at - r.created_at).total_seconds() == 60


@pytest.mark.parametrize(
    "orders, field",
    [
        ("o-1", "orders"),
        ([("o-1",)], "orders[0]"),
        ([None], "orders[0]"),
        ([("o-1", [("A1", "kol", 1)]), (7, [("A1", "kol", 1)])], "orders[1].order_id"),
        ([("o-1", [])], "orders[0].lines"),
        ([("o-1", "A1")], "orders[0].lines"),
        ([("o-1", [("A1", "kol")])], "orders[0].lines[0]"),
        ([("o-1", [("A1", b"kol", 1)])], "orders[0].lines[0].warehouse"),
        ([("o-1", [("A1", "kol", 1), ("B2", "kol", 1.0)])], "orders[0].lines[1].qty"),
        ([("o-1", [("A1", "kol", 10**30)])], "orders[0].lines[0].qty"),
        ([("o-1", [("A1", "kol", True)])], "orders[0].lines[0].qty"),
        ([("o-1", [("\udc80", "kol", 1)])], "orders[0].lines[0].sku"),
        ([("o-1", [("A1", "kol", 1)] * 101)], "orders[0].lines"),
        ([("o-%d" % i, [("A1", "kol", 1)]) for i in range(10_001)], "orders"),
    ],
)
def test_a_malformed_batch_reserves_nothing(tmp_path, orders: Any, field: str) -> None:
    with _ledger(tmp_path, "l") as led:
        # A valid order first: it must not be reserved either.
        with pytest.raises(sl.InvalidInput) as e:
            led.reserve_many(orders)
        assert e.value.field == field
        assert led.stock("A1", "kol").reserved == 0
        assert led.reservation("o-1") is None


def test_bad_ttl_and_closed_ledger(tmp_path) -> None:
    led = _ledger(tmp_path, "l")
    with pytest.raises(sl.InvalidInput) as e:
        led.reserve_many([("o-1", [("A1", "kol", 1)])], ttl_seconds=0)
    assert e.value.field == "ttl_seconds"
    assert led.reserve_many([]) == []
    led.close()
    with pytest.raises(sl.LedgerUnavailable):
        led.reserve_many([("o-1", [("A1", "kol", 1)])])


def test_a_hot_sku_never_oversells_across_batches(tmp_path) -> None:
    import threading

    with sl.Ledger(tmp_path / "l", durability="none") as led:
        led.set_stock("HOT", "kol", 1000)
        wins: List[int] = []
        others: List[Any] = []

        def worker(t: int) -> None:
            orders = [(f"t{t}-{i}", [("HOT", "kol", 1)]) for i in range(600)]
            got = led.reserve_many(orders)
            wins.append(sum(1 for r in got if r is True))
            others.extend(r for r in got if not (r is True or isinstance(r, sl.InsufficientStock)))

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert others == []
        assert sum(wins) == 1000
        assert led.stock("HOT", "kol").available == 0
