"""Fitted detectors saved in the work dir, so a restart does not recalibrate.

A file is named by the model, version, detector and a digest of the settings that shape the
calibration; settings that only change queueing or alarm rules are left out of the digest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from dataclasses import asdict
from pathlib import Path

from service.config import DriftRecipe
from service.drift._contract import Detector

log = logging.getLogger(__name__)


# Settings that change how observations are queued or alarms are raised and cleared, not the
# calibration itself: changing the budget must not cost a recalibration.
NOT_CALIBRATION = frozenset(
    {
        "queue_size", "candidate_pool_size", "candidate_pool_bytes", "worker_threads",
        "worker_nice", "clear_after", "false_alarm_every_hours", "traffic_rate",
        "sustain_windows", "min_effect_embedding", "min_effect_confidence", "min_effect_labels",
        "accuracy_window",
    }
)  # fmt: skip


# Part of every file's digest: a new format makes the files of the old one unused (recalibrated)
# rather than loaded into code that no longer reads them. 2: the windowed tests keep their
# reference values, not alibi-detect objects. 3: the KS tests keep theirs sorted per feature.
FORMAT = 3


def saved_path(
    drift_dir: Path, model: str, version: int, detector: str, recipe: DriftRecipe
) -> Path:
    config = json.dumps(
        {k: v for k, v in asdict(recipe).items() if k not in NOT_CALIBRATION}, sort_keys=True
    )
    digest = hashlib.sha256(f"{detector}:{FORMAT}:{config}".encode()).hexdigest()[:12]
    return drift_dir / model / f"v{version}-{detector}-{digest}.pkl"


def load_detector(path: Path) -> Detector | None:
    """The fitted detector saved at ``path``; None when there is none or it is unreadable."""
    if not path.is_file():
        return None
    try:
        with path.open("rb") as handle:
            detector = pickle.load(handle)  # our own file in the state dir
    except Exception:  # a damaged file is recalibrated, not fatal
        log.warning("ignoring unreadable drift calibration %s", path, exc_info=True)
        return None
    return detector if getattr(detector, "fitted", False) else None


def save_detector(path: Path, detector: Detector) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as handle:
            pickle.dump(detector, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except Exception:  # only costs a recalibration after a restart
        log.warning("could not save drift calibration %s", path, exc_info=True)
