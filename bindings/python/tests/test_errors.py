"""Every exception of the contract: class tree, .code and extra attributes."""

import pickle

import pytest

import stockledger as sl

CODES = {
    sl.InvalidInput: "invalid_request",
    sl.InsufficientStock: "insufficient_stock",
    sl.OrderConflict: "order_conflict",
    sl.OrderNotFound: "order_not_found",
    sl.OrderNotActive: "order_not_active",
    sl.OrderPaid: "order_paid",
    sl.BelowReserved: "below_reserved",
    sl.AdjustmentConflict: "adjustment_conflict",
    sl.LedgerUnavailable: "ledger_unavailable",
}


@pytest.mark.parametrize("cls,code", list(CODES.items()))
def test_tree_and_codes(cls: type, code: str) -> None:
    assert issubclass(cls, sl.StockLedgerError)
    assert issubclass(cls, Exception)
    assert cls.code == code  # type: ignore[attr-defined]
    assert cls.__module__ == "stockledger"
    assert cls.__doc__


def test_extra_builtin_bases() -> None:
    assert issubclass(sl.InvalidInput, ValueError)
    assert issubclass(sl.OrderNotFound, KeyError)
    assert not issubclass(sl.InsufficientStock, ValueError)


def test_invalid_input(ledger: sl.Ledger) -> None:
    with pytest.raises(ValueError) as info:
        ledger.reserve("o-1", [("A1", "kol", 1), ("B2", "kol", 0)])
    e = info.value
    assert isinstance(e, sl.InvalidInput)
    assert e.code == "invalid_request"
    assert e.field == "lines[1].qty"
    assert str(e) == "lines[1].qty: must be between 1 and 1000000"


def test_insufficient_stock(ledger: sl.Ledger) -> None:
    ledger.set_stock("A1", "kol", 3)
    with pytest.raises(sl.InsufficientStock) as info:
        ledger.reserve("o-1", [("A1", "kol", 5)])
    e = info.value
    assert e.code == "insufficient_stock"
    assert len(e.shortfalls) == 1
    sf = e.shortfalls[0]
    assert isinstance(sf, sl.Shortfall)
    assert (sf.sku, sf.warehouse, sf.requested, sf.available) == ("A1", "kol", 5, 3)
    assert repr(sf) == "Shortfall(sku='A1', warehouse='kol', requested=5, available=3)"
    assert "A1" in str(e) and "requested 5" in str(e)


def test_order_conflict(ledger: sl.Ledger) -> None:
    ledger.set_stock("A1", "kol", 10)
    ledger.reserve("o-1", [("A1", "kol", 1)])
    with pytest.raises(sl.OrderConflict) as info:
        ledger.reserve("o-1", [("A1", "kol", 2)])
    assert info.value.code == "order_conflict"
    assert info.value.order_id == "o-1"
    assert ledger.stock("A1", "kol").reserved == 1


@pytest.mark.parametrize("method", ["commit", "release"])
def test_order_not_found(ledger: sl.Ledger, method: str) -> None:
    with pytest.raises(KeyError) as info:
        getattr(ledger, method)("ghost")
    e = info.value
    assert isinstance(e, sl.OrderNotFound)
    assert e.code == "order_not_found"
    assert e.order_id == "ghost"
    # Unlike a plain KeyError, the message is not wrapped in quotes.
    assert str(e) == "order ghost not found"


def test_order_not_active(ledger: sl.Ledger) -> None:
    ledger.set_stock("A1", "kol", 10)
    ledger.reserve("o-1", [("A1", "kol", 1)])
    ledger.release("o-1")
    with pytest.raises(sl.OrderNotActive) as info:
        ledger.commit("o-1")
    assert info.value.code == "order_not_active"
    assert info.value.status == "released"
    assert ledger.stock("A1", "kol").on_hand == 10


def test_order_paid(ledger: sl.Ledger) -> None:
    ledger.set_stock("A1", "kol", 10)
    ledger.reserve("o-1", [("A1", "kol", 1)])
    ledger.commit("o-1")
    with pytest.raises(sl.OrderPaid) as info:
        ledger.release("o-1")
    assert info.value.code == "order_paid"
    assert ledger.stock("A1", "kol").on_hand == 9


def test_below_reserved(ledger: sl.Ledger) -> None:
    ledger.set_stock("A1", "kol", 10)
    ledger.reserve("o-1", [("A1", "kol", 6)])
    with pytest.raises(sl.BelowReserved) as info:
        ledger.set_stock("A1", "kol", 5)
    e = info.value
    assert e.code == "below_reserved"
    assert (e.on_hand, e.reserved, e.requested_on_hand) == (10, 6, 5)
    with pytest.raises(sl.BelowReserved):
        ledger.adjust_stock("A1", "kol", -5, "adj-1")
    lvl = ledger.stock("A1", "kol")
    assert (lvl.on_hand, lvl.reserved) == (10, 6)
    # Below zero is refused the same way.
    ledger.set_stock("B2", "kol", 1)
    with pytest.raises(sl.BelowReserved):
        ledger.adjust_stock("B2", "kol", -2, "adj-2")


def test_adjustment_conflict(ledger: sl.Ledger) -> None:
    ledger.adjust_stock("A1", "kol", 5, "adj-1")
    with pytest.raises(sl.AdjustmentConflict) as info:
        ledger.adjust_stock("A1", "kol", 6, "adj-1")
    assert info.value.code == "adjustment_conflict"
    assert info.value.adjustment_id == "adj-1"
    with pytest.raises(sl.AdjustmentConflict):
        ledger.adjust_stock("B2", "kol", 5, "adj-1")
    assert ledger.stock("A1", "kol").on_hand == 5


def test_ledger_unavailable_after_close(folder) -> None:
    led = sl.Ledger(folder)
    led.close()
    with pytest.raises(sl.LedgerUnavailable) as info:
        led.stock("A1", "kol")
    assert info.value.code == "ledger_unavailable"
    assert "closed" in str(info.value)


def test_errors_pickle(ledger: sl.Ledger) -> None:
    ledger.set_stock("A1", "kol", 1)
    with pytest.raises(sl.InsufficientStock) as info:
        ledger.reserve("o-1", [("A1", "kol", 2)])
    back = pickle.loads(pickle.dumps(info.value))
    assert type(back) is sl.InsufficientStock
    assert back.shortfalls == info.value.shortfalls
    assert str(back) == str(info.value)
