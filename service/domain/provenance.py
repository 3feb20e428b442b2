"""Which stored samples a job trained and gated on, and which samples purges removed.

A job records its data as, per source (the token name that posted the samples), sorted disjoint
ranges of sample seqs: a range ``first..last`` means that every sample of that source with a seq
in it, as stored when the job read its data, went into the job (training, validation, holdout or
anchor). Seqs are never reused, so the record stays true after the samples are gone, and a purge
can be matched against it at any later time: the same purge always names the same jobs and
versions, whether or not it removed anything this time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.domain.loop import Sample


@dataclass(frozen=True)
class SeqRange:
    first: int
    last: int

    def overlaps(self, first: int, last: int) -> bool:
        return self.first <= last and first <= self.last


@dataclass(frozen=True)
class SourceData:
    """One source's samples in a job's data."""

    source: str
    samples: int
    first_created: float  # when the first and the last of them were posted (Unix time)
    last_created: float
    seqs: tuple[SeqRange, ...]


@dataclass(frozen=True)
class TrainingData:
    """The stored samples a job trained and gated on (seed rows are not samples), by source."""

    sources: tuple[SourceData, ...] = ()
    # The last purge of the model (its ``PurgeRecord.n``) before the job read its data: that
    # purge and earlier ones deleted nothing the job could read. Ranges may span seqs deleted
    # before the read, so only later purges are matched against them.
    purges_seen: int = 0

    @property
    def samples(self) -> int:
        return sum(s.samples for s in self.sources)

    @staticmethod
    def of(read: Sequence[Sample], used: Collection[int], purges_seen: int = 0) -> TrainingData:
        """The record of a job that read ``read`` (after the purge ``purges_seen``) and used
        the samples whose seqs are in ``used``: each source's runs of consecutive used samples
        (in its own seq order) become one range, so a job that used all it read records one
        range per source."""
        by_source: dict[str, list[Sample]] = defaultdict(list)
        for sample in sorted(read, key=lambda s: s.seq):
            by_source[sample.source].append(sample)
        sources = []
        for source in sorted(by_source):
            taken = [s for s in by_source[source] if s.seq in used]
            if taken:
                sources.append(
                    SourceData(
                        source=source,
                        samples=len(taken),
                        first_created=min(s.created for s in taken),
                        last_created=max(s.created for s in taken),
                        seqs=_runs(by_source[source], used),
                    )
                )
        return TrainingData(tuple(sources), purges_seen)

    def includes(self, source: str, since: float | None = None) -> bool:
        """Whether the job used samples of ``source`` (posted at or after ``since``)."""
        return any(
            s.source == source and (since is None or s.last_created >= since) for s in self.sources
        )

    def removed_by(self, purge: PurgeRecord) -> bool:
        """Whether ``purge`` deleted samples this job used."""
        return purge.n > self.purges_seen and any(
            s.source == purge.source
            and any(r.overlaps(purge.first_seq, purge.last_seq) for r in s.seqs)
            for s in self.sources
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "sources": [
                {
                    "source": s.source,
                    "samples": s.samples,
                    "first_created": s.first_created,
                    "last_created": s.last_created,
                    "seqs": [[r.first, r.last] for r in s.seqs],
                }
                for s in self.sources
            ],
            "purges_seen": self.purges_seen,
        }

    @staticmethod
    def from_dict(value: object) -> TrainingData | None:
        """The record, or None when absent or malformed (jobs and versions from before
        records were kept)."""
        if not isinstance(value, Mapping):
            return None
        try:
            return TrainingData(
                tuple(
                    SourceData(
                        source=str(s["source"]),
                        samples=int(s["samples"]),
                        first_created=float(s["first_created"]),
                        last_created=float(s["last_created"]),
                        seqs=tuple(SeqRange(int(a), int(b)) for a, b in s["seqs"]),
                    )
                    for s in value["sources"]
                ),
                int(value.get("purges_seen", 0)),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class PurgeRecord:
    """One purge that removed samples: the store keeps these, so that a job whose data was
    read before the purge is refused when it publishes."""

    model: str
    source: str
    since: float | None
    removed: int
    first_seq: int
    last_seq: int
    purged: float  # Unix time
    n: int = 0  # orders the purges of a model (they are serialized, so also in commit order)

    def describe(self) -> str:
        return (
            f"{self.removed} samples of source {self.source!r} (seq {self.first_seq}.."
            f"{self.last_seq}) were purged"
        )


def purged_message(job: str, purge: PurgeRecord) -> str:
    """Why a job ended without publishing its candidate (also the refusal of a publish)."""
    return (
        f"cancelled: {purge.describe()} after job {job} read its data; its candidate is not "
        "published"
    )


def first_removing(data: TrainingData | None, purges: Sequence[PurgeRecord]) -> PurgeRecord | None:
    """The first of ``purges`` that deleted samples in ``data``; None when none did."""
    if data is None:
        return None
    return next((p for p in purges if data.removed_by(p)), None)


def _runs(samples: list[Sample], used: Collection[int]) -> tuple[SeqRange, ...]:
    ranges: list[SeqRange] = []
    start: int | None = None
    previous = 0
    for sample in samples:
        if sample.seq in used:
            start = sample.seq if start is None else start
            previous = sample.seq
        elif start is not None:
            ranges.append(SeqRange(start, previous))
            start = None
    if start is not None:
        ranges.append(SeqRange(start, previous))
    return tuple(ranges)
