"""When to fine-tune: enough new labels, a drift alarm with enough labels since, a retry after a
failure, or an operator's request. One job per model; after a rejection or exhausted retries the
model backs off for ``backoff_seconds`` and then waits for fresh labels.

Labels count as new only when they are newer than both the serving version's data and the latest
job's: after a rollback the same labels would only build the rolled-back version again, so the
loop waits for ``min_new_samples`` labels beyond them instead of undoing the operator's rollback.

A labeling tool posts in bursts (a file is several AddSamples calls), so a job triggered by
labels waits until none has arrived for ``settle_seconds`` and trains on the whole burst, but
never waits longer than ``max_settle_seconds`` once it is due, so a steady stream cannot starve it.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.config import AdaptationRecipe
from service.domain.loop import Job, JobState

LABEL_TRIGGERS = ("samples", "drift")


@dataclass(frozen=True)
class PolicyInput:
    samples_since_last_job: int  # labels newer than the serving version's and the latest job's data
    samples_since_alarm: int  # labels since the drift alarm (0 when there is none)
    drift_alarm: bool
    latest_job: Job | None
    now: float


class TriggerPolicy:
    def __init__(self, recipe: AdaptationRecipe) -> None:
        self.recipe = recipe

    def backoff_until(self, latest: Job | None) -> float | None:
        if latest is None or latest.finished is None or not self._backs_off(latest):
            return None
        return latest.finished + self.recipe.backoff_seconds

    def decide(self, state: PolicyInput) -> str | None:
        """The trigger (``samples``, ``drift``, ``retry``) for a new job now, or None."""
        latest, r = state.latest_job, self.recipe
        if latest is not None and not latest.state.finished:
            return None
        if (
            latest is not None
            and latest.state is JobState.FAILED
            and latest.attempt <= r.max_retries
        ):
            return "retry"
        if latest is not None and self._backs_off(latest):
            until = self.backoff_until(latest)
            if until is not None and state.now < until:
                return None
            if state.samples_since_last_job < r.min_new_samples:
                return None
        if state.drift_alarm and state.samples_since_alarm >= r.drift_min_samples:
            return "drift"
        if state.samples_since_last_job >= r.min_new_samples:
            return "samples"
        return None

    def settle_delay(self, trigger: str, quiet_for: float, due_for: float) -> float:
        """Seconds to hold a due ``trigger`` back: labels arrived ``quiet_for`` seconds ago and
        the job has been due for ``due_for`` seconds. 0 means start now."""
        if trigger not in LABEL_TRIGGERS:
            return 0.0
        r = self.recipe
        wait = min(r.settle_seconds - quiet_for, r.max_settle_seconds - due_for)
        return max(wait, 0.0)

    def _backs_off(self, job: Job) -> bool:
        # A candidate waiting for review counts as rejected until approved: the same samples
        # would only build the same candidate again.
        return job.state in (JobState.REJECTED, JobState.PENDING) or (
            job.state is JobState.FAILED and job.attempt > self.recipe.max_retries
        )
