"""The README's Python examples run as written, and say what they show."""

import contextlib
import io
import re
from pathlib import Path

import stockledger as sl

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_examples_run(tmp_path, monkeypatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        for code in blocks:
            exec(compile(code, str(README), "exec"), scope)
    # What the comments claim.
    with sl.Ledger("data/ledger") as led:
        lvl = led.stock("A1", "kol")
        assert (lvl.on_hand, lvl.reserved, lvl.available) == (95, 0, 95)
        r = led.reservation("o-1")
        assert r is not None and r.status == "paid"
        o2 = led.reservation("o-2")
        assert o2 is not None and o2.status == "released"
    assert scope["short"] == [sl.Shortfall("A1", "kol", 1000, 95)]
    df = scope["df"]
    assert str(df["at"].dt.tz) == "UTC"
    assert list(df["seq"]) == list(range(1, len(df) + 1))
