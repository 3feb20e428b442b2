"""A toy third task, registered only by the tests that use it: vector classification.

Its input is ``vector``, FP32 ``[n, 3]``; a labeled sample is a text of three comma-separated
numbers; ``loopserve predict`` takes arguments such as ``1,0,0`` and ``loopserve label`` a
``vector,label`` CSV. This module is its training module too (``Task.training`` names it): the
first version is an ONNX graph built directly, without torch, that labels a vector by its
largest coordinate ("x", "y" or "z"). Nothing outside this file knows the task.
"""

from __future__ import annotations

import csv
import hashlib
import math
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from service import tasks
from service.config import ModelDefinition, load_model_definition, read_labeled_csv
from service.domain.finetune import FineTuneSpec
from service.domain.loop import NewSample
from service.domain.versions import VersionMeta
from service.errors import ConfigError, InvalidInput
from service.registry import ModelRegistry, VersionInfo
from service.runtime import FeedGroup
from service.tasks import csv_header
from service.types import Tensor, TensorSpec

NAME = "vector-classification"
INPUT = "vector"
ONNX_INPUT = "features"
DIM = 3
LABELS = ("x", "y", "z")
MAX_VECTORS = 16


def parse_vector(text: str) -> list[float]:
    """``text``'s numbers; InvalidInput unless they are DIM finite numbers."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise InvalidInput(f"{text[:40]!r} is not {DIM} comma-separated numbers") from None
    if len(values) != DIM or not all(math.isfinite(v) for v in values):
        raise InvalidInput(f"{text[:40]!r} is not {DIM} finite comma-separated numbers")
    return values


# --- the serving side -----------------------------------------------------------------------------


class VectorInputs:
    decode_in_thread = False
    content_samples = False
    limits = tasks.RequestLimits(MAX_VECTORS, 0, max_tensor_elements=MAX_VECTORS * DIM)

    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec(INPUT, "FP32", (-1, DIM))]

    def decode(self, inputs: list[Tensor]) -> list[Any]:
        hint = f"send one input tensor named {INPUT!r}, FP32 [n,{DIM}]"
        if len(inputs) != 1 or inputs[0].name != INPUT:
            raise InvalidInput(f"got input tensor(s) {[t.name for t in inputs]}; {hint}")
        array = np.asarray(inputs[0].data)
        if inputs[0].datatype != "FP32" or array.ndim != 2 or array.shape[1] != DIM:
            raise InvalidInput(
                f"input {INPUT!r} is {inputs[0].datatype} {list(array.shape)}; {hint}"
            )
        if len(array) == 0:
            raise InvalidInput(f"input {INPUT!r} holds no vectors; {hint} with n >= 1")
        if len(array) > MAX_VECTORS:
            raise InvalidInput(f"input {INPUT!r} holds {len(array)} vectors; at most {MAX_VECTORS}")
        return list(array)

    def validate_sample(self, index: int, sample: NewSample) -> None:
        if sample.data:
            raise InvalidInput(f"sample[{index}] has content bytes; send the vector as its text")
        if not sample.text:
            raise InvalidInput(f"sample[{index}] has no vector")
        try:
            parse_vector(sample.text)
        except InvalidInput as exc:
            raise InvalidInput(f"sample[{index}]: {exc}") from None

    def payloads(self, inputs: list[Tensor], items: list[Any]) -> Sequence[str | bytes]:
        return [",".join(f"{v:g}" for v in item) for item in items]


class VectorFeeds:
    def groups(self, items: Sequence[Any]) -> list[FeedGroup]:
        return [FeedGroup(list(range(len(items))), {ONNX_INPUT: np.stack(list(items))})]

    def warmup_items(self) -> list[Any]:
        return [np.ones(DIM, dtype=np.float32)] * 2

    def properties(self) -> dict[str, str]:
        return {"dim": str(DIM)}


class VectorTask:
    name = NAME
    training = __name__

    def input_contract(self, definition: ModelDefinition) -> VectorInputs:
        return VectorInputs()

    def version_inputs(self, definition: ModelDefinition) -> dict[str, Any]:
        return {}

    def seed_samples(self, definition: ModelDefinition) -> Iterator[NewSample]:
        for vector, label in read_labeled_csv(definition.seed_path, INPUT):
            yield NewSample(vector, label)

    def job_backbone(self, definition: ModelDefinition, meta: VersionMeta) -> str:
        return ""

    def preprocessor(self, version_dir: Path, meta: VersionMeta) -> VectorFeeds:
        return VectorFeeds()

    def client(self) -> VectorClient:
        return VectorClient()


# --- the client side ------------------------------------------------------------------------------


class VectorClient:
    help = tasks.ClientHelp(
        option="vector",
        data="for --task vector a vector,label CSV",
        inputs="vectors",
        arguments="for a vector model, comma-separated numbers",
        labels="for a vector model a CSV vector,label",
    )
    argument = "vector"
    report_each = False
    per_request = 0
    noun = "vectors"

    def request(self, items: Sequence[tasks.ClientItem]) -> Tensor:
        rows = [np.frombuffer(item.value, dtype=np.float32) for item in items]
        return Tensor.from_array(INPUT, np.stack(rows))

    def predict_inputs(self, arguments: Sequence[str]) -> tasks.ClientInputs:
        """Numbers only: the server checks the dimension."""
        items = []
        for argument in arguments:
            try:
                values = [float(part) for part in argument.split(",")]
            except ValueError:
                raise InvalidInput(f"{argument!r} is not comma-separated numbers") from None
            items.append(tasks.ClientItem(argument, np.asarray(values, np.float32).tobytes()))
        return tasks.ClientInputs(items, [])

    def recognises_file(self, path: Path) -> bool:
        return INPUT in csv_header(path)

    def read_labels(self, path: Path, skip_unlabeled: bool) -> tasks.LabeledInputs:
        """The server validates each vector."""
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [r for r in csv.DictReader(handle) if r["label"] or not skip_unlabeled]
        samples = [
            NewSample(
                r[INPUT], r["label"], _sample_id(r[INPUT], r["label"]), r.get("prediction_id") or ""
            )
            for r in rows
        ]
        return tasks.LabeledInputs([s.text for s in samples], samples, [], len(samples))

    def recognises_payloads(self, payloads: Sequence[str | bytes]) -> bool:
        return bool(payloads) and all(isinstance(p, str) and _is_vector(p) for p in payloads)

    def write_candidates(self, out: Path, payloads: Sequence[str | bytes]) -> tasks.CandidateColumn:
        cells = [str(p) for p in payloads]
        return tasks.CandidateColumn(INPUT, cells, cells)

    def create_definition(self, models_dir: Path, name: str, data: Path) -> ModelDefinition:
        directory = models_dir / name
        labels = sorted({label for _, label in read_labeled_csv(data, INPUT)})
        if len(labels) < 2:
            raise ConfigError(f"{data}: needs at least two labels, found {labels}")
        directory.mkdir(parents=True)
        shutil.copyfile(data, directory / "seed.csv")
        (directory / "model.toml").write_text(
            f'[model]\ntask = "{NAME}"\nseed_data = "seed.csv"\n'
            f"labels = [{', '.join(repr(label) for label in labels)}]\n\n[drift]\ndetectors = []\n",
            encoding="utf-8",
        )
        return load_model_definition(models_dir, name)

    def prepare_seed(self, definition: ModelDefinition) -> None:
        """Its seed CSV is part of the definition."""


def _sample_id(vector: str, label: str) -> str:
    return "vec-" + hashlib.sha256(f"{vector}\x1f{label}".encode()).hexdigest()[:24]


def _is_vector(text: str) -> bool:
    try:
        parse_vector(text)
    except InvalidInput:
        return False
    return True


# --- the training side (service.training.TaskTraining) --------------------------------------------


def build_first_version(
    definition: ModelDefinition, registry: ModelRegistry, progress: Any
) -> VersionInfo:
    """No training: the graph labels a vector by its largest coordinate."""
    with registry.stage(parent=None) as staged:
        _write_onnx(staged.path / "model.onnx")
        meta = VersionMeta(labels=LABELS, max_seq_length=0, task=NAME, inputs={})
        info = registry.publish(staged, meta)
    registry.set_current(info.version, expected=None)
    progress(f"published {definition.name} version {info.version}")
    return info


def train_candidate(spec: FineTuneSpec, log: Any) -> Any:
    raise NotImplementedError("the toy vector task does not fine-tune")


def _write_onnx(path: Path) -> None:
    """features [n, 3] -> L2-normalised (the embedding) -> x 10 -> softmax."""
    scale = numpy_helper.from_array(np.array(10.0, dtype=np.float32), "scale")
    nodes = [
        helper.make_node("ReduceL2", [ONNX_INPUT], ["norm"], keepdims=1, axes=[1]),
        helper.make_node("Div", [ONNX_INPUT, "norm"], ["embedding"]),
        helper.make_node("Mul", ["embedding", "scale"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "toy-vector",
        [helper.make_tensor_value_info(ONNX_INPUT, TensorProto.FLOAT, ["n", DIM])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", DIM]),
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", DIM]),
        ],
        [scale],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
