"""Every state-changing route of the console with the fields of a form it takes (the
csrf_token aside): what a token without the scope of the action is refused."""

from __future__ import annotations

from conftest import TINY_MODEL


def actions(model: str = TINY_MODEL) -> list[tuple[str, dict[str, str]]]:
    return [
        (f"/models/{model}/labels", {"prediction_id": "req-1", "label": "greeting"}),
        (f"/models/{model}/labels", {"min_confidence": "0"}),
        (f"/models/{model}/labels/some-id/delete", {}),
        (f"/models/{model}/rollback", {"version": "2"}),
        (f"/models/{model}/versions/2/approve", {}),
        (f"/models/{model}/versions/2/reject", {}),
        (f"/models/{model}/sources/ops/purge", {}),
        (f"/models/{model}/jobs/some-job/cancel", {}),
    ]
