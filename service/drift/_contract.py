"""The detector contract every drift detector keeps (checked by tests over every implementation).

A detector is fitted once on a reference (the slow part: thresholds are configured here), then fed
batches of observations with :meth:`Detector.update`. After each update, ``drift_detected`` says
whether any test inside that batch crossed its threshold, and ``statistic``/``threshold`` give the
latest test. A fitted detector must pickle, so its calibration can be saved and reused.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from service.drift._types import Observations, WindowTest


@runtime_checkable
class Detector(Protocol):
    name: str  # what it watches: embedding, confidence, labels
    method: str  # the test: ks, chisquare (windowed); mmd, lsdd (online)
    budgeted: bool  # windowed: reports p-values per window, so the false-alarm budget covers it
    tests: list[WindowTest]  # the windows the last update completed (always empty when online)

    def fit(self, reference: Observations) -> None:
        """Take the reference and configure thresholds. Slow (seconds to a minute)."""
        ...

    def update(self, batch: Observations) -> None:
        """Feed observations in arrival order; raises RuntimeError before :meth:`fit`."""
        ...

    @property
    def fitted(self) -> bool: ...

    @property
    def statistic(self) -> float:
        """The latest test statistic (NaN before the first test)."""
        ...

    @property
    def threshold(self) -> float:
        """The value ``statistic`` must exceed to count as drift."""
        ...

    @property
    def drift_detected(self) -> bool: ...

    @property
    def effect(self) -> float:
        """Effect size of the latest window (NaN before one, and for online detectors)."""
        ...

    @property
    def samples_seen(self) -> int: ...

    @property
    def reference_size(self) -> int: ...
