"""What the closed loop needs from storage. SQLite is the embedded default; PostgreSQL is the
shared backend of a scale-out deployment (serving replicas and one trainer).

Every store is thread-safe. ``SampleStore.add`` returns only after the samples are durably
committed, so an acknowledged sample survives a crash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from service.domain.loop import AddOutcome, Job, NewSample, Sample, SourceSummary
from service.domain.provenance import PurgeRecord


class SampleStore(Protocol):
    def add(self, model: str, samples: Sequence[NewSample]) -> AddOutcome:
        """Store a batch atomically and durably.

        Idempotent on sample id: a posted id that is already stored with the same text and label
        counts as a duplicate; with a different text or label the whole batch is refused with
        :class:`~service.errors.InvalidInput` naming the id. Empty ids get a generated one.

        A sample of content (``NewSample.data``) is stored with its content key
        (:func:`~service.domain.loop.content_key`) as its text, and the bytes once per model
        under that key, in the same transaction. Without an id it gets one derived from the key
        and the label, so that the same bytes posted again with the same label are a duplicate.
        """
        ...

    def blobs(self, model: str, keys: Iterable[str]) -> dict[str, bytes]:
        """The stored content of ``model`` under each of ``keys`` (sample texts that are
        content keys); a key with no content (purged meanwhile, or a plain text) is absent."""
        ...

    def sample(self, model: str, sample_id: str) -> Sample | None: ...

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
        seqs are never reused. A purge that removed samples is recorded (see :meth:`purges`)
        in the same transaction, so a job that read them before cannot publish its candidate.
        Content no remaining sample references is deleted in that transaction too. SQLite then
        checkpoints its write-ahead log, so the deleted texts and bytes leave the disk."""
        ...

    def purges(self, model: str) -> list[PurgeRecord]:
        """The purges of ``model`` that removed samples, oldest first."""
        ...

    def delete_sample(self, model: str, source: str, sample_id: str) -> Sample | None:
        """Delete the sample ``sample_id`` of ``model`` if ``source`` posted it (an undone
        label); the deleted sample, or None when there is no such sample of that source. Kept
        as a purge of that one seq, with its content when no other sample uses it, so that a
        job that read it cannot publish (see :meth:`purge`)."""
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

    def job(self, job_id: str) -> Job:
        """The job; :class:`~service.errors.NotFound` when there is none."""
        ...

    def request_cancel(self, job_id: str, error: str) -> Job | None:
        """Record an operator's cancellation (``error``: ``cancelled by <name>``) of a job that
        has not ended, atomically with that check: a queued job fails at once with ``error``;
        a running one keeps running with ``error`` stored, a request that the process running it
        acts on (:attr:`~service.domain.loop.Job.cancel_requested`). The job as stored now, or
        None when it had already ended (nothing changed); NotFound for an unknown job."""
        ...

    def latest(self, model: str) -> Job | None: ...

    def active(self, model: str) -> Job | None:
        """The QUEUED or RUNNING job of ``model``, if any."""
        ...

    def recent(self, model: str, limit: int = 20) -> list[Job]:
        """Newest first."""
        ...

    def trained_on(self, model: str, source: str, since: float | None = None) -> list[Job]:
        """Jobs whose recorded data included ``source``'s samples (posted at or after
        ``since``) and that made no version: unfinished ones, and ones that failed. Newest
        first."""
        ...

    def purged(self, job_id: str) -> PurgeRecord | None:
        """The first purge that deleted samples the job's recorded data included; None when
        none did (or the job has no record yet)."""
        ...


@dataclass(frozen=True)
class VersionRecord:
    """A published version as the database knows it. The files live on the (shared) volume under
    ``versions/<n>/``; ``digest`` lets a replica check it reads the complete, right files."""

    model: str
    version: int
    digest: str  # "sha256:<hex>" over the version's files (see service.registry)
    status: str  # "promoted", "rejected", "seed"
    created: float  # Unix time


@dataclass(frozen=True)
class AdaptationMark:
    """A drift alarm, shared: ``replica`` raised it when ``since_seq`` was the newest sample."""

    model: str
    replica: str
    since_seq: int
    raised: float  # Unix time


class VersionStore(Protocol):
    """Version records and the head row: which version every replica of a model serves."""

    def add_version(self, record: VersionRecord) -> None:
        """Record a published version, once: a second record of the same (model, version)
        raises :class:`~service.errors.Conflict` (a version's files are written once)."""
        ...

    def versions(self, model: str) -> list[VersionRecord]:
        """The model's version records, oldest first."""
        ...

    def head(self, model: str) -> int | None:
        """The version the head row names (None: the model has no head yet)."""
        ...

    def move_head(self, model: str, version: int, expected: int | None, job: str = "") -> bool:
        """Compare-and-set: point the head at ``version`` if it names ``expected`` now (None: no
        head row yet). True when moved; then watchers are told (PostgreSQL: NOTIFY). With
        ``job`` (the job that made ``version``), raises :class:`~service.errors.DataPurged`
        instead when a purge deleted samples of its data, checked in the same transaction."""
        ...

    def publish_fence(self, job: str) -> AbstractContextManager[None]:
        """Held around a head move made elsewhere (the ``current`` file) that publishes
        ``job``'s candidate: raises :class:`~service.errors.DataPurged` on entry when a purge
        deleted samples of the job's data, and no purge of the model commits while it is held.
        A job the database does not know (a version copied in from elsewhere) passes."""
        ...


class MarkStore(Protocol):
    """The needs-adaptation marks that drift alarms leave for whoever runs jobs."""

    def raise_mark(self, mark: AdaptationMark) -> None:
        """Set ``mark.replica``'s mark on ``mark.model``; an existing mark keeps its older seq."""
        ...

    def clear_mark(self, model: str, replica: str) -> None: ...

    def clear_marks(self, model: str) -> None:
        """Every replica's mark on ``model`` (a version was promoted)."""
        ...

    def marks(self, model: str) -> list[AdaptationMark]: ...


class Store(SampleStore, JobStore, VersionStore, MarkStore, Protocol):
    """Everything the server keeps in its database."""

    @property
    def shared(self) -> bool:
        """True when other processes share this store (PostgreSQL): the head row, not a file in
        the state dir, then names the serving version."""
        ...

    def trainer_lease(self) -> TrainerLease:
        """A new lease object, not yet acquired (SQLite: one that is always held)."""
        ...

    def head_watcher(self) -> HeadWatcher:
        """A new watcher, not yet started (SQLite: called back from this object's move_head)."""
        ...


HeadCallback = Callable[[str], None]  # the model whose head row changed


class TrainerLease(Protocol):
    """The right to run jobs and publish: exactly one holder across a deployment.

    PostgreSQL: an advisory lock held by a dedicated connection (never from a pool) with TCP
    keepalives. The head moves over that same connection, and only while it holds the lock, so a
    trainer whose session ended (crash, network loss, ``pg_terminate_backend``) cannot publish.
    """

    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; True when this process holds it now."""
        ...

    def held(self) -> bool:
        """Whether the lease is still held (asks the server; False once the session is gone)."""
        ...

    def move_head(self, model: str, version: int, expected: int | None, job: str = "") -> bool:
        """:meth:`VersionStore.move_head`, over the lease's session, with its purge check in the
        same transaction; raises :class:`~service.errors.Unavailable` when the lease is no
        longer held."""
        ...

    def close(self) -> None: ...


class HeadWatcher(Protocol):
    """Calls back when a head row changes (PostgreSQL: LISTEN on a connection of its own, which
    reconnects; a notification sent while it was disconnected is lost, so callers also poll)."""

    def start(self, on_change: HeadCallback) -> None: ...

    def stop(self) -> None: ...
