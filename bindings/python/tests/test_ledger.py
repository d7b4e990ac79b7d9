"""Every method of Ledger, the reservation life cycle, idempotency and all-or-nothing."""

import datetime as dt

import pytest

import stockledger as sl
from conftest import wait_for

UTC = dt.timezone.utc


def test_set_and_read_stock(ledger: sl.Ledger) -> None:
    lvl = ledger.set_stock("A1", "kol", 100)
    assert isinstance(lvl, sl.StockLevel)
    assert (lvl.on_hand, lvl.reserved, lvl.available) == (100, 0, 100)
    assert ledger.stock("A1", "kol") == lvl
    assert repr(lvl) == "StockLevel(on_hand=100, reserved=0, available=100)"
    assert lvl == sl.StockLevel(on_hand=100, reserved=0, available=100)
    assert lvl != sl.StockLevel(100, 1, 99)
    # Setting again replaces, it does not add.
    assert ledger.set_stock("A1", "kol", 7).on_hand == 7


def test_unknown_cell_reads_zeros(ledger: sl.Ledger) -> None:
    lvl = ledger.stock("nope", "kol")
    assert (lvl.on_hand, lvl.reserved, lvl.available) == (0, 0, 0)
    assert ledger.sku_stock("nope") is None


def test_sku_stock_lists_every_warehouse(ledger: sl.Ledger) -> None:
    ledger.set_stock("A1", "kol", 5)
    ledger.set_stock("A1", "ber", 3)
    cells = ledger.sku_stock("A1")
    assert cells is not None
    assert list(cells) == ["ber", "kol"]
    assert cells["ber"] == ledger.stock("A1", "ber")
    assert cells["kol"].on_hand == 5


def test_adjust_stock_is_idempotent_by_id(ledger: sl.Ledger) -> None:
    ledger.set_stock("A1", "kol", 100)
    lvl = ledger.adjust_stock("A1", "kol", -3, adjustment_id="adj-1", reason="damaged")
    assert lvl.on_hand == 97
    # A replay applies nothing and returns the cell as it is now.
    ledger.set_stock("A1", "kol", 50)
    again = ledger.adjust_stock("A1", "kol", -3, adjustment_id="adj-1", reason="damaged")
    assert again.on_hand == 50
    assert ledger.adjust_stock("A1", "kol", 10, "adj-2").on_hand == 60
    # Positional reason, and adjusting an unknown cell creates it.
    assert ledger.adjust_stock("B2", "kol", 4, "adj-3", "inbound").on_hand == 4


def test_reserve_holds_stock_at_once(ledger: sl.Ledger) -> None:
    ledger.set_stock("A1", "kol", 100)
    ledger.set_stock("B2", "kol", 10)
    before = dt.datetime.now(UTC)
    r = ledger.reserve("o-1", [("A1", "kol", 2), ("B2", "kol", 1)], ttl_seconds=900)
    after = dt.datetime.now(UTC)
    assert isinstance(r, sl.Reservation)
    assert r.order_id == "o-1"
    assert r.status == "reserved"
    assert sorted(r.lines) == [("A1", "kol", 2), ("B2", "kol", 1)]
    assert all(isinstance(line, tuple) for line in r.lines)
    assert r.created_at.tzinfo is not None and r.created_at.utcoffset() == dt.timedelta(0)
    assert before - dt.timedelta(seconds=1) <= r.created_at <= after + dt.timedelta(seconds=1)
    assert r.expires_at - r.created_at == dt.timedelta(seconds=900)
    assert r.finished_at is None
    lvl = ledger.stock("A1", "kol")
    assert (lvl.on_hand, lvl.reserved, lvl.available) == (100, 2, 98)
    assert ledger.stock("B2", "kol").available == 9
    assert "order_id='o-1'" in repr(r) and "status='reserved'" in repr(r)
    assert "('A1', 'kol', 2)" in repr(r)


def test_default_ttl_is_900_seconds(ledger: sl.Ledger) -> None:
    ledger.set_stock("A1", "kol", 1)
    r = ledger.reserve("o-1", [("A1", "kol", 1)])
    assert r.expires_at - r.created_at == dt.timedelta(seconds=900)


def test_lines_may_be_lists_and_tuples(ledger: sl.Ledger) -> None:
    ledger.set_stock("A1", "kol", 5)
    r = ledger.reserve("o-1", (["A1", "kol", 2],))
    assert r.lines == [("A1", "kol", 2)]


def test_reserve_is_idempotent(ledger: sl.Ledger) -> None:
    ledger.set_stock("A1", "kol", 10)
    ledger.set_stock("B2", "kol", 10)
    first = ledger.reserve("o-1", [("A1", "kol", 2), ("B2", "kol", 3)])
    # Same lines in another order: the same reservation, nothing more held.
    again = ledger.reserve("o-1", [("B2", "kol", 3), ("A1", "kol", 2)])
    assert again.created_at == first.created_at
    assert again.status == "reserved"
    assert ledger.stock("A1", "kol").reserved == 2
    assert ledger.stock("B2", "kol").reserved == 3
    # Whatever its state.
    ledger.commit("o-1")
    replay = ledger.reserve("o-1", [("A1", "kol", 2), ("B2", "kol", 3)])
    assert replay.status == "paid"
    assert ledger.stock("A1", "kol").on_hand == 8


def test_reserve_all_or_nothing(ledger: sl.Ledger) -> None:
    ledger.set_stock("A1", "kol", 10)
    ledger.set_stock("B2", "kol", 1)
    with pytest.raises(sl.InsufficientStock) as info:
        ledger.reserve("o-1", [("A1", "kol", 5), ("B2", "kol", 2), ("C3", "kol", 1)])
    assert info.value.shortfalls == [
        sl.Shortfall("B2", "kol", 2, 1),
        sl.Shortfall("C3", "kol", 1, 0),
    ]
    # Nothing was held, and the order id is still free.
    assert ledger.stock("A1", "kol").reserved == 0
    assert ledger.stock("B2", "kol").reserved == 0
    assert ledger.reservation("o-1") is None
    assert ledger.reserve("o-1", [("A1", "kol", 5)]).status == "reserved"


def test_commit_takes_stock_out(ledger: sl.Ledger) -> None:
    ledger.set_stock("A1", "kol", 10)
    ledger.reserve("o-1", [("A1", "kol", 4)])
    r = ledger.commit("o-1")
    assert r.status == "paid"
    assert r.finished_at is not None and r.finished_at >= r.created_at
    lvl = ledger.stock("A1", "kol")
    assert (lvl.on_hand, lvl.reserved, lvl.available) == (6, 0, 6)
    # Committing again is a no-op success.
    assert ledger.commit("o-1").status == "paid"
    assert ledger.stock("A1", "kol").on_hand == 6


def test_release_returns_stock(ledger: sl.Ledger) -> None:
    ledger.set_stock("A1", "kol", 10)
    ledger.reserve("o-1", [("A1", "kol", 4)])
    r = ledger.release("o-1")
    assert r.status == "released"
    lvl = ledger.stock("A1", "kol")
    assert (lvl.on_hand, lvl.reserved, lvl.available) == (10, 0, 10)
    # Releasing again: as it is.
    assert ledger.release("o-1").status == "released"
    assert ledger.stock("A1", "kol").reserved == 0


def test_reservation_lookup(ledger: sl.Ledger) -> None:
    assert ledger.reservation("o-1") is None
    ledger.set_stock("A1", "kol", 10)
    made = ledger.reserve("o-1", [("A1", "kol", 1)])
    found = ledger.reservation("o-1")
    assert found == made
    assert found is not None and found.status == "reserved"
    ledger.commit("o-1")
    assert ledger.reservation("o-1") != made


def test_expiry(ledger: sl.Ledger) -> None:
    ledger.set_stock("A1", "kol", 10)
    ledger.reserve("o-1", [("A1", "kol", 3)], ttl_seconds=1)
    ledger.reserve("o-2", [("A1", "kol", 1)], ttl_seconds=600)
    assert ledger.stock("A1", "kol").reserved == 4
    # A commit after the ttl is refused even before the expiry ran.
    expired: list = []

    def expire() -> bool:
        expired.extend(ledger.expire_due())
        return "o-1" in expired

    wait_for(expire, what="o-1 to expire")
    assert expired == ["o-1"]
    r = ledger.reservation("o-1")
    assert r is not None and r.status == "expired"
    assert ledger.stock("A1", "kol").reserved == 1
    assert ledger.expire_due() == []
    with pytest.raises(sl.OrderNotActive):
        ledger.commit("o-1")
    assert ledger.release("o-1").status == "expired"


def test_commit_after_ttl_before_expiry_is_not_active(ledger: sl.Ledger) -> None:
    ledger.set_stock("A1", "kol", 10)
    r = ledger.reserve("o-1", [("A1", "kol", 3)], ttl_seconds=1)
    wait_for(lambda: dt.datetime.now(UTC) > r.expires_at + dt.timedelta(milliseconds=50),
             what="the ttl to pass")
    with pytest.raises(sl.OrderNotActive):
        ledger.commit("o-1")


def test_checkpoint_returns_last_seq(ledger: sl.Ledger) -> None:
    ledger.set_stock("A1", "kol", 10)
    ledger.reserve("o-1", [("A1", "kol", 1)])
    assert ledger.checkpoint() == 2
    assert ledger.last_seq == 2


def test_events_of_the_live_ledger(ledger: sl.Ledger) -> None:
    ledger.set_stock("A1", "kol", 10)
    ledger.reserve("o-1", [("A1", "kol", 1)])
    evs = ledger.events()
    assert [e["type"] for e in evs] == ["stock.set", "reservation.created"]
    assert [e["seq"] for e in ledger.events(after=1)] == [2]
    assert len(ledger.events(after=0, limit=1)) == 1


def test_properties_and_repr(ledger: sl.Ledger, folder) -> None:
    assert ledger.durability == "sync"
    assert str(ledger.path) == str(folder)
    assert ledger.closed is False
    assert repr(ledger) == f"Ledger('{folder}', durability='sync')"


@pytest.mark.parametrize("mode", ["sync", "async", "none"])
def test_every_durability_mode(tmp_path, mode: str) -> None:
    with sl.Ledger(tmp_path / mode, durability=mode) as led:
        assert led.durability == mode
        led.set_stock("A1", "kol", 3)
        led.reserve("o-1", [("A1", "kol", 3)])
        with pytest.raises(sl.InsufficientStock):
            led.reserve("o-2", [("A1", "kol", 1)])
        assert led.commit("o-1").status == "paid"
        assert led.stock("A1", "kol").on_hand == 0
