"""The false-alarm budget: levels from hours and traffic, the alarm rules, the rate meter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.drift._alarm import Alarm as _Alarm
from service.drift._budget import MAX_ALPHA, RateMeter, Significance, significance
from service.drift._types import WindowTest


def test_levels_follow_the_documented_formula() -> None:
    # One week at 50 requests per second, windows of 50, three detectors, three windows.
    levels = significance(168, 50.0, 50, 3, 3)
    windows = 168 * 3600 * 50 / 50
    assert levels.single == pytest.approx(1 / 6 / windows)
    assert levels.sustained == pytest.approx((1 / 6 / windows) ** (1 / 3))
    assert levels.threshold == pytest.approx(-math.log10(levels.sustained))


def test_the_expected_false_alarms_add_up_to_the_budget() -> None:
    """Per detector: N * single + N * sustained^k = share; summed over detectors: 1 per period."""
    for rate, window, detectors, sustain in [(50.0, 50, 3, 3), (5.0, 200, 2, 2), (200.0, 20, 1, 4)]:
        levels = significance(24, rate, window, detectors, sustain)
        windows = 24 * 3600 * rate / window
        per_detector = windows * levels.single + windows * levels.sustained**sustain
        assert per_detector * detectors == pytest.approx(1.0)


def test_little_traffic_never_loosens_a_level_past_the_cap() -> None:
    levels = significance(1, 0.01, 200, 3, 3)
    assert levels.sustained == MAX_ALPHA and levels.single <= MAX_ALPHA
    assert significance(168, 0.0, 50, 3, 3).sustained == MAX_ALPHA  # no traffic measured yet


def test_more_traffic_or_a_longer_budget_means_stricter_levels() -> None:
    base = significance(168, 10.0, 50, 3, 3)
    assert significance(168, 100.0, 50, 3, 3).single < base.single
    assert significance(720, 10.0, 50, 3, 3).sustained < base.sustained


def test_the_rate_meter_measures_the_recent_arrival_rate() -> None:
    meter = RateMeter(span=60)
    assert math.isnan(meter.rate())
    for second in range(30):
        meter.add(1000.0 + second, 20)
    assert meter.rate() == pytest.approx(600 / 29)
    for second in range(100, 160):  # the first burst falls out of the span
        meter.add(1000.0 + second, 5)
    assert meter.rate() == pytest.approx(5 * 60 / 59, rel=0.05)


LEVELS = Significance(single=1e-6, sustained=1e-2)


def test_one_window_far_below_the_single_level_raises_at_once() -> None:
    alarm = _Alarm(clear_after=400, sustain=3)
    assert alarm.window(WindowTest(1e-9, 0.5, 50), LEVELS, 0.1)
    assert alarm.active


def test_sustained_windows_raise_only_when_consecutive() -> None:
    alarm = _Alarm(clear_after=400, sustain=3)
    significant, quiet = WindowTest(1e-3, 0.3, 50), WindowTest(0.5, 0.05, 50)
    for test in (significant, significant, quiet, significant, significant):
        assert not alarm.window(test, LEVELS, 0.1)
    assert alarm.window(significant, LEVELS, 0.1) and alarm.active


def test_a_negligible_effect_never_counts_however_significant() -> None:
    alarm = _Alarm(clear_after=400, sustain=1)
    for _ in range(5):
        alarm.window(WindowTest(1e-12, 0.05, 50), LEVELS, 0.1)
    assert not alarm.active


def test_an_alarm_clears_after_a_quiet_stretch() -> None:
    alarm = _Alarm(clear_after=100, sustain=3)
    alarm.window(WindowTest(1e-9, 0.5, 50), LEVELS, 0.1)
    assert not alarm.window(WindowTest(0.5, 0.0, 50), LEVELS, 0.1)
    assert alarm.window(WindowTest(0.5, 0.0, 50), LEVELS, 0.1)  # 100 quiet samples
    assert not alarm.active


def test_uniform_p_values_raise_about_as_many_alarms_as_budgeted() -> None:
    """Simulated in-distribution windows (uniform p-values): the two rules together raise about
    windows * (single + sustained^k) alarms, the figure the budget is built on."""
    rng = np.random.default_rng(0)
    levels = significance(1, 100.0, 50, 1, 2)  # 7,200 windows per period, share 1
    windows = 7200 * 20
    alarm = _Alarm(clear_after=50, sustain=2)
    raised = 0
    for p in rng.uniform(size=windows):
        was = alarm.active
        alarm.window(WindowTest(float(p), 1.0, 50), levels, 0.0)
        raised += alarm.active and not was
    assert 10 <= raised <= 32  # 20 periods: 20 expected
