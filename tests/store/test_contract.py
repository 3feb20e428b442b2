"""The store contract (service.store), run against every backend: SQLite on a temporary file and
PostgreSQL on a fresh database per test.

Each test takes the ``backend`` fixture (or the stores it opens), parametrized over
``BACKENDS``. Tests of one backend's own settings live in test_sqlite.py and test_postgres.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from waiting import wait_until

from service.domain.loop import (
    GateResult,
    Job,
    JobState,
    NewSample,
    SourceSummary,
    content_key,
    derived_sample_id,
)
from service.domain.provenance import TrainingData
from service.errors import Conflict, DataPurged, InvalidInput, NotFound, Unavailable
from service.store import (
    AdaptationMark,
    JobStore,
    MarkStore,
    PostgresStore,
    SampleStore,
    SQLiteStore,
    Store,
    VersionRecord,
    VersionStore,
    open_store,
)

ROOT = Path(__file__).resolve().parents[2]
MODEL = "tiny"
GATE = GateResult(
    candidate_new=0.9,
    incumbent_new=0.7,
    candidate_anchor=0.85,
    incumbent_anchor=0.88,
    new_examples=40,
    anchor_examples=120,
    promote=True,
    reason="better on new data, within the forgetting budget",
)


@dataclass(frozen=True)
class Backend:
    open: Callable[[], Store]  # opens the same database again on every call
    open_source: str  # Python that binds ``store`` to the same database in another process


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    path = tmp_path / "state" / "loopserve.db"
    return Backend(
        open=lambda: SQLiteStore(path),
        open_source=(
            "from pathlib import Path\n"
            "from service.store import SQLiteStore\n"
            f"store = SQLiteStore(Path({str(path)!r}))\n"
        ),
    )


def _postgres(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    # Only PostgreSQL's cases start the server (or skip without one).
    url: str = request.getfixturevalue("database_url")
    return Backend(
        open=lambda: PostgresStore(url),
        open_source=(f"from service.store import PostgresStore\nstore = PostgresStore({url!r})\n"),
    )


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Backend]] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return BACKENDS[request.param](request, tmp_path)


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    opened = backend.open()
    yield opened
    opened.close()


@pytest.fixture
def samples(store: Store) -> SampleStore:
    return store


@pytest.fixture
def jobs(store: Store) -> JobStore:
    return store


@pytest.fixture
def versions(store: Store) -> VersionStore:
    return store


@pytest.fixture
def marks(store: Store) -> MarkStore:
    return store


def _batch(*ids: str, label: str = "greeting", source: str = "") -> list[NewSample]:
    return [NewSample(text=f"text of {i}", label=label, id=i, source=source) for i in ids]


def _next_tick() -> float:
    """A time after every ``created`` stored so far, so that ``since`` can split batches."""
    now = time.time()
    while time.time() <= now:
        time.sleep(0.001)
    return time.time()


# --- samples: add, count, ordering --------------------------------------------------------------


def test_add_stores_in_post_order_with_increasing_seqs(samples: SampleStore) -> None:
    posted = [
        NewSample(text="hello there", label="greeting", id="a", prediction_id="req-1"),
        NewSample(text="it is broken", label="complaint", id="b"),
        NewSample(text="how do I", label="question", id="c"),
    ]
    outcome = samples.add(MODEL, posted)

    assert (outcome.accepted, outcome.duplicates, outcome.ids) == (3, 0, ["a", "b", "c"])
    stored = samples.samples(MODEL)
    assert [(s.id, s.text, s.label, s.prediction_id) for s in stored] == [
        ("a", "hello there", "greeting", "req-1"),
        ("b", "it is broken", "complaint", ""),
        ("c", "how do I", "question", ""),
    ]
    assert all(s.model == MODEL and s.created > 0 for s in stored)
    seqs = [s.seq for s in stored]
    assert seqs == sorted(set(seqs)) and seqs[0] > 0
    assert samples.count(MODEL) == 3
    assert samples.last_seq(MODEL) == seqs[-1]
    assert samples.sample(MODEL, "b") == stored[1]
    assert samples.sample(MODEL, "zzz") is None


def test_seqs_keep_increasing_across_batches(samples: SampleStore) -> None:
    samples.add(MODEL, _batch("a", "b"))
    first_last = samples.last_seq(MODEL)
    samples.add(MODEL, _batch("c"))
    assert samples.samples(MODEL, after_seq=first_last)[0].id == "c"
    assert samples.last_seq(MODEL) > first_last


def test_after_and_upto_select_a_seq_window(samples: SampleStore) -> None:
    samples.add(MODEL, _batch("a", "b", "c", "d", "e"))
    stored = samples.samples(MODEL)
    seqs = [s.seq for s in stored]

    assert samples.count(MODEL, after_seq=seqs[1]) == 3
    assert samples.samples(MODEL, after_seq=seqs[1]) == stored[2:]
    assert samples.samples(MODEL, after_seq=seqs[1], upto_seq=seqs[3]) == stored[2:4]
    assert samples.samples(MODEL, upto_seq=seqs[0]) == stored[:1]
    assert samples.samples(MODEL, after_seq=seqs[-1]) == []
    assert samples.count(MODEL, after_seq=seqs[-1]) == 0


def test_an_unknown_model_has_nothing(samples: SampleStore) -> None:
    assert samples.count("nobody") == 0
    assert samples.samples("nobody") == []
    assert samples.last_seq("nobody") == 0
    assert samples.sample("nobody", "a") is None


def test_models_are_isolated(samples: SampleStore) -> None:
    samples.add("one", _batch("a", "b"))
    # The same id under another model is a different sample, even with other content.
    outcome = samples.add("two", _batch("a", label="complaint"))

    assert (outcome.accepted, outcome.duplicates) == (1, 0)
    assert samples.count("one") == 2
    assert samples.count("two") == 1
    assert [s.id for s in samples.samples("one")] == ["a", "b"]
    one_a, two_a = samples.sample("one", "a"), samples.sample("two", "a")
    assert one_a is not None and two_a is not None
    assert (one_a.label, two_a.label) == ("greeting", "complaint")
    assert samples.last_seq("two") == two_a.seq


def test_empty_batch_is_a_no_op(samples: SampleStore) -> None:
    outcome = samples.add(MODEL, [])
    assert (outcome.accepted, outcome.duplicates, outcome.ids) == (0, 0, [])
    assert samples.count(MODEL) == 0


# --- samples: idempotency and conflicts ---------------------------------------------------------


def test_retrying_a_batch_is_idempotent(samples: SampleStore) -> None:
    batch = _batch("a", "b", "c")
    first = samples.add(MODEL, batch)
    before = samples.samples(MODEL)

    retry = samples.add(MODEL, batch)

    assert (retry.accepted, retry.duplicates) == (0, 3)
    assert retry.ids == first.ids == ["a", "b", "c"]
    assert samples.samples(MODEL) == before


def test_a_batch_overlapping_stored_samples_adds_only_the_new_ones(samples: SampleStore) -> None:
    samples.add(MODEL, _batch("a"))
    outcome = samples.add(MODEL, _batch("a", "b"))
    assert (outcome.accepted, outcome.duplicates, outcome.ids) == (1, 1, ["a", "b"])
    assert samples.count(MODEL) == 2


@pytest.mark.parametrize(
    "conflict",
    [
        NewSample(text="other text", label="greeting", id="a"),
        NewSample(text="text of a", label="complaint", id="a"),
    ],
    ids=["text", "label"],
)
def test_a_conflicting_id_refuses_the_whole_batch(
    samples: SampleStore, conflict: NewSample
) -> None:
    samples.add(MODEL, _batch("a"))
    before = samples.samples(MODEL)

    with pytest.raises(InvalidInput, match="'a'"):
        samples.add(MODEL, [*_batch("new-1"), conflict, *_batch("new-2")])

    assert samples.samples(MODEL) == before
    assert samples.sample(MODEL, "new-1") is None
    # The refused batch left nothing half-open: the next one goes through.
    assert samples.add(MODEL, _batch("new-1")).accepted == 1


def test_the_same_id_twice_in_one_batch_is_a_duplicate(samples: SampleStore) -> None:
    outcome = samples.add(MODEL, _batch("a", "b", "a"))
    assert (outcome.accepted, outcome.duplicates, outcome.ids) == (2, 1, ["a", "b", "a"])
    assert samples.count(MODEL) == 2


def test_the_same_id_twice_in_one_batch_with_other_content_is_refused(
    samples: SampleStore,
) -> None:
    batch = [*_batch("a", "b"), NewSample(text="text of a", label="complaint", id="a")]
    with pytest.raises(InvalidInput, match="'a'"):
        samples.add(MODEL, batch)
    assert samples.count(MODEL) == 0


def test_empty_ids_get_generated_ids(samples: SampleStore) -> None:
    posted = [NewSample(text="same", label="greeting"), NewSample(text="same", label="greeting")]
    outcome = samples.add(MODEL, [*posted, *_batch("mine")])

    generated = outcome.ids[:2]
    assert outcome.accepted == 3 and outcome.ids[2] == "mine"
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in generated)
    assert generated[0] != generated[1]  # no id: no idempotency, each post is a new sample
    for sample_id in generated:
        stored = samples.sample(MODEL, sample_id)
        assert stored is not None and stored.text == "same"


# --- samples: provenance and purge --------------------------------------------------------------


def test_add_stores_the_source_and_samples_returns_it(samples: SampleStore) -> None:
    samples.add(MODEL, _batch("a", "b", source="labeling-team"))
    samples.add(MODEL, [NewSample(text="no source", label="greeting", id="c")])

    assert [(s.id, s.source) for s in samples.samples(MODEL)] == [
        ("a", "labeling-team"),
        ("b", "labeling-team"),
        ("c", ""),
    ]
    stored = samples.sample(MODEL, "a")
    assert stored is not None and stored.source == "labeling-team"


def test_sources_summarize_each_source_of_a_model(samples: SampleStore) -> None:
    samples.add(MODEL, _batch("a", "b", source="team"))
    samples.add(MODEL, _batch("c", source="junk"))
    samples.add(MODEL, _batch("d", source="team"))
    samples.add("other", _batch("x", source="elsewhere"))
    a, _, c, d = samples.samples(MODEL)

    assert samples.sources(MODEL) == [
        SourceSummary("junk", 1, c.created, c.created, c.seq, c.seq),
        SourceSummary("team", 3, a.created, d.created, a.seq, d.seq),
    ]
    assert [s.source for s in samples.sources("other")] == ["elsewhere"]
    assert samples.sources("nobody") == []


def test_purge_deletes_one_source_and_reports_its_seqs(samples: SampleStore) -> None:
    samples.add(MODEL, _batch("a", source="team"))
    samples.add(MODEL, _batch("j1", "j2", source="junk"))
    samples.add(MODEL, _batch("b", source="team"))
    samples.add(MODEL, _batch("j3", source="junk"))
    samples.add("other", _batch("j1", source="junk"))
    seqs = {s.id: s.seq for s in samples.samples(MODEL)}

    assert samples.purge(MODEL, "junk") == (3, seqs["j1"], seqs["j3"])
    assert [s.id for s in samples.samples(MODEL)] == ["a", "b"]
    assert samples.count(MODEL) == 2
    assert samples.sample(MODEL, "j2") is None
    assert [s.source for s in samples.sources(MODEL)] == ["team"]
    # Other models and other sources are untouched.
    assert samples.count("other") == 1
    # Purging again finds nothing; so does an unknown source.
    assert samples.purge(MODEL, "junk") == (0, 0, 0)
    assert samples.purge(MODEL, "nobody") == (0, 0, 0)
    assert samples.count(MODEL) == 2


def test_purge_since_deletes_only_later_samples(samples: SampleStore) -> None:
    samples.add(MODEL, _batch("old", source="junk"))
    since = _next_tick()
    samples.add(MODEL, _batch("new1", "new2", source="junk"))
    samples.add(MODEL, _batch("team", source="team"))
    seqs = {s.id: s.seq for s in samples.samples(MODEL)}

    assert samples.purge(MODEL, "junk", since=since) == (2, seqs["new1"], seqs["new2"])
    assert [s.id for s in samples.samples(MODEL)] == ["old", "team"]
    assert samples.purge(MODEL, "junk", since=_next_tick()) == (0, 0, 0)
    assert samples.purge(MODEL, "junk", since=0.0) == (1, seqs["old"], seqs["old"])


def test_purged_seqs_are_never_reused(samples: SampleStore) -> None:
    samples.add(MODEL, _batch("a", source="team"))
    samples.add(MODEL, _batch("j", source="junk"))
    _, _, last = samples.purge(MODEL, "junk")
    samples.add(MODEL, _batch("b", source="team"))

    stored = samples.sample(MODEL, "b")
    assert stored is not None and stored.seq > last
    # A purged id may be posted again; it is a new sample with a new seq.
    samples.add(MODEL, _batch("j", source="team"))
    again = samples.sample(MODEL, "j")
    assert again is not None and again.seq > stored.seq and again.source == "team"


# --- samples of content (binary inputs: images) ---------------------------------------------------

PHOTO = b"\x89PNG\r\n\x1a\n a photo qz7contentmarker " + bytes(range(256))  # any bytes do


def _image(data: bytes, label: str = "red", **fields: str) -> NewSample:
    return NewSample(text="", label=label, data=data, **fields)


def test_content_is_stored_once_under_its_key_and_a_derived_id(samples: SampleStore) -> None:
    key = content_key(PHOTO)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", key)

    outcome = samples.add(MODEL, [_image(PHOTO), _image(PHOTO)])
    (stored,) = samples.samples(MODEL)
    assert (outcome.accepted, outcome.duplicates) == (1, 1)
    assert outcome.ids == [derived_sample_id(key, "red")] * 2 == [stored.id] * 2
    assert (stored.text, stored.label) == (key, "red")
    assert samples.blobs(MODEL, [key]) == {key: PHOTO}
    # Posted again later, with or without its id: a duplicate, nothing stored twice.
    again = samples.add(MODEL, [_image(PHOTO), _image(PHOTO, id=stored.id)])
    assert (again.accepted, again.duplicates) == (0, 2)
    assert samples.count(MODEL) == 1 and samples.distinct_count(MODEL) == 1


def test_the_same_content_with_another_label_is_another_sample_of_one_blob(
    samples: SampleStore,
) -> None:
    """As a text posted twice with two labels: two samples (the job keeps the first posted)."""
    outcome = samples.add(MODEL, [_image(PHOTO, "red"), _image(PHOTO, "blue")])
    assert outcome.accepted == 2 and outcome.ids[0] != outcome.ids[1]
    assert {s.text for s in samples.samples(MODEL)} == {content_key(PHOTO)}
    assert samples.distinct_count(MODEL) == 1
    assert samples.blobs(MODEL, [content_key(PHOTO)]) == {content_key(PHOTO): PHOTO}


def test_a_caller_id_posted_again_with_other_content_refuses_the_batch(
    samples: SampleStore,
) -> None:
    samples.add(MODEL, [_image(PHOTO, id="shot-1")])
    other = PHOTO + b"another photo"

    with pytest.raises(InvalidInput, match=r"'shot-1' .* already stored with a different content"):
        samples.add(MODEL, [_image(other, id="new"), _image(other, id="shot-1")])
    with pytest.raises(InvalidInput, match=r"'x' .* earlier in the batch with a different content"):
        samples.add(MODEL, [_image(other, id="x"), _image(PHOTO, id="x")])

    # Nothing of the refused batches was kept, content included.
    assert [s.id for s in samples.samples(MODEL)] == ["shot-1"]
    assert samples.blobs(MODEL, [content_key(other)]) == {}


def test_blobs_answers_only_the_stored_keys_of_the_model(samples: SampleStore) -> None:
    other = b"other bytes"
    samples.add(MODEL, [_image(PHOTO), _image(other)])
    samples.add("elsewhere", [_image(b"not of this model")])
    keys = [content_key(PHOTO), content_key(other), content_key(b"not of this model")]

    assert samples.blobs(MODEL, [*keys, "sha256:" + "0" * 64, "a plain text"]) == {
        keys[0]: PHOTO,
        keys[1]: other,
    }
    assert samples.blobs(MODEL, []) == {}
    many = samples.blobs(MODEL, [keys[0]] * 1200 + [f"sha256:{i:064x}" for i in range(1200)])
    assert many == {keys[0]: PHOTO}


def test_a_purge_deletes_the_content_no_sample_references_any_more(
    samples: SampleStore,
) -> None:
    shared, own = PHOTO, PHOTO + b" posted by junk only"
    samples.add(MODEL, [_image(shared, source="team")])
    samples.add(MODEL, [_image(shared, "blue", source="junk"), _image(own, source="junk")])
    samples.add("other", [_image(own, source="junk")])
    keys = [content_key(shared), content_key(own)]

    assert samples.purge(MODEL, "junk")[0] == 2
    # The team's sample still uses the shared bytes; the other model keeps its own copy.
    assert samples.blobs(MODEL, keys) == {keys[0]: shared}
    assert samples.blobs("other", keys) == {keys[1]: own}
    assert samples.purge(MODEL, "team")[0] == 1
    assert samples.blobs(MODEL, keys) == {}
    # Posted again after the purge, the content is stored again.
    samples.add(MODEL, [_image(own, source="team")])
    assert samples.blobs(MODEL, keys) == {keys[1]: own}


def test_delete_sample_removes_one_sample_of_its_source_with_its_content(store: Store) -> None:
    store.add(MODEL, _batch("t1", "t2", source="team"))
    store.add(MODEL, [_image(PHOTO, source="team"), _image(PHOTO, "blue", source="junk")])
    store.add(MODEL, _batch("j1", source="junk"))
    seq = {s.id: s.seq for s in store.samples(MODEL)}
    job = _job_on(store, "t1", "t2")
    other = _job_on(store, "t2")

    assert store.delete_sample(MODEL, "junk", "t1") is None  # not junk's to delete
    gone = store.delete_sample(MODEL, "team", "t1")
    assert gone is not None and (gone.id, gone.source, gone.seq) == ("t1", "team", seq["t1"])
    assert [s.id for s in store.samples(MODEL)] == [i for i in seq if i != "t1"]
    assert store.delete_sample(MODEL, "team", "t1") is None  # once
    # Kept as a purge of that one seq: a job that read it cannot publish, others can.
    (record,) = store.purges(MODEL)
    assert (record.source, record.removed, record.first_seq, record.last_seq) == (
        "team", 1, seq["t1"], seq["t1"],
    )  # fmt: skip
    assert store.purged(job.id) == record and store.purged(other.id) is None
    # Content goes with the last sample that uses it.
    key = content_key(PHOTO)
    team_image = next(s for s in store.samples(MODEL) if s.text == key and s.source == "team")
    assert store.delete_sample(MODEL, "team", team_image.id) is not None
    assert store.blobs(MODEL, [key]) == {key: PHOTO}  # junk's sample still uses it
    junk_image = next(s for s in store.samples(MODEL) if s.text == key)
    assert store.delete_sample(MODEL, "junk", junk_image.id) is not None
    assert store.blobs(MODEL, [key]) == {}


# --- provenance: what jobs trained on, purges, and the publish check ------------------------------


def _job_on(store: Store, *ids: str) -> Job:
    """A running job whose recorded data is the stored samples ``ids``."""
    seen = max((p.n for p in store.purges(MODEL)), default=0)  # as a job: before the read
    read = store.samples(MODEL)
    used = {s.seq for s in read if s.id in ids}
    data = TrainingData.of(read, used, seen)
    job = store.create(MODEL, "manual", "test", 1, store.last_seq(MODEL))
    job = store.update(job.id, state=JobState.RUNNING, data=data)
    assert job.data is not None
    return job


def test_a_job_keeps_its_data_record_as_compact_seq_ranges_per_source(store: Store) -> None:
    store.add(MODEL, _batch("t1", "t2", source="team"))
    store.add(MODEL, _batch("j1", source="junk"))
    store.add(MODEL, _batch("t3", "t4", "t5", source="team"))
    seq = {s.id: s.seq for s in store.samples(MODEL)}
    job = _job_on(store, "t1", "t2", "j1", "t3", "t5")

    stored = store.job(job.id).data
    assert stored == job.data and stored is not None
    team, junk = {s.source: s for s in stored.sources}["team"], stored.sources[0]
    # t1..t3 are consecutive among team's samples (junk's j1 between them does not split it).
    assert [(r.first, r.last) for r in team.seqs] == [
        (seq["t1"], seq["t3"]),
        (seq["t5"], seq["t5"]),
    ]
    assert (junk.source, junk.samples, [(r.first, r.last) for r in junk.seqs]) == (
        "junk", 1, [(seq["j1"], seq["j1"])],
    )  # fmt: skip
    assert store.create(MODEL, "manual", "no data yet", 1, 0).data is None


def test_a_purge_is_recorded_and_names_the_jobs_trained_on_it_every_time(store: Store) -> None:
    store.add(MODEL, _batch("t1", source="team"))
    store.add(MODEL, _batch("j1", "j2", source="junk"))
    job = _job_on(store, "t1", "j1", "j2")
    clean = _job_on(store, "t1")
    assert store.purges(MODEL) == [] and store.purged(job.id) is None

    removed, first, last = store.purge(MODEL, "junk")
    assert removed == 2
    (record,) = store.purges(MODEL)
    assert (record.model, record.source, record.since, record.removed) == (MODEL, "junk", None, 2)
    assert (record.first_seq, record.last_seq) == (first, last)
    assert store.purged(job.id) == record and store.purged(clean.id) is None
    assert [j.id for j in store.trained_on(MODEL, "junk")] == [job.id]
    # Repeated: nothing removed, nothing recorded, the same job named.
    assert store.purge(MODEL, "junk") == (0, 0, 0)
    assert store.purges(MODEL) == [record]
    assert [j.id for j in store.trained_on(MODEL, "junk")] == [job.id]
    assert [j.id for j in store.trained_on(MODEL, "team")] == [clean.id, job.id]
    # A job that made a version is named by the version, not as a job.
    store.update(job.id, state=JobState.REJECTED, candidate_version=2)
    assert store.trained_on(MODEL, "junk") == []


def test_a_since_purge_names_jobs_by_the_window_of_their_data(store: Store) -> None:
    store.add(MODEL, _batch("old", source="junk"))
    early = _job_on(store, "old")
    since = _next_tick()
    store.add(MODEL, _batch("new", source="junk"))
    late = _job_on(store, "old", "new")

    assert store.purge(MODEL, "junk", since=since)[0] == 1
    assert [j.id for j in store.trained_on(MODEL, "junk", since)] == [late.id]
    assert store.purged(late.id) is not None and store.purged(early.id) is None
    # Samples purged before a job read its data are not in its data: no refusal.
    store.add(MODEL, _batch("again", source="junk"))
    after = _job_on(store, "old", "again")
    assert store.purged(after.id) is None


def test_a_head_move_for_a_job_whose_data_was_purged_is_refused(store: Store) -> None:
    store.add(MODEL, _batch("t1", source="team"))
    store.add(MODEL, _batch("j1", source="junk"))
    tainted, clean = _job_on(store, "t1", "j1"), _job_on(store, "t1")
    assert store.move_head(MODEL, 1, None) is True
    store.purge(MODEL, "junk")

    with pytest.raises(DataPurged) as refused:
        store.move_head(MODEL, 2, 1, job=tainted.id)
    assert str(refused.value) == (
        f"cancelled: 1 samples of source 'junk' (seq 2..2) were purged after job {tainted.id} "
        "read its data; its candidate is not published"
    )
    assert store.head(MODEL) == 1
    lease = store.trainer_lease()
    try:
        assert lease.try_acquire() is True
        with pytest.raises(DataPurged):
            lease.move_head(MODEL, 2, 1, job=tainted.id)
        assert store.head(MODEL) == 1
        assert lease.move_head(MODEL, 2, 1, job=clean.id) is True
    finally:
        lease.close()
    assert store.move_head(MODEL, 3, 2, job=clean.id) is True
    with pytest.raises(DataPurged), store.publish_fence(tainted.id):
        raise AssertionError("the fence let a purged job through")
    with store.publish_fence(clean.id):
        pass
    assert store.head(MODEL) == 3
    # A job this database does not know (a version copied in from elsewhere): no record, no check.
    with store.publish_fence("job-elsewhere"):
        pass
    assert store.move_head(MODEL, 4, 3, job="job-elsewhere") is True


def test_a_purge_waits_for_a_publish_fence_and_then_names_the_job(backend: Backend) -> None:
    """The fence (around a move of the ``current`` file) and a purge are serialized: the purge
    that comes while a publish holds the fence deletes only once the head has moved."""
    store, other = backend.open(), backend.open()
    try:
        store.add(MODEL, _batch("j1", source="junk"))
        job = _job_on(store, "j1")
        purged: list[tuple[int, int, int]] = []
        purger = threading.Thread(target=lambda: purged.append(other.purge(MODEL, "junk")))
        with store.publish_fence(job.id):
            purger.start()
            # SQLite: the purge's BEGIN IMMEDIATE waits for the fence's write lock (another
            # connection); PostgreSQL: it waits for the model's advisory lock.
            purger.join(0.5)
            assert purger.is_alive() and purged == []
        purger.join(10)
        assert purged == [(1, 1, 1)]
        assert [j.id for j in other.trained_on(MODEL, "junk")] == [job.id]
        with pytest.raises(DataPurged):
            store.move_head(MODEL, 1, None, job=job.id)
    finally:
        store.close()
        other.close()


# --- samples: durability and concurrency --------------------------------------------------------


def test_samples_and_jobs_survive_a_reopen(backend: Backend) -> None:
    first = backend.open()
    first.add(MODEL, _batch("a", "b"))
    job = first.create(MODEL, "samples", "2 new samples", base_version=1, samples_upto=2)
    before = first.samples(MODEL)
    first.close()

    second = backend.open()
    try:
        assert second.samples(MODEL) == before
        assert second.job(job.id) == job
        # Seqs continue after the reopen rather than starting over.
        second.add(MODEL, _batch("c"))
        assert second.last_seq(MODEL) > before[-1].seq
    finally:
        second.close()


@pytest.mark.parametrize(
    ("death", "returncode"),
    [("os._exit(0)", 0), ("os.kill(os.getpid(), signal.SIGKILL)", -signal.SIGKILL)],
    ids=["exit-without-cleanup", "sigkill"],
)
def test_acknowledged_samples_survive_the_process_dying(
    backend: Backend, death: str, returncode: int
) -> None:
    script = (
        "import json, os, signal, sys\n"
        "from service.domain.loop import NewSample\n"
        f"{backend.open_source}"
        "outcome = store.add(sys.argv[1], [NewSample(text=f't{i}', label='x') for i in range(50)])\n"
        "print(json.dumps(outcome.ids), flush=True)\n"
        # No close, no interpreter shutdown: only what add committed may count.
        f"{death}\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, MODEL],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == returncode, result.stderr
    acknowledged = json.loads(result.stdout)

    reopened = backend.open()
    try:
        assert [s.id for s in reopened.samples(MODEL)] == acknowledged
    finally:
        reopened.close()


def test_concurrent_adds_lose_nothing(samples: SampleStore) -> None:
    threads, batches, per_batch = 8, 6, 5
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []
    shared_outcomes: list[tuple[int, int]] = []

    def worker(n: int) -> None:
        try:
            barrier.wait()
            for b in range(batches):
                samples.add(MODEL, _batch(*(f"t{n}-b{b}-{i}" for i in range(per_batch))))
            # Every thread posts the same sample: exactly one of them stores it.
            outcome = samples.add(MODEL, _batch("shared"))
            shared_outcomes.append((outcome.accepted, outcome.duplicates))
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=30)

    assert errors == []
    stored = samples.samples(MODEL)
    expected = {
        f"t{n}-b{b}-{i}" for n in range(threads) for b in range(batches) for i in range(per_batch)
    }
    assert {s.id for s in stored} == expected | {"shared"}
    assert len(stored) == threads * batches * per_batch + 1
    assert len({s.seq for s in stored}) == len(stored)
    assert sorted(shared_outcomes) == [(0, 1)] * (threads - 1) + [(1, 0)]


# --- jobs ---------------------------------------------------------------------------------------


def test_create_makes_a_queued_job(jobs: JobStore) -> None:
    job = jobs.create(MODEL, "drift", "alarm on embeddings", base_version=3, samples_upto=17)

    assert re.fullmatch(r"job-[0-9a-f]{12}", job.id)
    assert job.state is JobState.QUEUED
    assert (job.model, job.trigger, job.reason) == (MODEL, "drift", "alarm on embeddings")
    assert (job.base_version, job.samples_upto, job.attempt) == (3, 17, 1)
    assert job.created > 0
    assert (job.started, job.finished, job.candidate_version, job.gate, job.error) == (
        None,
        None,
        None,
        None,
        "",
    )
    assert jobs.job(job.id) == job
    retry = jobs.create(MODEL, "retry", "after failure", base_version=3, samples_upto=17, attempt=2)
    assert retry.attempt == 2 and retry.id != job.id


def test_update_round_trips_every_field(jobs: JobStore) -> None:
    job = jobs.create(MODEL, "manual", "operator", base_version=1, samples_upto=5)

    running = jobs.update(job.id, state=JobState.RUNNING, started=100.5)
    assert running.state is JobState.RUNNING and running.started == 100.5
    assert jobs.job(job.id) == running

    done = jobs.update(
        job.id, state="promoted", finished=200.25, candidate_version=2, gate=GATE, error=""
    )
    assert done.state is JobState.PROMOTED and done.state.finished
    assert (done.started, done.finished, done.candidate_version) == (100.5, 200.25, 2)
    assert done.gate == GATE
    assert done.gate is not None and done.gate.forgetting == pytest.approx(0.03)
    assert jobs.job(job.id) == done

    cleared = jobs.update(job.id, gate=None, error="gate re-run")
    assert cleared.gate is None and cleared.error == "gate re-run"
    assert jobs.update(job.id) == cleared


@pytest.mark.parametrize("changes", [{"colour": "red"}, {"id": "job-other"}, {"state": "paused"}])
def test_update_refuses_unknown_fields_and_states(jobs: JobStore, changes: dict[str, str]) -> None:
    job = jobs.create(MODEL, "manual", "operator", base_version=1, samples_upto=5)
    with pytest.raises(ValueError):
        jobs.update(job.id, error="should not stick", **changes)
    assert jobs.job(job.id) == job


def test_missing_jobs_are_not_found(jobs: JobStore) -> None:
    with pytest.raises(NotFound, match="no job 'job-nope'"):
        jobs.job("job-nope")
    with pytest.raises(NotFound, match="no job 'job-nope'"):
        jobs.update("job-nope", error="x")


def test_latest_active_and_recent(jobs: JobStore) -> None:
    assert jobs.latest(MODEL) is None and jobs.active(MODEL) is None and jobs.recent(MODEL) == []

    first = jobs.create(MODEL, "samples", "1", base_version=1, samples_upto=10)
    second = jobs.create(MODEL, "samples", "2", base_version=1, samples_upto=20)
    other = jobs.create("other", "manual", "elsewhere", base_version=1, samples_upto=1)
    third = jobs.create(MODEL, "samples", "3", base_version=1, samples_upto=30)

    assert jobs.latest(MODEL) == third
    assert [j.id for j in jobs.recent(MODEL)] == [third.id, second.id, first.id]
    assert [j.id for j in jobs.recent(MODEL, limit=2)] == [third.id, second.id]
    assert jobs.recent("other") == [other]

    jobs.update(first.id, state=JobState.FAILED)
    jobs.update(second.id, state=JobState.REJECTED)
    running = jobs.update(third.id, state=JobState.RUNNING, started=1.0)
    assert jobs.active(MODEL) == running
    assert jobs.active("other") == other

    jobs.update(third.id, state=JobState.PROMOTED)
    assert jobs.active(MODEL) is None
    latest = jobs.latest(MODEL)
    assert latest is not None and latest.state is JobState.PROMOTED


def test_a_cancel_request_fails_a_queued_job_and_marks_a_running_one(jobs: JobStore) -> None:
    queued = jobs.create(MODEL, "manual", "queued on a replica", base_version=1, samples_upto=5)
    failed = jobs.request_cancel(queued.id, "cancelled by ops")
    assert failed is not None and failed == jobs.job(queued.id)
    assert (failed.state, failed.error, failed.cancelled, failed.cancel_requested) == (
        JobState.FAILED, "cancelled by ops", True, False,
    )  # fmt: skip
    assert failed.finished is not None and failed.finished >= queued.created
    assert jobs.active(MODEL) is None

    job = jobs.create(MODEL, "samples", "labels", base_version=1, samples_upto=9)
    running = jobs.update(job.id, state=JobState.RUNNING, started=1.0)
    requested = jobs.request_cancel(job.id, "cancelled by ops")
    assert requested is not None and requested == jobs.job(job.id)
    assert requested == dataclasses.replace(running, error="cancelled by ops")
    assert requested.cancel_requested and jobs.active(MODEL) == requested
    # Another operator's request names the other operator; the job still runs.
    again = jobs.request_cancel(job.id, "cancelled by admin")
    assert again is not None and (again.state, again.error) == (
        JobState.RUNNING,
        "cancelled by admin",
    )


@pytest.mark.parametrize("state", [s for s in JobState if s.finished])
def test_a_cancel_request_changes_nothing_of_a_job_that_has_ended(
    jobs: JobStore, state: JobState
) -> None:
    job = jobs.create(MODEL, "samples", "labels", base_version=1, samples_upto=9)
    ended = jobs.update(job.id, state=state, finished=2.0, error="its own error")
    assert jobs.request_cancel(job.id, "cancelled by ops") is None
    assert jobs.job(job.id) == ended
    with pytest.raises(NotFound, match="no job 'job-nope'"):
        jobs.request_cancel("job-nope", "cancelled by ops")


def test_a_cancel_request_and_the_end_of_the_job_do_not_both_win(backend: Backend) -> None:
    """Through two stores (two processes of a deployment): the request either comes first and
    the runner's final write replaces it, or comes after and changes nothing; never a finished
    job with a request's error."""
    runner, replica = backend.open(), backend.open()
    try:
        for _ in range(20):
            job = runner.create(MODEL, "samples", "labels", base_version=1, samples_upto=9)
            runner.update(job.id, state=JobState.RUNNING, started=1.0)
            answer = _race_cancel_with_end(runner, replica, job.id)
            final = runner.job(job.id)
            assert (final.state, final.error) == (JobState.PROMOTED, "")
            assert answer is None or answer.cancel_requested
    finally:
        runner.close()
        replica.close()


def _race_cancel_with_end(runner: JobStore, replica: JobStore, job_id: str) -> Job | None:
    """The runner ends the job while the replica asks to cancel it; the replica's answer."""
    answers: list[Job | None] = []
    end = functools.partial(runner.update, job_id, state="promoted", finished=2.0, error="")
    threads = [
        threading.Thread(target=end),
        threading.Thread(
            target=lambda: answers.append(replica.request_cancel(job_id, "cancelled by x"))
        ),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(answers) == 1
    return answers[0]


def test_a_closed_store_is_unavailable(backend: Backend) -> None:
    store = backend.open()
    store.close()
    store.close()  # closing twice is harmless
    with pytest.raises(Unavailable):
        store.count(MODEL)
    with pytest.raises(Unavailable):
        store.add(MODEL, _batch("a"))


# --- distinct texts (what the trigger policy counts) --------------------------------------------


def test_distinct_count_ignores_copies_case_and_surrounding_space(samples: SampleStore) -> None:
    copies = [NewSample("refund me", "a", f"c{i}") for i in range(100)]
    samples.add("m", [*copies, NewSample("  Refund ME ", "a", "x"), NewSample("other", "b")])
    assert samples.count("m") == 102
    assert samples.distinct_count("m") == 2
    first = samples.samples("m")[0].seq
    assert samples.distinct_count("m", after_seq=first + 99) == 2  # "  Refund ME " and "other"
    assert samples.distinct_count("other-model") == 0


def test_distinct_count_folds_ascii_case_and_trims_spaces_only(samples: SampleStore) -> None:
    # Both backends count like SQLite's lower(trim(text)): other letters keep their case and
    # tabs or newlines are part of the text.
    texts = ["Ünïcode", "üNÏcode", "ünïcode", "tab", "tab\t", "\ntab", " tab  ", "TAB"]
    samples.add(MODEL, [NewSample(text, "a", f"s{i}") for i, text in enumerate(texts)])
    assert samples.distinct_count(MODEL) == 6  # Ü/ü twice, ü once, then tab, tab\t, \ntab


# --- version records and the head row -----------------------------------------------------------


def _record(version: int, model: str = MODEL, status: str = "promoted") -> VersionRecord:
    return VersionRecord(model, version, f"sha256:{version:064x}", status, 1000.0 + version)


def test_version_records_round_trip_oldest_first(versions: VersionStore) -> None:
    assert versions.versions(MODEL) == []
    records = [_record(2), _record(1, status="seed"), _record(3, status="rejected")]
    for record in records:
        versions.add_version(record)
    versions.add_version(_record(1, model="other"))

    assert versions.versions(MODEL) == sorted(records, key=lambda r: r.version)
    assert versions.versions("other") == [_record(1, model="other")]


def test_a_version_is_recorded_once(versions: VersionStore) -> None:
    versions.add_version(_record(1))
    with pytest.raises(Conflict, match="version 1 of model 'tiny'"):
        versions.add_version(_record(1, status="rejected"))
    assert versions.versions(MODEL) == [_record(1)]


def test_move_head_is_a_compare_and_set(versions: VersionStore) -> None:
    assert versions.head(MODEL) is None
    assert versions.move_head(MODEL, 5, expected=3) is False  # no head row yet
    assert versions.head(MODEL) is None

    assert versions.move_head(MODEL, 1, expected=None) is True
    assert versions.head(MODEL) == 1
    assert versions.move_head(MODEL, 9, expected=None) is False  # the row exists now
    assert versions.move_head(MODEL, 2, expected=7) is False
    assert versions.head(MODEL) == 1

    assert versions.move_head(MODEL, 2, expected=1) is True
    assert versions.move_head(MODEL, 1, expected=2) is True  # a rollback is a head move too
    assert versions.head(MODEL) == 1
    assert versions.head("other") is None


def _race_head_moves(moves: Sequence[tuple[Store, int, int | None]]) -> list[bool]:
    """Run ``(store, version, expected)`` head moves at the same time; their results."""
    barrier = threading.Barrier(len(moves))
    results: list[bool] = []
    errors: list[BaseException] = []

    def move(store: Store, version: int, expected: int | None) -> None:
        try:
            barrier.wait()
            results.append(store.move_head(MODEL, version, expected))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=move, args=args) for args in moves]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    return results


def test_concurrent_head_moves_from_one_version_have_one_winner(backend: Backend) -> None:
    stores = [backend.open() for _ in range(2)]
    try:
        # The first head row: one insert wins.
        first = [(store, n, None) for n, store in enumerate(stores * 2)]
        assert sorted(_race_head_moves(first)) == [False, False, False, True]
        winner = stores[1].head(MODEL)
        assert winner is not None and stores[0].move_head(MODEL, 0, expected=winner)
        for round_ in range(5):
            base = round_ * 100
            # Two threads on each of two stores, all from the same expected version.
            moves = [(store, base + 10 + n, base) for n, store in enumerate(stores * 2)]
            assert sorted(_race_head_moves(moves)) == [False, False, False, True]
            winner = stores[1].head(MODEL)
            assert winner is not None and base + 10 <= winner < base + 14
            assert stores[0].move_head(MODEL, base + 100, expected=winner)
    finally:
        for store in stores:
            store.close()


def test_concurrent_adds_of_the_same_ids_through_two_stores_store_each_once(
    backend: Backend,
) -> None:
    stores = [backend.open() for _ in range(2)]
    batch = _batch(*(f"s{i}" for i in range(50)))
    barrier = threading.Barrier(4)
    outcomes: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def add(store: Store) -> None:
        try:
            barrier.wait()
            outcome = store.add(MODEL, batch)
            outcomes.append((outcome.accepted, outcome.duplicates))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(store,)) for store in stores * 2]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert errors == []
        stored = stores[1].samples(MODEL)
        assert [s.id for s in stored] == [s.id for s in batch]
        assert sum(accepted for accepted, _ in outcomes) == len(batch)
        assert sum(duplicates for _, duplicates in outcomes) == 3 * len(batch)
    finally:
        for store in stores:
            store.close()


# --- the trainer lease and head watching ----------------------------------------------------------


def test_a_lease_moves_the_head_while_held(store: Store) -> None:
    lease = store.trainer_lease()
    try:
        assert lease.try_acquire() is True
        assert lease.try_acquire() is True  # holding it already is holding it
        assert lease.held() is True
        assert lease.move_head(MODEL, 1, expected=None) is True
        assert lease.move_head(MODEL, 2, expected=1) is True
        assert lease.move_head(MODEL, 3, expected=1) is False
        assert store.head(MODEL) == 2
    finally:
        lease.close()


def _move_until_heard(store: Store, heard: Callable[[], bool], version: int) -> int:
    """Move the head until ``heard()``: a listener needs a moment to connect (PostgreSQL).
    Returns the version the head is at."""
    for _ in range(50):
        assert store.move_head(MODEL, version + 1, expected=version or None)
        version += 1
        with contextlib.suppress(AssertionError):
            wait_until(heard, 0.2)
            return version
    raise AssertionError("no watcher heard a move of the head")


def test_a_watcher_hears_of_head_moves_until_stopped(store: Store) -> None:
    heard: list[str] = []
    watcher = store.head_watcher()
    watcher.start(heard.append)
    try:
        version = _move_until_heard(store, lambda: MODEL in heard, 0)
        assert store.move_head(MODEL, version + 1, expected=None) is False  # refused: no news
    finally:
        watcher.stop()
    count = len(heard)
    witness: list[str] = []
    running = store.head_watcher()
    running.start(witness.append)
    try:
        _move_until_heard(store, lambda: bool(witness), version)  # what the stopped one missed
    finally:
        running.stop()
    assert len(heard) == count


# --- needs-adaptation marks -----------------------------------------------------------------------


def test_marks_are_per_replica_and_keep_the_older_seq(marks: MarkStore) -> None:
    assert marks.marks(MODEL) == []
    first = AdaptationMark(MODEL, "replica-b", since_seq=10, raised=100.0)
    marks.raise_mark(first)
    marks.raise_mark(AdaptationMark(MODEL, "replica-b", since_seq=25, raised=200.0))
    other = AdaptationMark(MODEL, "replica-a", since_seq=30, raised=300.0)
    marks.raise_mark(other)
    marks.raise_mark(AdaptationMark("other", "replica-a", since_seq=1, raised=1.0))

    assert marks.marks(MODEL) == [other, first]  # by replica

    marks.clear_mark(MODEL, "replica-a")
    marks.clear_mark(MODEL, "nobody")  # clearing a missing mark is harmless
    assert marks.marks(MODEL) == [first]

    marks.raise_mark(other)
    marks.clear_marks(MODEL)
    assert marks.marks(MODEL) == []
    assert [m.replica for m in marks.marks("other")] == ["replica-a"]


# --- opening --------------------------------------------------------------------------------------


def test_open_store_picks_the_backend_by_url(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    local = open_store("", tmp_path)
    try:
        assert isinstance(local, SQLiteStore) and local.shared is False
        assert (tmp_path / "loopserve.db").exists()
    finally:
        local.close()
    url: str = request.getfixturevalue("database_url")
    shared = open_store(url, tmp_path)
    try:
        assert isinstance(shared, PostgresStore) and shared.shared is True
    finally:
        shared.close()
