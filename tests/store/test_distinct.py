"""What the trigger policy counts: distinct texts, so that a flood of copies counts once."""

from __future__ import annotations

from pathlib import Path

from service.domain.loop import NewSample
from service.store import SQLiteStore


def test_distinct_count_ignores_copies_case_and_surrounding_space(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "db.sqlite")
    try:
        copies = [NewSample("refund me", "a", f"c{i}") for i in range(100)]
        store.add("m", [*copies, NewSample("  Refund ME ", "a", "x"), NewSample("other", "b")])
        assert store.count("m") == 102
        assert store.distinct_count("m") == 2
        first = store.samples("m")[0].seq
        assert store.distinct_count("m", after_seq=first + 99) == 2  # "  Refund ME " and "other"
        assert store.distinct_count("other-model") == 0
    finally:
        store.close()
