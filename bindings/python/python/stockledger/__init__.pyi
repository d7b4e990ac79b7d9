"""Type stubs of stockledger (the native module is ``stockledger._stockledger``)."""

import datetime
import os
import pathlib
from types import TracebackType
from typing import Any, Dict, Iterator, List, Literal, Optional, Sequence, Tuple, Type, Union

__version__: str

Durability = Literal["sync", "async", "none"]
Status = Literal["reserved", "paid", "released", "expired"]
Line = Tuple[str, str, int]
"""One order line: ``(sku, warehouse, qty)``."""
Event = Dict[str, Any]
"""One event of the durable stream, in the JSON shape of the events contract."""
PathLike = Union[str, "os.PathLike[str]"]

class StockLevel:
    """The figures of one stock cell from one moment: ``available == on_hand - reserved``."""

    def __init__(self, on_hand: int, reserved: int, available: int) -> None: ...

    @property
    def on_hand(self) -> int:
        """Units in the warehouse."""
    @property
    def reserved(self) -> int:
        """Units held by reservations in state ``reserved``."""
    @property
    def available(self) -> int:
        """``on_hand - reserved``: what a new reservation can take."""
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

class Shortfall:
    """One short line of a refused reservation."""

    def __init__(self, sku: str, warehouse: str, requested: int, available: int) -> None: ...
    @property
    def sku(self) -> str: ...
    @property
    def warehouse(self) -> str: ...
    @property
    def requested(self) -> int:
        """The quantity the order asked for."""
    @property
    def available(self) -> int:
        """What the cell had available at that moment."""
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

class Reservation:
    """A reservation (hard hold of stock for one order)."""

    @property
    def order_id(self) -> str:
        """The order id: the reservation's id and idempotency key."""
    @property
    def status(self) -> Status:
        """``"reserved"``, ``"paid"``, ``"released"`` or ``"expired"``."""
    @property
    def lines(self) -> List[Line]:
        """The order lines as ``(sku, warehouse, qty)`` tuples."""
    @property
    def created_at(self) -> datetime.datetime:
        """When the reservation was made (aware datetime, UTC)."""
    @property
    def expires_at(self) -> datetime.datetime:
        """When an unpaid reservation expires (aware datetime, UTC)."""
    @property
    def finished_at(self) -> Optional[datetime.datetime]:
        """When it became paid, released or expired; ``None`` while reserved."""
    def __eq__(self, other: object) -> bool: ...

class Ledger:
    """An inventory ledger stored in a folder (created if needed).

    ``durability``: ``"sync"`` (default), ``"async"`` or ``"none"`` (memory only). Only one
    ``Ledger`` may have a folder open at a time. Safe to share between threads. Every call
    after ``close()`` raises ``LedgerUnavailable``.
    """

    def __init__(self, path: PathLike, durability: Durability = "sync") -> None: ...
    def set_stock(self, sku: str, warehouse: str, on_hand: int) -> StockLevel:
        """Sets a cell's ``on_hand``; raises ``BelowReserved`` below what is reserved."""
    def adjust_stock(
        self,
        sku: str,
        warehouse: str,
        delta: int,
        adjustment_id: str,
        reason: Optional[str] = None,
    ) -> StockLevel:
        """Adds ``delta`` to a cell's ``on_hand``, at most once per ``adjustment_id``."""
    def stock(self, sku: str, warehouse: str) -> StockLevel:
        """The figures of one cell (zeros for an unknown cell)."""
    def sku_stock(self, sku: str) -> Optional[Dict[str, StockLevel]]:
        """Every cell of a sku as ``{warehouse: StockLevel}``; ``None`` for an unknown sku."""
    def reserve(
        self, order_id: str, lines: Sequence[Line], ttl_seconds: int = 900
    ) -> Reservation:
        """Holds stock for an order, all lines or none; idempotent by ``order_id``."""
    def reserve_many(
        self, orders: Sequence[Tuple[str, Sequence[Line]]], ttl_seconds: int = 900
    ) -> List[Union[bool, "StockLedgerError"]]:
        """Reserves many orders in one call, each all-or-nothing, one log wait for all.

        One result per order: ``True`` (reserved now), ``False`` (already reserved with the
        same lines) or the exception ``reserve`` would raise, returned, not raised."""
    def commit(self, order_id: str) -> Reservation:
        """Marks a reservation paid: its lines leave the warehouse."""
    def release(self, order_id: str) -> Reservation:
        """Cancels a reservation and returns its stock."""
    def reservation(self, order_id: str) -> Optional[Reservation]:
        """The reservation of an order, or ``None``."""
    def expire_due(self) -> List[str]:
        """Expires every reservation whose ttl has passed; returns their order ids."""
    def checkpoint(self) -> int:
        """Writes a snapshot now; returns the last event seq it holds."""
    def events(self, after: int = 0, limit: int = 1000) -> List[Event]:
        """Durable events with ``seq > after`` (at most ``limit``)."""
    @property
    def last_seq(self) -> int:
        """The seq of the last durable event (0 when none)."""
    def close(self) -> None:
        """Flushes the log and releases the folder's lock. Idempotent."""
    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
    @property
    def path(self) -> pathlib.Path:
        """The folder this ledger was opened on."""
    @property
    def durability(self) -> Durability:
        """``"sync"``, ``"async"`` or ``"none"``."""
    def __enter__(self) -> "Ledger": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

class EventIterator(Iterator[Event]):
    """Iterator over the durable events of a ledger folder, oldest first."""

    def __iter__(self) -> "EventIterator": ...
    def __next__(self) -> Event: ...

def read_events(folder: PathLike, after: int = 0) -> EventIterator:
    """Iterates the durable events of a ledger folder with ``seq > after`` as dicts.

    Read-only and lazy; safe on a folder that a live ``Ledger`` is writing.
    ``pandas.DataFrame(read_events(folder))`` gives one row per event.
    """

class StockLedgerError(Exception):
    """Base class of every stockledger error; ``code`` is the domain error code."""

    code: str
    message: str
    def __init__(self, message: str = "", **details: Any) -> None: ...

class InvalidInput(StockLedgerError, ValueError):
    """Input outside the limits or of the wrong type; ``field`` names it."""

    field: str

class InsufficientStock(StockLedgerError):
    """A reservation did not fit; ``shortfalls`` lists every short line."""

    shortfalls: List[Shortfall]

class OrderConflict(StockLedgerError):
    """The order id already holds a reservation with different lines."""

    order_id: str

class OrderNotFound(StockLedgerError, KeyError):
    """No reservation has this order id."""

    order_id: str

class OrderNotActive(StockLedgerError):
    """The reservation is released or expired, so it cannot be committed."""

    order_id: str
    status: str

class OrderPaid(StockLedgerError):
    """The reservation is paid, so it cannot be released."""

    order_id: str

class BelowReserved(StockLedgerError):
    """on_hand would fall below what is reserved (or below zero)."""

    on_hand: int
    reserved: int
    requested_on_hand: int

class AdjustmentConflict(StockLedgerError):
    """The adjustment id was already used for another cell or delta."""

    adjustment_id: str

class LedgerUnavailable(StockLedgerError):
    """The ledger is closed, locked by another Ledger, or its log failed."""
