"""Shared fixtures: every test gets its own ledger folder."""

import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

import stockledger as sl


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "ledger"


@pytest.fixture
def ledger(folder: Path) -> Iterator[sl.Ledger]:
    with sl.Ledger(folder) as led:
        yield led


def wait_for(cond: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> object:
    """Polls `cond` until it returns something truthy, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
