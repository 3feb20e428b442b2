"""The int8 rule: int8 serves only when its held-out accuracy is close enough to fp32's."""

from __future__ import annotations

import math

from service.domain.int8 import Int8Check


def test_a_drop_within_the_limit_serves_int8() -> None:
    check = Int8Check.measured(0.90, 0.89, rows=200, split="validation", max_drop=0.01)
    assert check.accepted and check.reason == ""
    assert math.isclose(check.drop, 0.01) and check.rows == 200
    assert "serving int8" in check.summary()


def test_a_larger_drop_keeps_fp32_and_says_why() -> None:
    check = Int8Check.measured(0.90, 0.85, rows=200, split="holdout+anchor", max_drop=0.01)
    assert not check.accepted
    assert check.reason == (
        "int8 accuracy 0.850 against fp32 0.900 on 200 held-out holdout+anchor rows: a drop of "
        "0.050 exceeds int8_max_accuracy_drop 0.01"
    )
    assert check.summary() == f"int8: serving fp32: {check.reason}"


def test_no_held_out_rows_is_no_evidence() -> None:
    nan = float("nan")
    check = Int8Check.measured(nan, nan, rows=0, split="validation", max_drop=0.5)
    assert not check.accepted
    assert check.reason == "no held-out rows to compare int8 with fp32 on (validation is empty)"


def test_int8_better_than_fp32_serves() -> None:
    assert Int8Check.measured(0.80, 0.82, rows=50, split="validation", max_drop=0.0).accepted


def test_the_record_round_trips_and_older_records_still_read() -> None:
    check = Int8Check.measured(0.9, 0.8, rows=10, split="validation", max_drop=0.01)
    assert Int8Check.from_dict(check.__dict__) == check
    older = Int8Check.from_dict({"fp32_accuracy": 0.9, "int8_accuracy": 0.9, "accepted": True})
    assert older is not None and older.accepted and older.drop == 0.0 and older.rows == 0
    assert Int8Check.from_dict({"accepted": True}) is None
