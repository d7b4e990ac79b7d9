"""Checked by `mypy --strict` against the shipped stubs (scripts/test.d/20-python.sh)."""

import datetime
from typing import Dict, List, Optional, Tuple

import stockledger as sl


def first_five_minutes(folder: str) -> Tuple[int, List[str]]:
    with sl.Ledger(folder, durability="sync") as ledger:
        lvl: sl.StockLevel = ledger.set_stock("A1", "kol", 100)
        adj: sl.StockLevel = ledger.adjust_stock("A1", "kol", -3, adjustment_id="adj-1", reason="damaged")
        on_hand: int = lvl.on_hand + adj.reserved + ledger.stock("A1", "kol").available
        r: sl.Reservation = ledger.reserve("o-1", [("A1", "kol", 2)], ttl_seconds=900)
        lines: List[Tuple[str, str, int]] = r.lines
        created: datetime.datetime = r.created_at
        expires: datetime.datetime = r.expires_at
        status: str = ledger.commit("o-1").status
        found: Optional[sl.Reservation] = ledger.reservation("o-1")
        cells: Optional[Dict[str, sl.StockLevel]] = ledger.sku_stock("A1")
        expired: List[str] = ledger.expire_due()
        seq: int = ledger.checkpoint()
        try:
            ledger.reserve("o-2", [("A1", "kol", 10**6)])
        except sl.InsufficientStock as e:
            short: List[sl.Shortfall] = e.shortfalls
            code: str = e.code
            print(short[0].available, code)
        except sl.StockLedgerError as e:
            print(e.code)
        ledger.release("o-1") if found and found.status == "reserved" else None
        print(lines, created < expires, status, cells, expired, seq)
    types: List[str] = [str(ev["type"]) for ev in sl.read_events(folder, after=0)]
    return on_hand, types
