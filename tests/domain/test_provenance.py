"""The data record of a job (service.domain.provenance): compact, exact, and matched against
purges the same way every time."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from service.domain.loop import Sample
from service.domain.provenance import PurgeRecord, SeqRange, TrainingData, first_removing

MODEL = "m"
SOURCES = ("team", "junk", "")


def sample(seq: int, source: str) -> Sample:
    return Sample(MODEL, f"id{seq}", f"text {seq}", "a", "", 1000.0 + seq, seq, source)


# What a job read (increasing seqs with gaps, several sources) and which of it it used.
reads = st.lists(
    st.tuples(st.integers(1, 3), st.sampled_from(SOURCES), st.booleans()), min_size=1, max_size=60
)


def _read(steps: list[tuple[int, str, bool]]) -> tuple[list[Sample], set[int]]:
    read, used, seq = [], set(), 0
    for gap, source, taken in steps:
        seq += gap
        read.append(sample(seq, source))
        if taken:
            used.add(seq)
    return read, used


@given(reads)
def test_ranges_are_sorted_disjoint_and_cover_exactly_the_used_samples(
    steps: list[tuple[int, str, bool]],
) -> None:
    read, used = _read(steps)
    data = TrainingData.of(read, used)

    assert [s.source for s in data.sources] == sorted({s.source for s in read if s.seq in used})
    for entry in data.sources:
        ranges = entry.seqs
        assert all(r.first <= r.last for r in ranges)
        assert all(a.last < b.first for a, b in itertools.pairwise(ranges))
        mine = [s for s in read if s.source == entry.source]
        for s in mine:
            assert any(r.first <= s.seq <= r.last for r in ranges) == (s.seq in used)
        assert entry.samples == sum(1 for s in mine if s.seq in used)
    assert data.samples == len(used)
    assert TrainingData.from_dict(data.to_dict()) == data


@given(reads, st.sampled_from(SOURCES), st.integers(0, 59), st.integers(0, 59))
def test_a_purge_matches_iff_it_deleted_a_used_sample(
    steps: list[tuple[int, str, bool]], source: str, i: int, j: int
) -> None:
    read, used = _read(steps)
    mine = [s for s in read if s.source == source]
    data = TrainingData.of(read, used, purges_seen=3)
    if not mine:
        return
    # A purge deletes a run of the source's samples (all of them since some time).
    first, last = sorted((mine[i % len(mine)].seq, mine[j % len(mine)].seq))
    deleted = [s for s in mine if first <= s.seq <= last]
    purge = PurgeRecord(MODEL, source, None, len(deleted), first, last, 0.0, n=4)

    assert data.removed_by(purge) == any(s.seq in used for s in deleted)
    # A purge the job had seen before it read its data deleted nothing it could read.
    assert not data.removed_by(PurgeRecord(MODEL, source, None, 1, first, last, 0.0, n=3))


def test_a_job_that_used_everything_it_read_records_one_range_per_source() -> None:
    read = [sample(seq, "team" if seq % 3 else "junk") for seq in range(1, 31)]
    data = TrainingData.of(read, {s.seq for s in read})
    assert [(s.source, s.seqs) for s in data.sources] == [
        ("junk", (SeqRange(3, 30),)),
        ("team", (SeqRange(1, 29),)),
    ]


def test_includes_names_a_source_by_the_window_of_its_samples() -> None:
    data = TrainingData.of([sample(1, "junk"), sample(2, "team")], {1, 2})
    assert data.includes("junk") and data.includes("junk", since=1001.0)
    assert not data.includes("junk", since=1001.5) and not data.includes("nobody")
    assert first_removing(None, []) is None
    assert TrainingData.from_dict({"sources": [{"source": "x"}]}) is None  # malformed
    assert TrainingData.from_dict(None) is None
