"""stockledger: an inventory reservation ledger (hard reservations, write-ahead log,
event stream) for Python.

    import stockledger as sl
    with sl.Ledger("data/ledger") as ledger:
        ledger.set_stock("A1", "kol", 100)
        r = ledger.reserve("o-1", [("A1", "kol", 2)], ttl_seconds=900)
        ledger.commit("o-1")
    events = list(sl.read_events("data/ledger"))

See the README of the package for the first five minutes.
"""

from ._stockledger import (
    AdjustmentConflict,
    BelowReserved,
    EventIterator,
    InsufficientStock,
    InvalidInput,
    Ledger,
    LedgerUnavailable,
    OrderConflict,
    OrderNotActive,
    OrderNotFound,
    OrderPaid,
    Reservation,
    Shortfall,
    StockLedgerError,
    StockLevel,
    __version__,
    read_events,
)

__all__ = [
    "AdjustmentConflict",
    "BelowReserved",
    "EventIterator",
    "InsufficientStock",
    "InvalidInput",
    "Ledger",
    "LedgerUnavailable",
    "OrderConflict",
    "OrderNotActive",
    "OrderNotFound",
    "OrderPaid",
    "Reservation",
    "Shortfall",
    "StockLedgerError",
    "StockLevel",
    "__version__",
    "read_events",
]
