"""Rows as both backends store them: posted samples (with their content's key), and jobs (one
column per :class:`Job` field, the gate as JSON)."""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from service.domain.loop import GateResult, Job, JobState, NewSample, content_key, derived_sample_id
from service.domain.provenance import PurgeRecord, TrainingData, first_removing, purged_message
from service.errors import DataPurged, InvalidInput, quote

JOB_FIELDS = tuple(f.name for f in dataclasses.fields(Job))
JOB_COLUMNS = ", ".join(f'"{name}"' for name in JOB_FIELDS)
UPDATABLE = frozenset(JOB_FIELDS) - {"id"}
UNFINISHED = (JobState.QUEUED.value, JobState.RUNNING.value)
SAMPLE_COLUMNS = "model, id, text, label, prediction_id, created, seq, source"


@dataclass(frozen=True)
class SampleRow:
    """A posted sample as it is stored: its id (the caller's, else assigned) and the row's
    text, which for a sample of content is the key its bytes are stored under."""

    id: str
    text: str
    sample: NewSample

    @staticmethod
    def of(sample: NewSample) -> SampleRow:
        """Without a caller's id, a text gets a fresh one and content one derived from its key
        and label, so that the same file posted again with the same label is a duplicate."""
        if not sample.data:
            return SampleRow(sample.id or uuid.uuid4().hex, sample.text, sample)
        key = content_key(sample.data)
        return SampleRow(sample.id or derived_sample_id(key, sample.label), key, sample)

    @property
    def content(self) -> tuple[str, str]:
        """What a repeat of the id must match to be a duplicate."""
        return self.text, self.sample.label


def conflict(model: str, row: SampleRow, where: str) -> InvalidInput:
    """The refusal of a batch that posts a stored (or earlier posted) id with other content."""
    what = "content" if row.sample.data else "text"
    return InvalidInput(
        f"sample id {quote(row.id)} of model {quote(model)} is {where} with a different {what}"
        " or label; nothing from this batch was stored"
    )


def check_updatable(changes: dict[str, Any]) -> dict[str, Any]:
    """The column values of ``changes``; ValueError for a field that cannot change."""
    unknown = sorted(set(changes) - UPDATABLE)
    if unknown:
        raise ValueError(f"cannot update job field(s) {', '.join(unknown)}")
    return {name: to_column(name, value) for name, value in changes.items()}


def to_column(name: str, value: Any) -> Any:
    if name == "state":
        return JobState(value).value  # a str outside the enum raises ValueError here
    if name == "gate":
        if value is None:
            return None
        if not isinstance(value, GateResult):
            raise TypeError(f"gate must be a GateResult or None, not {type(value).__name__}")
        return json.dumps(dataclasses.asdict(value), sort_keys=True)
    if name == "data":
        if value is None:
            return None
        if not isinstance(value, TrainingData):
            raise TypeError(f"data must be TrainingData or None, not {type(value).__name__}")
        return json.dumps(value.to_dict(), sort_keys=True)
    return value


def update_statement(columns: dict[str, Any], placeholder: str) -> str:
    """The UPDATE of a job row's ``columns`` (then its id), in the backend's parameter style."""
    assignments = ", ".join(f'"{name}" = {placeholder}' for name in columns)
    return f"UPDATE jobs SET {assignments} WHERE id = {placeholder}"


def cancel_changes(job: Job, error: str) -> dict[str, Any] | None:
    """What recording an operator's cancellation changes in ``job``'s row (see
    ``JobStore.request_cancel``); None when the job has ended."""
    if job.state is JobState.QUEUED:  # no runner has it: nothing to wait for
        return {"state": JobState.FAILED.value, "finished": time.time(), "error": error}
    if job.state is JobState.RUNNING:
        return {"error": error}
    return None


def new_job(
    model: str, trigger: str, reason: str, base_version: int, samples_upto: int, attempt: int
) -> Job:
    """A QUEUED job with a fresh id, as both backends create it."""
    return Job(
        id=f"job-{secrets.token_hex(6)}",
        model=model,
        state=JobState.QUEUED,
        trigger=trigger,
        reason=reason,
        base_version=base_version,
        samples_upto=samples_upto,
        created=time.time(),
        attempt=attempt,
    )


def job_columns(job: Job) -> list[Any]:
    return [to_column(name, getattr(job, name)) for name in JOB_FIELDS]


def job_from_row(row: Sequence[Any]) -> Job:
    fields = dict(zip(JOB_FIELDS, row, strict=True))
    fields["state"] = JobState(fields["state"])
    if fields["gate"] is not None:
        fields["gate"] = GateResult(**json.loads(fields["gate"]))
    if fields["data"] is not None:
        fields["data"] = TrainingData.from_dict(json.loads(fields["data"]))
    return Job(**fields)


PURGE_COLUMNS = "model, source, since, removed, first_seq, last_seq, purged"
PURGE_ROW = f"{PURGE_COLUMNS}, n"  # n: assigned by the database


def purge_from_row(row: Sequence[Any]) -> PurgeRecord:
    return PurgeRecord(*row)


def trained_on(jobs: Sequence[Job], source: str, since: float | None) -> list[Job]:
    """The jobs whose data included ``source``'s samples (posted at or after ``since``) and
    that made no version (a version is named by its own record), newest first."""
    return [
        job
        for job in jobs
        if job.data is not None
        and job.data.includes(source, since)
        and (not job.state.finished or job.candidate_version is None)
    ]


def refuse_purged(job: Job, purges: Sequence[PurgeRecord]) -> None:
    """Raise DataPurged when one of ``purges`` deleted samples ``job`` trained or gated on."""
    purge = first_removing(job.data, purges)
    if purge is not None:
        raise DataPurged(purged_message(job.id, purge))
