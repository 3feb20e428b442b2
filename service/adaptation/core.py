"""The contract between the ``loopserve.v1.Adaptation`` gRPC service and the closed-loop core.

A method that records who acted takes the caller explicitly (``caller``: the name of the token
the call was authenticated with, :data:`service.security.ANONYMOUS` without authentication).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from service.domain.loop import (
    AddOutcome,
    Event,
    Job,
    ModelStatus,
    NewSample,
    PurgeOutcome,
    SourceSummary,
    VersionSummary,
)
from service.drift import Candidate, DriftStatus


class AdaptationCore(Protocol):
    async def list_models(self) -> list[str]:
        """The names of the served models, sorted."""
        ...

    async def add_samples(self, model: str, samples: list[NewSample], *, caller: str) -> AddOutcome:
        """Validate (known model, non-blank text, known label unless new labels are allowed),
        commit durably with ``caller`` as each sample's source, feed online accuracy, and let
        the trigger policy react."""
        ...

    async def list_versions(self, model: str) -> list[VersionSummary]: ...

    async def sample_sources(self, model: str) -> list[SourceSummary]:
        """Per source (the token name that posted them), the stored samples of ``model``."""
        ...

    async def purge_samples(self, model: str, source: str, since: float | None) -> PurgeOutcome:
        """Delete ``source``'s samples (posted at or after ``since``) and name the versions
        that may have trained on them."""
        ...

    async def model_status(self, model: str) -> ModelStatus: ...

    async def start_fine_tune(self, model: str, reason: str) -> Job:
        """Manual trigger. Overloaded-free: if a job is already active it is returned as is."""
        ...

    async def get_job(self, job_id: str) -> Job: ...

    async def cancel_job(self, model: str, job_id: str, *, caller: str) -> Job:
        """End an unfinished job of ``model`` wherever it runs (its error: ``cancelled by
        <caller>``); the job as stored now, ``cancel_requested`` while the process that runs it
        has yet to end it. NotFound for another model's job, AlreadyEnded when it has ended."""
        ...

    async def rollback(self, model: str, version: int) -> VersionSummary:
        """Serve an earlier promoted version again (hot swap); NotFound / InvalidInput otherwise."""
        ...

    async def approve_version(self, model: str, version: int, *, caller: str) -> VersionSummary:
        """Serve a version that waits for review in place of its parent (``approved by
        <caller>``); InvalidInput when it does not wait, Conflict when its parent no longer
        serves."""
        ...

    async def reject_version(self, model: str, version: int, *, caller: str) -> VersionSummary:
        """Reject a version that waits for review (``rejected by <caller> on review``);
        InvalidInput when it does not wait."""
        ...

    async def drift_status(self, model: str) -> DriftStatus:
        """The model's drift detectors (``enabled`` false when its definition runs none)."""
        ...

    async def labeling_candidates(self, model: str, count: int) -> list[Candidate]:
        """Up to ``count`` (0: 20) recent inputs worth labeling, best first; InvalidInput when
        ``count`` is negative or above 1000."""
        ...

    def watch_events(self, model: str) -> AsyncGenerator[Event, None]:
        """Events from now on, for one model or for all when ``model`` is empty."""
        ...
