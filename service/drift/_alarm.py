"""One detector's alarm: when it is raised and when it clears."""

from __future__ import annotations

import time
from dataclasses import dataclass

from service.drift._budget import Significance
from service.drift._types import WindowTest


@dataclass
class Alarm:
    """A detector's alarm. Online detectors raise it at the first detection; windowed ones by the
    budget's rules (see ``_budget``): one window below the single-window level, or ``sustain``
    consecutive windows below the sustained level, each with at least the minimum effect. It
    clears once ``clear_after`` samples pass without a detection (a significant window)."""

    clear_after: int
    sustain: int = 1
    active: bool = False
    since: float | None = None
    quiet: int = 0
    run: int = 0

    def window(self, test: WindowTest, levels: Significance, min_effect: float) -> bool:
        """Feed one window test; True when the alarm was raised or cleared by it."""
        meaningful = not test.effect < min_effect  # NaN effect: not measured, so not vetoed
        significant = meaningful and test.p_value < levels.sustained
        self.run = self.run + 1 if significant else 0
        raising = meaningful and (test.p_value < levels.single or self.run >= self.sustain)
        return self.update(significant if self.active else raising, test.size)

    def update(self, detected: bool, samples: int) -> bool:
        """Feed one update; True when the alarm was raised or cleared by it."""
        if detected:
            self.quiet = 0
            if not self.active:
                self.active, self.since = True, time.time()
                return True
            return False
        self.quiet += samples
        if self.active and self.quiet >= self.clear_after:
            self.active, self.since = False, None
            return True
        return False
