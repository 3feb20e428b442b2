"""A fine-tune job's files: spec.json and result.json as the current server and job write them
load and are written back byte for byte; a result from an older job, or none at all, loads."""

from __future__ import annotations

from pathlib import Path

from service.domain.finetune import FineTuneRecipe, FineTuneResult, FineTuneSpec
from service.domain.gate import GateThresholds
from service.domain.versions import DEFAULT_SERVING_FILE, DataCounts

SPEC_JSON = (
    '{"model": "support", "backbone": "/models/encoder", "pooling": "mean", '
    '"max_seq_length": 64, "base_version": 2, "base_dir": "/state/versions/2", '
    '"base_serving_file": "model.onnx", "base_labels": ["greeting", "refund"], '
    '"labels": ["greeting", "refund"], "trainable_layers": 2, "train": [["hi there", '
    '"greeting"]], "validation": [], "holdout": [["money back", "refund"]], '
    '"anchor": [["hello", "greeting"]], "recipe": {"seed": 3, '
    '"learning_rate": 2e-05, "layer_lr_decay": 0.9, "head_learning_rate": 0.001, '
    '"epochs": 4, "batch_size": 16, "patience": 2, "balance_classes": true}, '
    '"gate": {"new_data_tolerance": 0.02, "max_forgetting": 0.01, '
    '"confidence_z": 1.64, "review": true, "review_confidence": 0.9, '
    '"max_confident_disagreement": 0.3, "review_min_samples": 20, '
    '"trigger_min_count": 10, "trigger_min_share": 0.5, '
    '"trigger_max_reference_share": 0.05, "max_flip_rate": 0.3}, "int8": true, '
    '"int8_max_accuracy_drop": 0.01, "threads": 2, "nice": 10, '
    '"staging_dir": "/state/staging/3", "result_path": "/state/jobs/j/result.json", '
    '"anchor_held_out": false, "idle_priority": true, '
    '"round_samples": [["money back", "refund", "labeler"]], '
    '"traffic": ["where is it"], "trusted": false, "task": "text-classification", '
    '"inputs_dir": "", "augment": [], "augment_views": 0}'
)

RESULT_JSON = """{
  "ok": true,
  "error": "",
  "traceback": "",
  "gate": {
    "candidate_new": 0.7,
    "incumbent_new": 0.72,
    "candidate_anchor": 0.91,
    "incumbent_anchor": 0.94,
    "new_examples": 12,
    "anchor_examples": 30,
    "promote": false,
    "reason": "forgets the anchor",
    "new_margin": 0.03,
    "anchor_margin": 0.015,
    "anchor_held_out": true
  },
  "serving_file": "model.int8.onnx",
  "labels": [
    "greeting",
    "refund"
  ],
  "train": {
    "head_only": {
      "accuracy": 0.8
    },
    "finetuned": null,
    "used_finetune": false,
    "seconds": 3.5,
    "history": [],
    "head_epochs": 0,
    "finetune_epochs": 0,
    "refit_examples": 0
  },
  "parity_max_abs_diff": 1e-06,
  "int8": {
    "fp32_accuracy": 0.9,
    "int8_accuracy": 0.8,
    "accepted": false,
    "drop": 0.1,
    "max_drop": 0.01,
    "rows": 30,
    "split": "holdout+anchor",
    "reason": "too large a drop"
  },
  "calibration": null,
  "data": {
    "train": 50,
    "validation": 0,
    "seed_rows": 0,
    "label_name_examples": 0,
    "holdout": 12,
    "anchor": 30
  },
  "seconds": 12.0,
  "review": null,
  "disk_full": false
}"""


def test_a_spec_loads_and_is_written_back_unchanged(tmp_path: Path) -> None:
    path, again = tmp_path / "spec.json", tmp_path / "again.json"
    path.write_text(SPEC_JSON, encoding="utf-8")
    spec = FineTuneSpec.load(path)
    assert spec.train == [("hi there", "greeting")] and spec.validation == []
    assert spec.round_samples == [("money back", "refund", "labeler")]
    assert spec.recipe == FineTuneRecipe(seed=3) and spec.gate == GateThresholds()
    spec.save(again)
    assert again.read_text(encoding="utf-8") == SPEC_JSON


def test_a_result_loads_and_is_written_back_unchanged(tmp_path: Path) -> None:
    path, again = tmp_path / "result.json", tmp_path / "again.json"
    path.write_text(RESULT_JSON, encoding="utf-8")
    result = FineTuneResult.load(path)
    assert result is not None and result.ok and result.serving_file == "model.int8.onnx"
    assert result.gate is not None and not result.gate.promote
    assert result.data == DataCounts(train=50, holdout=12, anchor=30) and result.review is None
    assert result.int8 is not None and not result.int8.accepted and result.calibration is None
    result.save(again)
    assert again.read_text(encoding="utf-8") == RESULT_JSON


def test_an_older_or_partial_result_loads_with_defaults(tmp_path: Path) -> None:
    result = FineTuneResult.from_dict({"error": "boom", "serving_file": None, "gate": {"x": 1}})
    assert not result.ok and result.error == "boom"
    assert result.serving_file == DEFAULT_SERVING_FILE and result.gate is None
    assert FineTuneResult.load(tmp_path / "missing.json") is None  # the job died first
