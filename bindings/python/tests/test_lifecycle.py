"""Opening, the folder lock, close, context manager, reopen and recovery."""

import pytest

import stockledger as sl


def test_creates_the_folder(tmp_path) -> None:
    folder = tmp_path / "a" / "b"
    with sl.Ledger(folder) as led:
        led.set_stock("A1", "kol", 1)
    assert folder.is_dir()


def test_second_open_names_the_lock(folder) -> None:
    with sl.Ledger(folder):
        with pytest.raises(sl.LedgerUnavailable) as info:
            sl.Ledger(folder)
        assert info.value.code == "ledger_unavailable"
        assert "lock" in str(info.value)


def test_every_call_after_close_is_refused(folder) -> None:
    led = sl.Ledger(folder)
    led.set_stock("A1", "kol", 5)
    led.reserve("o-1", [("A1", "kol", 1)])
    led.close()
    assert led.closed
    calls = [
        lambda: led.set_stock("A1", "kol", 1),
        lambda: led.adjust_stock("A1", "kol", 1, "adj-1"),
        lambda: led.stock("A1", "kol"),
        lambda: led.sku_stock("A1"),
        lambda: led.reserve("o-2", [("A1", "kol", 1)]),
        lambda: led.commit("o-1"),
        lambda: led.release("o-1"),
        lambda: led.reservation("o-1"),
        lambda: led.expire_due(),
        lambda: led.checkpoint(),
        lambda: led.events(),
        lambda: led.last_seq,
        lambda: led.__enter__(),
    ]
    for call in calls:
        with pytest.raises(sl.LedgerUnavailable):
            call()
    # Bad input on a closed ledger still says the ledger is closed, not what was wrong.
    with pytest.raises(sl.LedgerUnavailable):
        led.set_stock(None, None, None)  # type: ignore[arg-type]
    led.close()  # idempotent
    assert "closed" in repr(led)


def test_context_manager_closes_even_on_error(folder) -> None:
    with pytest.raises(RuntimeError):
        with sl.Ledger(folder) as led:
            led.set_stock("A1", "kol", 5)
            raise RuntimeError("boom")
    assert led.closed
    with pytest.raises(sl.LedgerUnavailable):
        led.stock("A1", "kol")


def test_reopen_after_close_recovers_everything(folder) -> None:
    led = sl.Ledger(folder)
    led.set_stock("A1", "kol", 10)
    led.adjust_stock("A1", "kol", 5, "adj-1", reason="inbound")
    led.reserve("o-1", [("A1", "kol", 2)])
    led.reserve("o-2", [("A1", "kol", 3)])
    led.commit("o-1")
    led.release("o-2")
    led.reserve("o-3", [("A1", "kol", 4)])
    led.close()
    # The same object stays closed; a new one opens the folder (the lock was released).
    with sl.Ledger(folder) as again:
        lvl = again.stock("A1", "kol")
        assert (lvl.on_hand, lvl.reserved, lvl.available) == (13, 4, 9)
        assert [again.reservation(o).status for o in ("o-1", "o-2", "o-3")] == [  # type: ignore[union-attr]
            "paid",
            "released",
            "reserved",
        ]
        # Idempotency keys survive the restart too.
        assert again.adjust_stock("A1", "kol", 5, "adj-1").on_hand == 13
        assert again.reserve("o-3", [("A1", "kol", 4)]).status == "reserved"
        assert again.stock("A1", "kol").reserved == 4
        assert again.last_seq == 7


def test_reopen_after_checkpoint(folder) -> None:
    with sl.Ledger(folder) as led:
        led.set_stock("A1", "kol", 10)
        led.reserve("o-1", [("A1", "kol", 2)])
        assert led.checkpoint() == 2
        led.reserve("o-2", [("A1", "kol", 1)])
    with sl.Ledger(folder) as led:
        assert led.stock("A1", "kol").reserved == 3
        assert led.last_seq == 3


def test_dropping_the_object_releases_the_lock(folder) -> None:
    led = sl.Ledger(folder)
    led.set_stock("A1", "kol", 1)
    del led
    import gc

    gc.collect()
    with sl.Ledger(folder) as again:
        assert again.stock("A1", "kol").on_hand == 1
