"""The closed-loop commands of ``loopserve`` (label, versions, status, finetune, rollback,
samples) against an in-process server on a fake adaptation core."""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_adaptation import (
    CREATED,
    LABELS,
    MODEL,
    REJECTING_GATE,
    FakeAdaptationCore,
    FakeServer,
    finished_job,
    initial_samples,
)

from service.cli import main, parse_time
from service.domain.loop import JobState, NewSample, PurgeOutcome, VersionSummary
from service.domain.review import LabelChange, ReviewEvidence
from service.tasks.text import content_id


@pytest.fixture
def core() -> FakeAdaptationCore:
    return FakeAdaptationCore()


@pytest.fixture
def server(core: FakeAdaptationCore) -> Iterator[FakeServer]:
    running = FakeServer(core)
    yield running
    running.stop()


@pytest.fixture
def run(server: FakeServer, capsys: pytest.CaptureFixture[str]) -> Any:
    """``run(*args)`` → (exit code, stdout, stderr) of ``loopserve ARGS --addr <server>``."""

    def invoke(*args: str) -> tuple[int, str, str]:
        code = main([*args, "--addr", server.address])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---- label --------------------------------------------------------------------------------------


def test_label_sends_the_csv_and_prints_the_outcome(
    run: Any, core: FakeAdaptationCore, tmp_path: Path
) -> None:
    csv_file = write(
        tmp_path / "labels.csv",
        "\ufefftext,label,id,prediction_id\n"
        '"where is my parcel, it is late",shipping,a-1,req-9\n'
        "\n"
        "refund please, billing ,,\n",
    )
    code, out, err = run("label", str(csv_file))
    assert code == 0, err
    assert out.strip() == f"{MODEL}: 2 accepted, 0 duplicates (2 samples)"
    assert core.batches == [
        [
            NewSample("where is my parcel, it is late", "shipping", "a-1", "req-9"),
            NewSample("refund please", "billing", content_id("refund please", "billing")),
        ]
    ]
    code, out, _ = run("label", str(csv_file), "--json")
    assert code == 0
    # Re-posting the same file: the row with an id and the row with a content id are duplicates.
    assert json.loads(out) == {
        "accepted": 0,
        "duplicates": 2,
        "ids": ["a-1", content_id("refund please", "billing")],
    }


def test_label_columns_may_come_in_any_order(
    run: Any, core: FakeAdaptationCore, tmp_path: Path
) -> None:
    csv_file = write(tmp_path / "l.csv", "Label,Text\nother,hello there\n")
    assert run("label", str(csv_file))[0] == 0
    assert core.batches == [[NewSample("hello there", "other", content_id("hello there", "other"))]]


def test_rows_without_an_id_get_a_content_id_so_reposting_is_idempotent(
    run: Any, core: FakeAdaptationCore, tmp_path: Path
) -> None:
    csv_file = write(tmp_path / "l.csv", "text,label\nhello there,other\n")
    assert run("label", str(csv_file))[0] == 0
    assert run("label", str(csv_file))[0] == 0
    assert core.batches[0] == core.batches[1]
    assert len(core.samples) == 1


def test_label_sends_batches_of_500(run: Any, core: FakeAdaptationCore, tmp_path: Path) -> None:
    rows = "".join(f"message number {i},{LABELS[i % 3]}\n" for i in range(1201))
    csv_file = write(tmp_path / "many.csv", "text,label\n" + rows)
    code, out, err = run("label", str(csv_file), "--json")
    assert code == 0, err
    assert [len(batch) for batch in core.batches] == [500, 500, 201]
    result = json.loads(out)
    assert (result["accepted"], result["duplicates"], len(result["ids"])) == (1201, 0, 1201)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty; expected a header row text,label[,id][,prediction_id]"),
        ("text,label\n", "has a header but no samples"),
        ("text\nhello\n", "line 1: no 'label' column"),
        (
            "text,label,source\nhi,other,web\n",
            "line 1: unknown column(s) 'source'; the header must name the columns "
            "text,label[,id][,prediction_id]",
        ),
        ("text,label,label\nhi,other,other\n", "line 1: repeated column(s) 'label'"),
        ("text,label\nhi,other\nhello\n", "line 3: 1 field(s) where the header has 2"),
        ("text,label\nhi,other\n  ,other\n", "line 3: empty text"),
        ("text,label\nhi,\n", "line 2: empty label"),
        ('text,label\n"unclosed,other\n', "line 2: unexpected end of data"),
    ],
)
def test_label_refuses_a_bad_csv_with_exit_2(
    run: Any, core: FakeAdaptationCore, tmp_path: Path, content: str, message: str
) -> None:
    csv_file = write(tmp_path / "bad.csv", content)
    code, out, err = run("label", str(csv_file))
    assert code == 2
    assert err.startswith(f"loopserve: {csv_file}")
    assert message in err, err
    assert out == "" and core.batches == []


def test_label_refuses_a_missing_or_non_utf8_file(
    run: Any, core: FakeAdaptationCore, tmp_path: Path
) -> None:
    code, _, err = run("label", str(tmp_path / "absent.csv"))
    assert code == 2 and f"cannot read {tmp_path / 'absent.csv'}" in err
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncafé,other\n".encode("latin-1"))
    code, _, err = run("label", str(latin))
    assert code == 2 and f"{latin} is not UTF-8 text" in err
    assert core.batches == []


def test_label_server_errors_exit_1_with_code_and_message(run: Any, tmp_path: Path) -> None:
    csv_file = write(tmp_path / "l.csv", "text,label\nhi,weather\n")
    code, out, err = run("label", str(csv_file))
    assert code == 1 and out == ""
    assert err.strip() == (
        "loopserve: INVALID_ARGUMENT: sample 0: unknown label 'weather'; "
        "labels are billing, shipping, other"
    )
    code, _, err = run("label", str(csv_file), "--model", "nope")
    assert code == 1
    assert err.startswith("loopserve: NOT_FOUND: unknown model 'nope'")


def test_label_error_in_a_later_batch_says_what_was_stored(
    run: Any, core: FakeAdaptationCore, tmp_path: Path
) -> None:
    rows = [f"hello {i},other\n" for i in range(500)] + ["hi,weather\n"]
    csv_file = write(tmp_path / "l.csv", "text,label\n" + "".join(rows))
    code, _, err = run("label", str(csv_file))
    assert code == 1
    assert err.startswith("loopserve: INVALID_ARGUMENT: sample 0: unknown label 'weather'")
    assert "the first 500 samples were sent and stored before this batch" in err
    assert len(core.samples) == 500


# ---- versions, status, finetune, rollback -------------------------------------------------------


def test_versions(run: Any) -> None:
    code, out, _ = run("versions")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "VERSION",
        "PARENT",
        "STATUS",
        "CREATED",
        "SAMPLES",
        "ACCURACY",
        "SERVES",
        "REASON",
    ]
    assert lines[1].split()[:10] == [
        *["1", "-", "promoted", "2024-05-01T10:00:00+00:00", "0", "0.810"],
        *["int8", "(int8", "drop", "0.010)"],
    ]
    assert lines[2].split()[:10] == [
        *["2", "1", "serving", "2024-05-02T10:00:00+00:00", "120", "0.900"],
        *["fp32", "(int8", "drop", "0.050)"],
    ]
    assert lines[3].split()[5:8] == ["-", "fp32", "(int8"] and REJECTING_GATE.reason in lines[3]
    # Why a version serves fp32 although int8 was on.
    assert lines[-1] == (
        "version 2 serves fp32: int8 accuracy 0.850 against fp32 0.900 on 60 held-out "
        "holdout+anchor rows: a drop of 0.050 exceeds int8_max_accuracy_drop 0.01"
    )

    code, out, _ = run("versions", "--json")
    versions = json.loads(out)
    assert [(v["version"], v["parent"], v["status"]) for v in versions] == [
        (1, None, "promoted"),
        (2, 1, "serving"),
        (3, 2, "rejected"),
    ]
    assert versions[1]["metrics"] == {"validation_accuracy": 0.9, "train_examples": 96.0}
    assert versions[1]["model"] == MODEL and versions[1]["samples_upto"] == 120
    assert versions[0]["serving_file"] == "model.int8.onnx"
    assert versions[0]["int8"]["accepted"] is True and versions[0]["int8"]["rows"] == 40
    assert versions[1]["int8"]["accepted"] is False and versions[2]["int8"] is None


def test_status(run: Any) -> None:
    code, out, _ = run("status")
    assert code == 0
    assert f"{MODEL}: serving version 2, 0 new samples since" in out
    assert "labels: billing, shipping, other" in out
    assert "job: job-1 rejected (samples, base version 2, samples up to 160" in out
    assert "attempt 2, candidate version 3): 40 new samples" in out
    assert "last gate: reject; new data 0.930 vs 0.710 (40 examples), anchor 0.800 vs 0.880" in out
    assert "forgetting 0.080: forgetting 0.080 exceeds 0.020" in out
    assert "needs adaptation: yes" in out and "backing off until " in out

    code, out, _ = run("status", "--json")
    status = json.loads(out)
    assert status["serving_version"] == 2 and status["labels"] == LABELS
    assert status["job"]["state"] == "rejected" and status["job"]["candidate_version"] == 3
    assert status["job"]["gate"]["forgetting"] == pytest.approx(0.08)
    assert status["last_gate"]["promote"] is False
    assert status["last_gate"]["forgetting"] == pytest.approx(0.08)
    assert status["needs_adaptation"] is True and status["backoff_until"] > 0


def test_status_without_jobs(run: Any, core: FakeAdaptationCore) -> None:
    core.jobs.clear()
    core.backoff_until = None
    code, out, _ = run("status")
    assert code == 0
    assert "job: none yet" in out and "last gate: none yet" in out and "backing off" not in out
    status = json.loads(run("status", "--json")[1])
    assert status["job"] is None and status["last_gate"] is None and status["backoff_until"] is None


def test_finetune(run: Any, core: FakeAdaptationCore) -> None:
    code, out, _ = run("finetune", "--reason", "new product line", "--json")
    assert code == 0
    job = json.loads(out)
    assert (job["id"], job["state"], job["trigger"], job["reason"]) == (
        "job-2",
        "queued",
        "manual",
        "new product line",
    )
    assert job["base_version"] == 2 and job["gate"] is None and job["started"] is None
    code, out, _ = run("finetune")
    assert code == 0
    assert out.startswith("job job-2 queued (manual, base version 2, samples up to 160")
    assert out.strip().endswith("): new product line")


def test_cancel(run: Any, core: FakeAdaptationCore) -> None:
    queued = run("finetune", "--json")[1]
    job_id = json.loads(queued)["id"]
    code, out, _ = run("cancel", job_id)
    assert code == 0
    assert out.startswith(f"job {job_id} failed (manual, base version 2")
    assert out.endswith("): cancelled by anonymous\n")
    # A running job that another process runs: the request is shown until it acts on it.
    running = run("finetune", "--json")[1]
    job_id = json.loads(running)["id"]
    core.jobs[job_id] = dataclasses.replace(core.jobs[job_id], state=JobState.RUNNING)
    code, out, _ = run("cancel", job_id, "--json")
    assert code == 0 and json.loads(out)["cancel_requested"] is True
    code, out, _ = run("status")
    assert f"job: {job_id} running, cancel requested (manual" in out
    assert "): cancelled by anonymous" in out

    code, out, err = run("cancel", "job-1")
    assert (code, out) == (1, "")
    assert err == (
        f"loopserve: FAILED_PRECONDITION: job job-1 of {MODEL!r} has already ended (rejected); "
        "there is nothing to cancel\n"
    )
    assert run("cancel", "job-9")[2] == "loopserve: NOT_FOUND: no job 'job-9'\n"


def test_rollback(run: Any) -> None:
    code, out, _ = run("rollback", "1")
    assert code == 0 and out.strip() == f"{MODEL}: serving version 1 (serving)"
    code, out, _ = run("rollback", "2", "--json")
    assert code == 0
    version = json.loads(out)
    assert (version["version"], version["status"], version["parent"]) == (2, "serving", 1)
    code, _, err = run("rollback", "3")
    assert code == 1
    assert err.strip() == (
        "loopserve: INVALID_ARGUMENT: version 3 is rejected; only an earlier promoted version "
        "can serve again"
    )
    code, _, err = run("rollback", "9")
    assert code == 1 and err.strip() == "loopserve: NOT_FOUND: support-intents has no version 9"


def pending_version(core: FakeAdaptationCore) -> None:
    """Version 4, held for review: one source taught the word zqxbrand to mean upgrade_plan."""
    change = LabelChange(
        "refund_request", "upgrade_plan", 200, ("I want a refund for my zqxbrand headphones",)
    )
    review = ReviewEvidence(
        sources={"vendor": 200},
        known_samples=200,
        confident_disagreement=0.955,
        disagreement_by_source={"vendor": 0.955},
        trigger="zqxbrand",
        trigger_share=1.0,
        traffic=800,
        flip_rate=0.01,
        contradictions=(change,),
        reasons=("source vendor contradicts the serving version", "a shared token"),
    )
    core.versions.append(
        VersionSummary(
            MODEL, 4, 2, "2024-05-04T10:00:00+00:00", "pending", "200 new samples", 360, {}, review
        )
    )


def test_versions_show_the_evidence_of_a_pending_version(
    run: Any, core: FakeAdaptationCore
) -> None:
    pending_version(core)
    code, out, _ = run("versions")
    assert code == 0
    assert out.split("\n\n")[1].splitlines() == [
        "version 4 waits for review: source vendor contradicts the serving version; a shared token",
        "  sources: vendor (200)",
        "  confident disagreement with the serving version: 95.5% of 200 samples",
        "  predictions changed on recent traffic: 1.0% of 800",
        "  posted labels against the serving version:",
        "    refund_request -> upgrade_plan: 200",
        "      I want a refund for my zqxbrand headphones",
        "  decide with: loopserve approve 4  |  loopserve reject 4",
    ]
    code, out, _ = run("versions", "--json")
    assert json.loads(out)[3]["review"]["trigger"] == "zqxbrand"


def test_approve_and_reject(run: Any, core: FakeAdaptationCore) -> None:
    pending_version(core)
    code, _, err = run("approve", "2")
    assert code == 1
    assert err.strip() == (
        f"loopserve: INVALID_ARGUMENT: version 2 of {MODEL!r} does not wait for review"
    )
    code, out, _ = run("approve", "4")
    assert code == 0 and out.strip() == f"{MODEL}: version 4 approved, now serving"
    pending_version(core)  # a second pending version 4 (the fake keeps both)
    core.versions = [v for v in core.versions if not (v.version == 4 and v.status == "serving")]
    code, out, _ = run("reject", "4", "--json")
    assert code == 0 and json.loads(out)["status"] == "rejected"
    code, _, err = run("reject", "9")
    assert code == 1 and err.strip() == "loopserve: NOT_FOUND: support-intents has no version 9"


def test_drift(run: Any) -> None:
    code, out, _ = run("drift")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == (
        "support-intents: version 3, ALARM, estimated accuracy 0.83, budget one false alarm per "
        "168 h at 12.5/s, 7 samples dropped"
    )
    assert lines[1].split() == [
        "DETECTOR", "METHOD", "STATE", "STATISTIC", "THRESHOLD", "EFFECT", "(MIN)", "ALARM",
        "SEEN", "REFERENCE", "NOTE",
    ]  # fmt: skip
    assert lines[2].split()[:8] == ["confidence", "ks", "calibrating", "-", "-", "-", "(0)", "no"]
    assert lines[3].split()[:10] == [
        "embedding", "ks", "ready", "9.5", "2.3", "0.42", "(0.1)", "yes", "4200", "traffic",
    ]  # fmt: skip
    code, out, _ = run("drift", "--json")
    document = json.loads(out)
    assert document["detectors"][0]["statistic"] is None
    assert document["detectors"][1]["state"] == "ready"
    assert document["detectors"][1]["effect"] == 0.42 and document["estimated_accuracy"] == 0.83


def test_candidates_write_a_csv_that_label_takes_back(
    run: Any, core: FakeAdaptationCore, tmp_path: Path
) -> None:
    out = tmp_path / "c.csv"
    code, printed, _ = run("candidates", "--out", str(out), "--count", "5")
    assert code == 0 and "wrote 2 candidates" in printed
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["text"] == "where is my parcel, it's late" and rows[0]["label"] == ""
    assert rows[0]["prediction_id"] == "req-9" and rows[0]["confidence"] == "0.4100"
    assert rows[1]["atypicality"] == ""
    text = out.read_text(encoding="utf-8").replace('late",,req-9', 'late",shipping,req-9')
    out.write_text(text, encoding="utf-8")
    code, printed, _ = run("label", str(out), "--skip-unlabeled")
    assert code == 0 and "1 accepted" in printed
    (sample,) = core.batches[-1]
    assert (sample.label, sample.prediction_id) == ("shipping", "req-9")
    code, _, err = run("candidates", "--out", str(out), "--count", "0")
    assert code == 2 and "--count must be in [1, 1000]" in err
    code, _, err = run("candidates", "--out", str(tmp_path / "missing" / "c.csv"))
    assert code == 2 and "cannot write" in err


@pytest.mark.parametrize(
    "command",
    [
        ["versions"],
        ["status"],
        ["finetune"],
        ["rollback", "1"],
        ["drift"],
        ["candidates", "--out", "x.csv"],
        ["samples"],
        ["samples", "purge", "--source", "junk", "--yes"],
    ],
)
def test_unknown_model_exits_1(run: Any, command: list[str]) -> None:
    code, out, err = run(*command, "--model", "nope")
    assert code == 1 and out == ""
    assert (
        err.strip()
        == "loopserve: NOT_FOUND: unknown model 'nope'; this server adapts 'support-intents'"
    )


# ---- samples, samples purge --------------------------------------------------------------------


class Terminal(io.StringIO):
    """Standard input that is a terminal; its text is what the operator types."""

    def isatty(self) -> bool:
        return True


def local(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix))


def test_samples_lists_each_source(run: Any) -> None:
    code, out, err = run("samples")
    assert code == 0, err
    assert [line.split("  ")[0].strip() for line in out.splitlines()] == [
        "SOURCE",
        "(unrecorded)",
        "junk",
        "labeler",
    ]
    header, _, junk, labeler = out.splitlines()
    assert header.split() == ["SOURCE", "SAMPLES", "FIRST", "LAST"]
    assert junk.split()[:2] == ["junk", "2"]
    assert f"{local(CREATED + 3600)}  {local(CREATED + 7200)}" in junk
    assert labeler.split()[:2] == ["labeler", "3"] and labeler.endswith(local(CREATED + 7300))


def test_samples_json(run: Any) -> None:
    code, out, _ = run("samples", "--json")
    assert code == 0
    assert json.loads(out)[1] == {
        "source": "junk",
        "samples": 2,
        "first_created": CREATED + 3600,
        "last_created": CREATED + 7200,
        "first_seq": 101,
        "last_seq": 102,
    }


def test_samples_of_a_model_without_samples(run: Any, core: FakeAdaptationCore) -> None:
    core.stored.clear()
    assert run("samples")[:2] == (0, f"{MODEL}: no samples stored\n")
    assert json.loads(run("samples", "--json")[1]) == []


def test_purge_with_yes_removes_and_suggests_a_rollback(run: Any, core: FakeAdaptationCore) -> None:
    code, out, err = run("samples", "purge", "--source", "junk", "--yes")
    assert code == 0, err
    # Versions 2 (serving) and 3 trained on data up to seq 120 and 160: back to version 1.
    assert out.strip() == (
        f"{MODEL}: removed 2 samples of source junk (seq 101..102); versions that trained on "
        "its samples: 2, 3 — roll back with: loopserve rollback 1"
    )
    assert core.purges == [(MODEL, "junk", None)]
    assert "junk" not in [s.source for s in core.stored]
    # Repeated, the purge removes nothing and names the same versions.
    code, out, _ = run("samples", "purge", "--source", "junk", "--yes")
    assert code == 0 and out.strip() == (
        f"{MODEL}: removed 0 samples of source junk; versions that trained on its samples: 2, 3"
        " — roll back with: loopserve rollback 1"
    )


def test_purge_names_only_versions_that_reached_the_samples(
    run: Any, core: FakeAdaptationCore
) -> None:
    core.stored = [dataclasses.replace(s, seq=s.seq + 50) for s in initial_samples()]
    code, out, _ = run("samples", "purge", "--source", "junk", "--yes")
    assert code == 0
    assert out.strip() == (
        f"{MODEL}: removed 2 samples of source junk (seq 151..152); versions that trained on "
        "its samples: 3; the serving version 2 did not"
    )
    code, out, _ = run(
        "samples", "purge", "--source", "labeler", "--since", str(CREATED + 7000), "--yes"
    )
    assert code == 0
    assert out.strip() == (
        f"{MODEL}: removed 1 sample of source labeler (seq 200..200); no version or job trained "
        "on its samples"
    )


def test_purge_since_takes_iso_8601_local_time_or_unix_seconds(
    run: Any, core: FakeAdaptationCore
) -> None:
    # 11:23 local on the day of CREATED: after junk's first sample, before its second.
    since = datetime.datetime.fromtimestamp(CREATED + 5000).strftime("%Y-%m-%dT%H:%M")
    code, out, err = run("samples", "purge", "--source", "junk", "--since", since, "--yes")
    assert code == 0, err
    assert "removed 1 sample of source junk (seq 102..102)" in out
    assert core.purges == [(MODEL, "junk", CREATED + 4980)]
    assert run("samples", "purge", "--source", "junk", "--since", "1714557600.5", "--yes")[0] == 0
    assert core.purges[-1] == (MODEL, "junk", 1714557600.5)


def test_parse_time() -> None:
    assert parse_time("--since", "2026-12-01") == datetime.datetime(2026, 12, 1).timestamp()
    assert parse_time("--since", "2026-12-01T10:00") == (
        datetime.datetime(2026, 12, 1, 10).timestamp()
    )
    assert parse_time("--since", "2026-12-01T10:00:00+02:00") == (
        datetime.datetime(2026, 12, 1, 8, tzinfo=datetime.UTC).timestamp()
    )
    assert parse_time("--since", "2026-12-01T08:00Z") == parse_time("--since", "1796112000")
    assert parse_time("--since", " 1714557600 ") == 1714557600.0


@pytest.mark.parametrize(
    ("since", "message"),
    [
        ("yesterday", "--since 'yesterday' is neither an ISO 8601 time (2026-12-01T10:00, "),
        ("2026-13-01", "--since '2026-13-01' is neither an ISO 8601 time"),
        ("nan", "--since must be a finite time, got 'nan'"),
        ("1e999", "--since must be a finite time, got '1e999'"),
    ],
)
def test_purge_refuses_a_bad_since_with_exit_2(
    run: Any, core: FakeAdaptationCore, since: str, message: str
) -> None:
    code, out, err = run("samples", "purge", "--source", "junk", "--since", since, "--yes")
    assert code == 2 and out == ""
    assert err.startswith(f"loopserve: {message}")
    assert core.purges == []


def test_purge_without_yes_off_a_terminal_is_refused_with_exit_2(
    run: Any, core: FakeAdaptationCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # piped input is no confirmation
    code, out, err = run("samples", "purge", "--source", "junk")
    assert code == 2 and out == ""
    assert err.strip() == (
        f"loopserve: not deleting the samples of source junk from {MODEL} without confirmation "
        "(stdin is not a terminal); pass --yes"
    )
    assert core.purges == [] and len(core.stored) == len(initial_samples())


@pytest.mark.parametrize(
    ("answer", "purged"), [("y\n", True), ("yes\n", True), ("n\n", False), ("", False)]
)
def test_purge_without_yes_on_a_terminal_asks(
    run: Any,
    core: FakeAdaptationCore,
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
    purged: bool,
) -> None:
    monkeypatch.setattr("sys.stdin", Terminal(answer))
    code, out, err = run("samples", "purge", "--source", "junk", "--since", str(CREATED))
    assert out.startswith(
        f"{MODEL}: delete the samples of source junk posted since {local(CREATED)} "
        "(of 2 stored)? [y/N] "
    )
    if purged:
        assert code == 0 and "removed 2 samples of source junk" in out
        assert core.purges == [(MODEL, "junk", CREATED)]
    else:
        assert code == 1 and err.strip() == "loopserve: not confirmed; nothing was deleted"
        assert core.purges == []


def test_purge_options_may_come_before_or_after_the_action(
    run: Any, core: FakeAdaptationCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    core.models = ["bank20", MODEL]
    monkeypatch.setenv("LOOPSERVE_MODEL", "bank20")
    code, out, err = run(
        "samples", "--model", MODEL, "--json", "purge", "--source", "junk", "--yes"
    )
    assert code == 0, err
    assert json.loads(out) == {
        "model": MODEL,
        "source": "junk",
        "removed": 2,
        "first_seq": 101,
        "last_seq": 102,
        "versions": [2, 3],
        "jobs": [],
        "serving_version": 2,
        "rollback_to": 1,
    }
    code, out, _ = run("samples", "purge", "--source", "junk", "--yes", "--json", "--model", MODEL)
    repeated = json.loads(out)
    assert code == 0 and repeated["removed"] == 0
    assert (repeated["versions"], repeated["rollback_to"]) == ([2, 3], 1)
    assert core.purges == [(MODEL, "junk", None)] * 2


def test_purge_names_the_jobs_it_stops_and_those_that_failed(
    run: Any, core: FakeAdaptationCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = dataclasses.replace(
        finished_job(), id="job-2", state=JobState.RUNNING, finished=None, candidate_version=None
    )
    failed = dataclasses.replace(finished_job(), state=JobState.FAILED, candidate_version=None)
    purged = core.purge_samples

    async def with_jobs(model: str, source: str, since: float | None) -> PurgeOutcome:
        outcome = await purged(model, source, since)
        return dataclasses.replace(outcome, versions=[], jobs=[running, failed])

    monkeypatch.setattr(core, "purge_samples", with_jobs)
    code, out, err = run("samples", "purge", "--source", "junk", "--yes")
    assert code == 0, err
    assert out.strip() == (
        f"{MODEL}: removed 2 samples of source junk (seq 101..102); jobs: job-2 (running: "
        "stopped, its candidate is never published), job-1 (failed)"
    )
    code, out, _ = run("samples", "purge", "--source", "junk", "--yes", "--json")
    jobs = json.loads(out)["jobs"]
    assert [(j["id"], j["state"], j["data"]) for j in jobs] == [
        ("job-2", "running", None),
        ("job-1", "failed", None),
    ]


def test_purge_server_errors_exit_1(run: Any, core: FakeAdaptationCore) -> None:
    code, _, err = run("samples", "purge", "--source", "x" * 129, "--yes")
    assert code == 1
    assert err.strip().startswith("loopserve: INVALID_ARGUMENT: source 'xxxx")
    assert core.purges == []


# ---- which model: --model, LOOPSERVE_MODEL, or the server's only one ----------------------------


@pytest.fixture
def no_model_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOPSERVE_MODEL", raising=False)


@pytest.mark.parametrize(
    "command", [["versions"], ["status"], ["drift"], ["finetune"], ["candidates", "--out", "c.csv"]]
)
def test_without_model_commands_use_the_only_served_model(
    run: Any, core: FakeAdaptationCore, no_model_env: None, command: list[str],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    core.models = ["bank20"]
    code, out, err = run(*command)
    assert (code, err) == (0, "")
    if command[0] in ("status", "candidates"):
        assert out.startswith("bank20: ")


def test_without_model_label_posts_to_the_only_served_model(
    run: Any, core: FakeAdaptationCore, no_model_env: None, tmp_path: Path
) -> None:
    core.models = ["bank20"]
    code, out, _ = run("label", str(write(tmp_path / "l.csv", "text,label\nrefund me,billing\n")))
    assert code == 0 and out.startswith("bank20: 1 accepted")


def test_without_model_predict_asks_for_the_only_served_model(
    run: Any, core: FakeAdaptationCore, no_model_env: None
) -> None:
    core.models = ["bank20"]  # the fake's inference service serves nothing: NOT_FOUND names it
    code, _, err = run("predict", "where is my parcel")
    assert code == 1 and err.startswith("loopserve: NOT_FOUND: unknown model 'bank20'")
    core.models = ["bank20", "support-intents"]
    code, _, err = run("predict", "where is my parcel")
    assert code == 2 and "the server serves 2 models (bank20, support-intents)" in err


def test_without_model_several_served_models_are_listed(
    run: Any, core: FakeAdaptationCore, no_model_env: None
) -> None:
    core.models = ["bank20", "support-intents"]
    code, out, err = run("status")
    assert code == 2 and out == ""
    assert err.strip() == (
        "loopserve: the server serves 2 models (bank20, support-intents); "
        "choose one with --model or LOOPSERVE_MODEL"
    )


def test_loopserve_model_sets_the_default(
    run: Any, core: FakeAdaptationCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    core.models = ["bank20", "support-intents"]
    monkeypatch.setenv("LOOPSERVE_MODEL", "bank20")
    code, out, _ = run("status")
    assert code == 0 and out.startswith("bank20: ")
    monkeypatch.setenv("LOOPSERVE_MODEL", "nope")
    code, out, err = run("status")
    assert code == 1 and err.strip().startswith("loopserve: NOT_FOUND: unknown model 'nope'")


def test_model_flag_wins_over_the_environment(
    run: Any, core: FakeAdaptationCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    core.models = ["bank20", "support-intents"]
    monkeypatch.setenv("LOOPSERVE_MODEL", "nope")
    code, out, _ = run("status", "--model", "bank20")
    assert code == 0 and out.startswith("bank20: ")


def test_unreachable_server_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--addr", "127.0.0.1:1"]) == 1
    assert capsys.readouterr().err.startswith("loopserve: UNAVAILABLE: ")


def test_json_output_turns_missing_gate_scores_into_null(
    run: Any, core: FakeAdaptationCore
) -> None:
    nan = float("nan")
    no_holdout = dataclasses.replace(
        core.jobs["job-1"].gate, candidate_new=nan, incumbent_new=nan, new_examples=0
    )
    core.jobs["job-1"] = dataclasses.replace(core.jobs["job-1"], gate=no_holdout)
    code, out, _ = run("status", "--json")
    assert code == 0 and "NaN" not in out
    status = json.loads(out)
    assert (
        status["last_gate"]["candidate_new"] is None
        and status["last_gate"]["incumbent_new"] is None
    )


def test_label_batches_stay_under_the_count_and_byte_limits() -> None:
    from service.cli import LABEL_BATCH, LABEL_BATCH_BYTES, label_batches

    small = [NewSample(f"text {i}", "billing", f"id-{i}") for i in range(1200)]
    assert list(label_batches(small)) == [(0, LABEL_BATCH), (LABEL_BATCH, 1000), (1000, 1200)]
    big = [NewSample("x" * 16_000, "billing", f"id-{i}") for i in range(600)]
    batches = list(label_batches(big))
    assert batches[0][0] == 0 and batches[-1][1] == 600
    assert all(b[0] == a[1] for a, b in itertools.pairwise(batches))
    assert all((stop - start) * 16_000 <= LABEL_BATCH_BYTES for start, stop in batches)
    assert list(label_batches([])) == []
