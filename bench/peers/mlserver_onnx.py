"""An MLServer runtime that serves a loopserve text-classification version (bench/serving.py's
peer server).

It runs in bench/.venv-mlserver, which has no ``service`` package (MLServer needs pydantic 2, the
project pins pydantic 1), so it repeats per batch what loopserve's text task and runtime do
(service/tasks/text/_encoder.py, service/runtime/_session.py) on the same files:

- one ``encode_batch`` with the version's tokenizer.json, truncated at meta.json's
  max_seq_length, unpadded;
- texts sorted by token count and cut into groups whose padding stays within 25 %;
- one ``session.run`` per group (one for a lone text) asking for the graph's probabilities and
  embedding, as loopserve's session does; the graph ends in the softmax, so none is added here;
- ONNX Runtime with loopserve's session options: intra-op threads and spinning as given, one
  inter-op thread, sequential execution, all graph optimizations.

It answers the label (BYTES, the most probable of meta.json's labels) and the probabilities
(FP32 ``[n, labels]``). ``predict`` runs on MLServer's event loop, as MLServer's own runtimes do
with ``parallel_workers = 0``: requests that arrive meanwhile wait in the adaptive batcher's
queue, so a batch holds what queued while the model ran, as loopserve's batcher takes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlserver
import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse
from tokenizers import Tokenizer

from bench.peers.mlserver_config import BATCH_METRIC, RuntimeParameters

INPUT = "text"
LABEL, PROBABILITIES = "label", "probabilities"
SESSION_OUTPUTS = ["probabilities", "embedding"]
PAD_SLACK = 0.25
WARMUP_TEXTS = ["warm up", "a somewhat longer sentence to warm up the session with"]


class OnnxTextClassifier(MLModel):
    async def load(self) -> bool:
        params = RuntimeParameters.from_extra(self.settings.parameters.extra)
        version = Path(params.version_dir)
        meta = json.loads((version / "meta.json").read_text(encoding="utf-8"))
        self._labels = np.asarray(meta["labels"], dtype=object)
        tokenizer = Tokenizer.from_file(str(version / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=int(meta["max_seq_length"]))
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self._session = ort.InferenceSession(
            str(version / params.serving_file),
            session_options(params),
            providers=["CPUExecutionProvider"],
        )
        self._classify(WARMUP_TEXTS)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        texts = texts_of(payload)
        mlserver.log(**{BATCH_METRIC: len(texts)})
        probabilities = self._classify(texts)
        labels = self._labels[probabilities.argmax(axis=1)].tolist()
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[
                StringCodec.encode_output(LABEL, labels),
                NumpyCodec.encode_output(PROBABILITIES, probabilities),
            ],
        )

    def _classify(self, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=True)
        ids: list[list[int]] = [e.ids for e in encodings]
        probabilities = np.empty((len(texts), len(self._labels)), dtype=np.float32)
        for rows in length_groups(ids):
            probabilities[rows] = self._session.run(SESSION_OUTPUTS, padded(rows, ids))[0]
        return probabilities


def texts_of(payload: InferenceRequest) -> list[str]:
    """The request's texts: one BYTES input named ``text``, as loopserve takes them."""
    if len(payload.inputs) != 1 or payload.inputs[0].name != INPUT:
        raise InferenceError(f"send one input tensor named {INPUT!r}, datatype BYTES")
    texts: list[str] = StringCodec.decode_input(payload.inputs[0])
    return texts


def length_groups(ids: list[list[int]]) -> list[list[int]]:
    """Positions in order of token count, cut where padding to the group's longest would exceed
    PAD_SLACK of the group's tokens (loopserve's TextEncoder.encode)."""
    groups: list[list[int]] = [[]]
    tokens = 0
    for position in sorted(range(len(ids)), key=lambda i: len(ids[i])):
        count = len(ids[position])
        grown = len(groups[-1]) + 1
        if groups[-1] and grown * count > (1 + PAD_SLACK) * (tokens + count):
            groups.append([])
            tokens = 0
        groups[-1].append(position)
        tokens += count
    return groups


def padded(rows: list[int], ids: list[list[int]]) -> dict[str, np.ndarray[Any, Any]]:
    """The rows' token ids, zero-padded to the longest, and their attention mask."""
    width = max(len(ids[i]) for i in rows)
    input_ids = np.zeros((len(rows), width), dtype=np.int64)
    attention_mask = np.zeros((len(rows), width), dtype=np.int64)
    for row, position in enumerate(rows):
        input_ids[row, : len(ids[position])] = ids[position]
        attention_mask[row, : len(ids[position])] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def session_options(params: RuntimeParameters) -> ort.SessionOptions:
    """loopserve's ONNX Runtime session options (service/runtime/_session.py)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = params.intra_op_threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    spinning = "1" if params.thread_spinning else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    if params.thread_spinning and params.spin_duration_us:
        so.add_session_config_entry(
            "session.intra_op.spin_duration_us", str(params.spin_duration_us)
        )
    return so
