"""What the closed loop needs from storage. SQLite is the embedded default; PostgreSQL can follow.

Both stores are thread-safe. ``SampleStore.add`` returns only after the samples are durably
committed, so an acknowledged sample survives a crash.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from service.adaptation.types import AddOutcome, Job, NewSample, Sample, SourceSummary


class SampleStore(Protocol):
    def add(self, model: str, samples: Sequence[NewSample]) -> AddOutcome:
        """Store a batch atomically and durably.

        Idempotent on sample id: a posted id that is already stored with the same text and label
        counts as a duplicate; with a different text or label the whole batch is refused with
        :class:`~service.errors.InvalidInput` naming the id. Empty ids get a generated one.
        """
        ...

    def get(self, model: str, sample_id: str) -> Sample | None: ...

    def count(self, model: str, after_seq: int = 0) -> int:
        """Samples of ``model`` with seq > ``after_seq``."""
        ...

    def distinct_count(self, model: str, after_seq: int = 0) -> int:
        """Distinct texts (ignoring case and surrounding space) among the samples with seq >
        ``after_seq``: what the trigger policy counts, so that a flood of copies counts once."""
        ...

    def samples(self, model: str, after_seq: int = 0, upto_seq: int | None = None) -> list[Sample]:
        """Samples with ``after_seq < seq <= upto_seq`` in seq order."""
        ...

    def last_seq(self, model: str) -> int:
        """The highest seq stored for ``model`` (0 when none)."""
        ...

    def sources(self, model: str) -> list[SourceSummary]:
        """Per source (the token name that posted them), the samples stored for ``model``."""
        ...

    def purge(self, model: str, source: str, since: float | None = None) -> tuple[int, int, int]:
        """Delete ``source``'s samples of ``model`` (posted at or after ``since``, Unix time),
        atomically: no later job trains or gates on them. Returns (removed, first seq, last seq);
        seqs are never reused, so versions that recorded a later ``samples_upto`` may have
        trained on them."""
        ...

    def close(self) -> None: ...


class JobStore(Protocol):
    def create(
        self,
        model: str,
        trigger: str,
        reason: str,
        base_version: int,
        samples_upto: int,
        attempt: int = 1,
    ) -> Job:
        """A new job in state QUEUED with a fresh id."""
        ...

    def update(self, job_id: str, **changes: Any) -> Job:
        """Change fields of a job (state, started, finished, candidate_version, gate, error)."""
        ...

    def get(self, job_id: str) -> Job:
        """The job; :class:`~service.errors.NotFound` when there is none."""
        ...

    def latest(self, model: str) -> Job | None: ...

    def active(self, model: str) -> Job | None:
        """The QUEUED or RUNNING job of ``model``, if any."""
        ...

    def recent(self, model: str, limit: int = 20) -> list[Job]:
        """Newest first."""
        ...

    def fail_interrupted(self, error: str) -> list[Job]:
        """Mark every QUEUED or RUNNING job FAILED with ``error`` (recovery after a restart)."""
        ...
