"""Whether a version serves its int8 graph: the check every version with ``[serving] int8`` makes
(``meta.json``'s ``int8``), and the rule it applies.

Both graphs of the version are scored on the same held-out rows; int8 serves only when its
accuracy there is at most ``int8_max_accuracy_drop`` below fp32's. Without held-out rows, or when
quantization fails, there is no evidence that int8 holds up, so fp32 serves and ``reason`` says
why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

NAN = float("nan")
# Accuracies are shares of rows: a drop exactly at the limit (0.90 - 0.89) must not fail on the
# rounding of its subtraction.
TOLERANCE = 1e-9


@dataclass(frozen=True)
class Int8Check:
    """The int8 graph's held-out accuracy against fp32's; it serves only when ``accepted``."""

    fp32_accuracy: float
    int8_accuracy: float
    accepted: bool
    drop: float = NAN  # fp32 minus int8 accuracy on the same rows
    max_drop: float = NAN  # the limit it was held to ([serving] int8_max_accuracy_drop)
    rows: int = 0  # held-out rows both graphs were scored on
    split: str = ""  # which rows: "validation" (a first version), "holdout+anchor" (a fine-tune)
    reason: str = ""  # why fp32 serves instead; empty when int8 serves

    @staticmethod
    def measured(
        fp32_accuracy: float, int8_accuracy: float, rows: int, split: str, max_drop: float
    ) -> Int8Check:
        """Apply the rule to two accuracies measured on the same ``rows``."""
        drop = fp32_accuracy - int8_accuracy
        if rows == 0 or math.isnan(drop):
            reason = f"no held-out rows to compare int8 with fp32 on ({split} is empty)"
        elif drop > max_drop + TOLERANCE:
            reason = (
                f"int8 accuracy {int8_accuracy:.3f} against fp32 {fp32_accuracy:.3f} on {rows} "
                f"held-out {split} rows: a drop of {drop:.3f} exceeds int8_max_accuracy_drop "
                f"{max_drop:g}"
            )
        else:
            reason = ""
        return Int8Check(
            fp32_accuracy, int8_accuracy, not reason, drop, max_drop, rows, split, reason
        )

    @staticmethod
    def failed(error: str, max_drop: float) -> Int8Check:
        """Quantization itself failed (``error`` says how): fp32 serves."""
        return Int8Check(NAN, NAN, False, NAN, max_drop, reason=f"quantization failed: {error}")

    def summary(self) -> str:
        """One line for the build's or the job's log."""
        if not self.accepted:
            return f"int8: serving fp32: {self.reason}"
        return (
            f"int8: accuracy {self.int8_accuracy:.3f} against fp32 {self.fp32_accuracy:.3f} on "
            f"{self.rows} held-out {self.split} rows (drop {self.drop:+.3f}, at most "
            f"{self.max_drop:g}): serving int8"
        )

    @staticmethod
    def from_dict(value: object) -> Int8Check | None:
        """The recorded check, or None when absent or malformed. Older versions recorded the
        two accuracies and the decision only."""
        if not isinstance(value, Mapping):
            return None
        try:
            fp32, int8 = float(value["fp32_accuracy"]), float(value["int8_accuracy"])
            return Int8Check(
                fp32,
                int8,
                bool(value["accepted"]),
                float(value.get("drop", fp32 - int8)),
                float(value.get("max_drop", NAN)),
                int(value.get("rows", 0)),
                str(value.get("split", "")),
                str(value.get("reason", "")),
            )
        except (KeyError, TypeError, ValueError):
            return None
