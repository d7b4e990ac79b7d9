"""Bad input of every kind raises InvalidInput naming the field and changes nothing."""

import os
import random
from typing import Any, Callable, List, Tuple

import pytest

import stockledger as sl

HUGE = 2**64
BAD_INTS = [None, 1.0, 2.5, float("nan"), float("inf"), "3", b"3", True, HUGE, -HUGE, [1], object()]
BAD_STRS = [None, 1, 1.5, b"A1", ["A1"], object(), "\ud800"]


def check(call: Callable[[], Any], field: str) -> sl.InvalidInput:
    with pytest.raises(sl.InvalidInput) as info:
        call()
    e = info.value
    assert isinstance(e, ValueError)
    assert e.code == "invalid_request"
    assert e.field == field, str(e)
    assert str(e).startswith(field + ":")
    return e


@pytest.fixture
def stocked(ledger: sl.Ledger) -> sl.Ledger:
    ledger.set_stock("A1", "kol", 10)
    return ledger


def unchanged(ledger: sl.Ledger) -> None:
    lvl = ledger.stock("A1", "kol")
    assert (lvl.on_hand, lvl.reserved) == (10, 0)
    assert ledger.last_seq == 1


@pytest.mark.parametrize("bad", BAD_STRS + ["", "a" * 65, "has space", "ünï", "a/b"])
def test_bad_sku_and_warehouse(stocked: sl.Ledger, bad: Any) -> None:
    check(lambda: stocked.set_stock(bad, "kol", 1), "sku")
    check(lambda: stocked.set_stock("A1", bad, 1), "warehouse")
    check(lambda: stocked.stock(bad, "kol"), "sku")
    check(lambda: stocked.adjust_stock("A1", bad, 1, "adj"), "warehouse")
    check(lambda: stocked.reserve("o-1", [(bad, "kol", 1)]), "lines[0].sku")
    check(lambda: stocked.reserve("o-1", [("A1", "kol", 1), ("A1", bad, 1)]), "lines[1].warehouse")
    unchanged(stocked)


@pytest.mark.parametrize("bad", BAD_STRS + ["", "x" * 129, "with space", "tab\t", "é"])
def test_bad_order_id(stocked: sl.Ledger, bad: Any) -> None:
    check(lambda: stocked.reserve(bad, [("A1", "kol", 1)]), "order_id")
    check(lambda: stocked.commit(bad), "order_id")
    check(lambda: stocked.release(bad), "order_id")
    check(lambda: stocked.reservation(bad), "order_id")
    check(lambda: stocked.adjust_stock("A1", "kol", 1, bad), "adjustment_id")
    unchanged(stocked)


@pytest.mark.parametrize("bad", BAD_INTS + [-1, 2**53])
def test_bad_on_hand(stocked: sl.Ledger, bad: Any) -> None:
    check(lambda: stocked.set_stock("A1", "kol", bad), "on_hand")
    unchanged(stocked)


def test_on_hand_limits(stocked: sl.Ledger) -> None:
    assert stocked.set_stock("B2", "kol", 2**53 - 1).on_hand == 2**53 - 1
    assert stocked.set_stock("B2", "kol", 0).on_hand == 0


@pytest.mark.parametrize("bad", BAD_INTS + [0, 2**53, -(2**53)])
def test_bad_delta(stocked: sl.Ledger, bad: Any) -> None:
    check(lambda: stocked.adjust_stock("A1", "kol", bad, "adj-1"), "delta")
    unchanged(stocked)


@pytest.mark.parametrize("bad", [1, b"x", ["x"], "r" * 257])
def test_bad_reason(stocked: sl.Ledger, bad: Any) -> None:
    check(lambda: stocked.adjust_stock("A1", "kol", 1, "adj-1", reason=bad), "reason")
    unchanged(stocked)


@pytest.mark.parametrize("bad", BAD_INTS + [0, -1, 1_000_001])
def test_bad_qty(stocked: sl.Ledger, bad: Any) -> None:
    check(lambda: stocked.reserve("o-1", [("A1", "kol", bad)]), "lines[0].qty")
    unchanged(stocked)


@pytest.mark.parametrize("bad", BAD_INTS + [0, -1, 604_801])
def test_bad_ttl(stocked: sl.Ledger, bad: Any) -> None:
    check(lambda: stocked.reserve("o-1", [("A1", "kol", 1)], ttl_seconds=bad), "ttl_seconds")
    unchanged(stocked)


@pytest.mark.parametrize(
    "bad,field",
    [
        (None, "lines"),
        ("A1", "lines"),
        ({"A1": 1}, "lines"),
        (("A1", "kol", 1), "lines[0]"),
        ([], "lines"),
        ([("A1", "kol")], "lines[0]"),
        ([("A1", "kol", 1, 2)], "lines[0]"),
        ([None], "lines[0]"),
        ([("A1", "kol", 1), "A1"], "lines[1]"),
        ([("A1", "kol", 1)] * 101, "lines"),
        ([("A1", "kol", 1), ("A1", "kol", 2)], "lines[1]"),
        (iter([("A1", "kol", 1)]), "lines"),
    ],
)
def test_bad_lines(stocked: sl.Ledger, bad: Any, field: str) -> None:
    check(lambda: stocked.reserve("o-1", bad), field)
    unchanged(stocked)


def test_huge_lines_list_is_refused_cheaply(stocked: sl.Ledger) -> None:
    check(lambda: stocked.reserve("o-1", [("A1", "kol", 1)] * 10_000_000), "lines")


def test_numpy_like_ints_are_accepted(stocked: sl.Ledger) -> None:
    class Index:
        def __index__(self) -> int:
            return 4

    assert stocked.set_stock("A1", "kol", Index()).on_hand == 4  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [None, 1, b"sync", "SYNC", "fast", ""])
def test_bad_durability(folder: Any, bad: Any) -> None:
    check(lambda: sl.Ledger(folder, durability=bad), "durability")


@pytest.mark.parametrize("bad", [None, 1, 1.5, True, [], "", "a\0b"])
def test_bad_path(bad: Any) -> None:
    check(lambda: sl.Ledger(bad), "path")
    check(lambda: sl.read_events(bad), "folder")


def test_path_like_is_accepted(folder: Any) -> None:
    with sl.Ledger(os.fspath(folder)) as led:
        led.set_stock("A1", "kol", 1)
    assert [e["type"] for e in sl.read_events(folder)] == ["stock.set"]


@pytest.mark.parametrize("bad", [None, -1, 1.0, "0", HUGE])
def test_bad_after(folder: Any, bad: Any) -> None:
    with sl.Ledger(folder):
        pass
    check(lambda: sl.read_events(folder, after=bad), "after")


def test_read_events_of_a_missing_folder(tmp_path: Any) -> None:
    check(lambda: sl.read_events(tmp_path / "missing"), "folder")


class Weird:
    """Objects that fight back: their conversions raise."""

    def __index__(self) -> int:
        raise RuntimeError("no index")

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __fspath__(self) -> str:
        raise RuntimeError("no path")

    def __iter__(self) -> Any:
        raise RuntimeError("no iter")

    def __len__(self) -> int:
        raise RuntimeError("no len")


POOL: List[Any] = [
    None, 0, 1, -1, 2**63, 2**64 + 1, -(2**70), 1.5, float("nan"), True, "", "A1", "kol",
    "o-1", "x" * 300, "\ud800", b"A1", bytearray(b"kol"), [], [("A1", "kol", 1)], (), {},
    {"sku": "A1"}, object(), Weird(), [Weird()], [("A1", "kol", Weird())], [(Weird(), "kol", 1)],
    [["A1", "kol", 1.0]], [[None, None, None]], range(3),
]


def test_random_garbage_never_escapes_the_error_tree(stocked: sl.Ledger) -> None:
    rng = random.Random(20261125)
    methods: List[Tuple[str, int]] = [
        ("set_stock", 3), ("adjust_stock", 5), ("stock", 2), ("sku_stock", 1), ("reserve", 3),
        ("commit", 1), ("release", 1), ("reservation", 1),
    ]
    for _ in range(3000):
        name, arity = rng.choice(methods)
        args = [rng.choice(POOL) for _ in range(arity)]
        try:
            getattr(stocked, name)(*args)
        except sl.StockLedgerError:
            pass
    for _ in range(200):
        for call in (lambda a: sl.read_events(a), lambda a: sl.Ledger(a, durability=rng.choice(POOL))):
            try:
                call(rng.choice(POOL))
            except sl.StockLedgerError:
                pass
    lvl = stocked.stock("A1", "kol")
    assert lvl.available == lvl.on_hand - lvl.reserved
