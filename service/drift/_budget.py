"""The false-alarm budget: from "one false alarm every H hours" to each window test's significance.

The model-level alarm is the OR of the budgeted detectors' alarms, so its expected false alarms
are at most the sum of theirs (a union bound): each of the ``D`` budgeted detectors gets ``1/D``
of the budget. A detector tests tumbling windows of ``W`` samples; at ``r`` samples per second it
runs ``N = H * 3600 * r / W`` tests per budget period. It raises its alarm by either of two rules,
each given half of its share:

- one window alone with p below ``alpha_single = share / (2 N)`` (a large shift, found at once);
- ``k`` consecutive windows with p below ``alpha_sustained = (share / (2 N)) ** (1 / k)`` (a
  moderate shift that persists). A run of ``k`` windows starts in a given window with probability
  at most ``alpha_sustained ** k`` under no drift, so over ``N`` windows that rule raises at most
  ``share / 2`` false alarms per period.

With window p-values that are uniform under no drift, the expected false alarms of the model are
then at most one per ``H`` hours. The traffic rate comes from the observed arrival rate, unless a
fixed ``traffic_rate`` is configured.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass

# No window test runs looser than this, however little traffic the budget covers.
MAX_ALPHA = 0.05
RATE_SPAN_SECONDS = 600.0
MIN_RATE_SPAN_SECONDS = 1.0


@dataclass(frozen=True)
class Significance:
    """The p-value levels of one detector's window tests."""

    single: float  # one window below this raises the alarm
    sustained: float  # ``sustain`` consecutive windows below this raise it

    @property
    def threshold(self) -> float:
        """-log10 of the sustained level: the statistic a significant window exceeds."""
        return -math.log10(self.sustained)


def significance(
    every_hours: float, rate: float, window: int, detectors: int, sustain: int
) -> Significance:
    """Levels for one of ``detectors`` budgeted detectors testing windows of ``window`` samples
    at ``rate`` samples per second, with at most one false alarm every ``every_hours``."""
    windows = max(1.0, every_hours * 3600.0 * max(rate, 0.0) / window)
    half_share = 1.0 / max(detectors, 1) / 2.0
    single = half_share / windows
    sustained = min(MAX_ALPHA, (half_share / windows) ** (1.0 / max(sustain, 1)))
    return Significance(single=min(single, sustained), sustained=sustained)


class RateMeter:
    """Samples per second over the last ``span`` seconds of arrivals."""

    def __init__(self, span: float = RATE_SPAN_SECONDS) -> None:
        self._span = span
        self._arrivals: collections.deque[tuple[float, int]] = collections.deque()
        self._total = 0

    def add(self, when: float, samples: int) -> None:
        self._arrivals.append((when, samples))
        self._total += samples
        while self._arrivals and self._arrivals[0][0] < when - self._span:
            _, dropped = self._arrivals.popleft()
            self._total -= dropped

    def rate(self) -> float:
        """NaN before any arrival."""
        if not self._arrivals:
            return math.nan
        first, last = self._arrivals[0][0], self._arrivals[-1][0]
        return self._total / max(last - first, MIN_RATE_SPAN_SECONDS)
