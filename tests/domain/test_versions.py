"""meta.json: what the current server writes loads and is written back byte for byte, and the
files older servers wrote load with their defaults, keeping the keys this server does not know."""

from __future__ import annotations

import json
import math

from service.domain.int8 import Int8Check
from service.domain.provenance import SeqRange
from service.domain.versions import (
    DEFAULT_SERVING_FILE,
    DEFAULT_TASK,
    Calibration,
    DataCounts,
    TrainingRecord,
    VersionMeta,
)

# A pending fine-tuned version's meta.json as ModelRegistry writes it (every record filled in,
# plus a key from a newer server).
META_JSON = """{
  "from_a_newer_server": {
    "kept": true
  },
  "labels": [
    "greeting",
    "refund"
  ],
  "max_seq_length": 64,
  "task": "text-classification",
  "inputs": {
    "max_text_bytes": 4096
  },
  "model": "support",
  "version": 3,
  "parent": 2,
  "created": "2026-12-07T05:30:00+00:00",
  "pooling": "mean",
  "backbone": "all-MiniLM-L6-v2",
  "trainable_layers": 2,
  "serving_file": "model.int8.onnx",
  "status": "pending",
  "reason": "waits for review",
  "job": "job-7",
  "samples_upto": 120,
  "trained_on": {
    "sources": [
      {
        "source": "labeler",
        "samples": 40,
        "first_created": 1765085400.5,
        "last_created": 1765085460.25,
        "seqs": [
          [
            1,
            30
          ],
          [
            41,
            50
          ]
        ]
      }
    ],
    "purges_seen": 1
  },
  "data": {
    "train": 30,
    "validation": 0,
    "seed_rows": 0,
    "label_name_examples": 0,
    "holdout": 8,
    "anchor": 20
  },
  "train": {
    "head_only": {
      "accuracy": 0.8
    },
    "finetuned": {
      "accuracy": 0.9
    },
    "used_finetune": true,
    "seconds": 12.5,
    "history": [
      {
        "epoch": 1.0,
        "loss": 0.4
      }
    ],
    "head_epochs": 3,
    "finetune_epochs": 2,
    "refit_examples": 0
  },
  "gate": {
    "candidate_new": 0.9,
    "incumbent_new": 0.85,
    "candidate_anchor": 0.95,
    "incumbent_anchor": 0.96,
    "new_examples": 8,
    "anchor_examples": 20,
    "promote": true,
    "reason": "better on new data",
    "new_margin": 0.01,
    "anchor_margin": 0.02,
    "anchor_held_out": false
  },
  "review": {
    "sources": {
      "labeler": 40
    },
    "trusted": false,
    "known_samples": 40,
    "confident_disagreement": 0.25,
    "disagreement_by_source": {
      "labeler": 0.25
    },
    "trigger": "cf",
    "trigger_share": 0.8,
    "cluster_share": 0.0,
    "cluster_reference_share": 0.0,
    "traffic": 0,
    "flip_rate": 0.0,
    "flip_trigger": "",
    "contradictions": [
      {
        "before": "greeting",
        "after": "refund",
        "count": 10,
        "examples": [
          "hi cf"
        ]
      }
    ],
    "flips": [],
    "other_holdout": 0,
    "other_candidate": 0.0,
    "other_incumbent": 0.0,
    "other_margin": 0.0,
    "reasons": [
      "a shared trigger token"
    ]
  },
  "int8": {
    "fp32_accuracy": 0.9,
    "int8_accuracy": 0.89,
    "accepted": true,
    "drop": 0.01,
    "max_drop": 0.02,
    "rows": 28,
    "split": "holdout+anchor",
    "reason": ""
  },
  "calibration": {
    "temperature": 1.5,
    "rows": 28,
    "accuracy": 0.9,
    "source": "holdout"
  },
  "metrics": {
    "accuracy": 0.9,
    "macro_f1": NaN
  },
  "digest": "sha256:abababababababababababababababababababababababababababababababab"
}
"""

# A first version's meta.json from before tasks, provenance, int8, calibration and digests.
OLD_META_JSON = """{
  "labels": ["greeting", "refund"],
  "max_seq_length": 64,
  "model": "support",
  "version": 1,
  "parent": null,
  "created": "2025-01-02T03:04:05+00:00",
  "backbone": "all-MiniLM-L6-v2",
  "serving_file": "",
  "job": null,
  "data": {"train": 40, "validation": 10, "seed_rows": 50},
  "train": {"head_only": {"accuracy": 0.8, "note": "n/a"}, "seconds": 3.5},
  "gate": {"promote": true},
  "calibration": {"temperature": 1.2, "rows": 10, "accuracy": 0.8},
  "metrics": {"accuracy": 0.8, "macro_f1": 0.75, "model": "n/a"}
}
"""


def written(meta: VersionMeta) -> str:
    return json.dumps(meta.to_dict(), indent=2) + "\n"  # as ModelRegistry writes it


def test_a_meta_json_of_this_server_loads_and_is_written_back_unchanged() -> None:
    meta = VersionMeta.from_dict(json.loads(META_JSON))
    assert written(meta) == META_JSON
    assert meta.labels == ("greeting", "refund") and meta.parent == 2
    assert meta.trained_on is not None
    assert meta.trained_on.sources[0].seqs == (SeqRange(1, 30), SeqRange(41, 50))
    assert meta.data == DataCounts(train=30, holdout=8, anchor=20)
    assert meta.gate is not None and meta.gate.promote and meta.gate.new_examples == 8
    assert meta.review is not None and meta.review.contradictions[0].examples == ("hi cf",)
    assert meta.int8 == Int8Check(0.9, 0.89, True, 0.01, 0.02, 28, "holdout+anchor", "")
    assert meta.calibration == Calibration(1.5, 28, 0.9, "holdout")
    assert meta.metrics["accuracy"] == 0.9 and math.isnan(meta.metrics["macro_f1"])
    assert meta.extra == {"from_a_newer_server": {"kept": True}}


def test_an_older_meta_json_loads_with_defaults() -> None:
    meta = VersionMeta.from_dict(json.loads(OLD_META_JSON))
    assert meta.task == DEFAULT_TASK and meta.serving_file == DEFAULT_SERVING_FILE
    assert meta.job == "" and meta.parent is None and meta.status == "promoted"
    assert meta.trained_on is None and meta.int8 is None and meta.digest == ""
    assert meta.data == DataCounts(train=40, validation=10, seed_rows=50)
    assert meta.train == TrainingRecord(head_only={"accuracy": 0.8}, seconds=3.5)
    assert meta.gate is None  # a record without its scores
    assert meta.calibration == Calibration(1.2, 10, 0.8, "")
    assert meta.metrics == {"accuracy": 0.8, "macro_f1": 0.75}  # numbers only
    assert meta.extra == {}


def test_malformed_records_read_as_none_or_as_their_defaults() -> None:
    meta = VersionMeta.from_dict(
        {
            "labels": ["a"],
            "data": {"train": "many"},
            "train": [1, 2],
            "int8": {"fp32_accuracy": "high"},
            "calibration": {"temperature": "warm", "rows": 3, "accuracy": 0.5},
            "trained_on": {"sources": "everything"},
        }
    )
    assert meta.data == DataCounts() and meta.train == TrainingRecord()
    assert meta.int8 is None and meta.calibration is None and meta.trained_on is None


def test_an_empty_file_is_the_oldest_defaults() -> None:
    meta = VersionMeta.from_dict({})
    assert meta.labels == () and meta.max_seq_length == 128 and meta.version == 0
