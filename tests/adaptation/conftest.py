"""Fixtures shared by the adaptation tests."""

from test_job_races import gated  # noqa: F401  (the fake job runner fixture)
