"""The package's surface: names, docstrings, stubs shipped in the wheel."""

import inspect
import sys
from pathlib import Path

import stockledger as sl

PUBLIC = [
    "Ledger", "StockLevel", "Reservation", "Shortfall", "read_events", "EventIterator",
    "StockLedgerError", "InvalidInput", "InsufficientStock", "OrderConflict", "OrderNotFound",
    "OrderNotActive", "OrderPaid", "BelowReserved", "AdjustmentConflict", "LedgerUnavailable",
]
METHODS = [
    "set_stock", "adjust_stock", "stock", "sku_stock", "reserve", "commit", "release",
    "reservation", "expire_due", "checkpoint", "events", "close", "last_seq", "closed", "path",
    "durability",
]


def test_every_public_name_has_a_docstring() -> None:
    for name in PUBLIC:
        obj = getattr(sl, name)
        assert name in sl.__all__
        assert obj.__doc__ and obj.__doc__.strip(), name
    for name in METHODS:
        assert getattr(sl.Ledger, name).__doc__, name
    for cls, attrs in [
        (sl.StockLevel, ["on_hand", "reserved", "available"]),
        (sl.Reservation, ["order_id", "status", "lines", "created_at", "expires_at"]),
        (sl.Shortfall, ["sku", "warehouse", "requested", "available"]),
    ]:
        for a in attrs:
            assert hasattr(cls, a)


def test_stubs_and_marker_are_installed() -> None:
    pkg = Path(sl.__file__).parent
    assert (pkg / "py.typed").exists()
    stub = (pkg / "__init__.pyi").read_text()
    for name in PUBLIC + METHODS:
        assert name in stub, name


def test_signatures_read_well() -> None:
    if sys.version_info >= (3, 10):  # abi3 classes carry no text signature on 3.9
        assert str(inspect.signature(sl.Ledger)) == "(path, durability='sync')"
    assert "ttl_seconds=900" in str(inspect.signature(sl.Ledger.reserve))
    assert str(inspect.signature(sl.read_events)) == "(folder, after=0)"


def test_value_classes_are_frozen(ledger: sl.Ledger) -> None:
    lvl = ledger.set_stock("A1", "kol", 3)
    r = ledger.reserve("o-1", [("A1", "kol", 1)])
    for obj, attr in [(lvl, "on_hand"), (r, "status"), (sl.Shortfall("A1", "kol", 1, 0), "sku")]:
        try:
            setattr(obj, attr, 1)
        except AttributeError:
            pass
        else:
            raise AssertionError(f"{type(obj).__name__}.{attr} is writable")
    assert lvl != ledger.stock("A1", "kol")  # reserved moved on
    assert hash(sl.Shortfall("A1", "kol", 1, 0)) == hash(sl.Shortfall("A1", "kol", 1, 0))
    assert {lvl, ledger.set_stock("A1", "kol", 3)} == {lvl, ledger.stock("A1", "kol")}


def test_stubs_catch_misuse(tmp_path) -> None:
    # The typed usage file passing mypy only means something if mypy reads the stubs.
    import subprocess
    import sys

    bad = tmp_path / "bad_usage.py"
    bad.write_text(
        "import stockledger as sl\n"
        "led = sl.Ledger('x', durability='fast')\n"
        "led.reserve('o-1', [('A1', 'kol', '2')])\n"
        "n: str = led.stock('A1', 'kol').on_hand\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir=/dev/null", str(bad)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.count("error:") == 3, out.stdout
