"""A fine-tune job of a text model: continue from the serving version's top layers and head,
grow the head for new labels, fine-tune on the spec's texts, export and check ONNX, and hand the
candidate (and how to quantize it) to the job's judging (``service.training._finetune``)."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from service.domain.finetune import FineTuneSpec
from service.tasks.text.training._export import (
    export_onnx,
    int8_quantizer,
    load_for_check,
    parity_check,
)
from service.tasks.text.training._model import TextClassifier, load_encoder, trainable_state
from service.tasks.text.training._tokens import TokenBatcher
from service.tasks.text.training._trainer import Trainer
from service.training._candidate import Candidate, job_recipe, same_items
from service.training._data import Example
from service.training._fitting import Progress

Pairs = list[tuple[str, str]]


def train_candidate(spec: FineTuneSpec, log: Progress) -> Candidate:
    started = time.perf_counter()
    staging = Path(spec.staging_dir)
    tokenizer_path = staging / "tokenizer.json"
    tokenizer_path.write_bytes((Path(spec.base_dir) / "tokenizer.json").read_bytes())
    tokens = TokenBatcher(tokenizer_path, spec.max_seq_length)
    model = _load_base(spec)
    index = {label: i for i, label in enumerate(spec.labels)}
    if len(spec.labels) > len(spec.base_labels):
        _grow_head(model, tokens, spec, index)

    recipe = job_recipe(spec)

    def examples(pairs: Pairs) -> list[Example]:
        return [Example(text, index[label]) for text, label in pairs]

    log(f"loaded base version in {time.perf_counter() - started:.1f}s")
    report = Trainer(model, tokens, recipe, progress=log).fine_tune(
        examples(spec.train), examples(spec.validation)
    )
    log(f"trained in {time.perf_counter() - started:.1f}s (cumulative)")
    save_file(trainable_state(model, spec.trainable_layers), str(staging / "weights.safetensors"))
    onnx_path = staging / "model.onnx"
    export_onnx(model, tokens, onnx_path)
    candidate = load_for_check(
        onnx_path, tokenizer_path, spec.labels, spec.max_seq_length, spec.threads
    )
    check_texts = [text for text, _ in (spec.holdout or spec.train)[:32]]
    parity = parity_check(model, tokens, candidate, check_texts)
    quantize = (
        int8_quantizer(onnx_path, tokenizer_path, spec.labels, spec.max_seq_length, spec.threads)
        if spec.int8
        else None
    )
    incumbent = load_for_check(
        Path(spec.base_dir) / spec.base_serving_file,
        Path(spec.base_dir) / "tokenizer.json",
        spec.base_labels,
        spec.max_seq_length,
        spec.threads,
    )
    return Candidate(candidate, incumbent, report, parity, quantize, items=same_items, words=True)


def _load_base(spec: FineTuneSpec) -> TextClassifier:
    model = TextClassifier(load_encoder(Path(spec.backbone)), len(spec.base_labels), spec.pooling)
    weights = load_file(str(Path(spec.base_dir) / "weights.safetensors"))
    missing_head = {"head.weight", "head.bias"} - set(weights)
    if missing_head:
        raise ValueError(f"base version {spec.base_version} weights lack {sorted(missing_head)}")
    unexpected = model.load_state_dict(weights, strict=False).unexpected_keys
    if unexpected:
        raise ValueError(
            f"base version {spec.base_version} weights do not fit the backbone: {unexpected[:3]}"
        )
    return model.eval()


@torch.no_grad()
def _grow_head(
    model: TextClassifier, tokens: TokenBatcher, spec: FineTuneSpec, index: dict[str, int]
) -> None:
    """Class-incremental: keep the old rows; start each new class along what separates its
    examples from the old classes' (its mean embedding minus theirs), at the old rows' norm and
    the lowest old bias, so it does not capture old inputs before training."""
    old = model.head
    head = torch.nn.Linear(old.in_features, len(spec.labels))
    head.weight[: old.out_features] = old.weight
    head.bias[: old.out_features] = old.bias
    scale = float(old.weight.norm(dim=1).mean())
    bias = float(old.bias.min())
    old_texts = [text for text, gold in spec.train if gold in set(spec.base_labels)]
    old_center = (
        _mean_features(model, tokens, old_texts) if old_texts else torch.zeros(old.in_features)
    )
    for label in spec.labels[len(spec.base_labels) :]:
        texts = [text for text, gold in spec.train if gold == label] or [label.replace("_", " ")]
        direction = torch.nn.functional.normalize(
            _mean_features(model, tokens, texts) - old_center, dim=0
        )
        head.weight[index[label]] = direction * scale
        head.bias[index[label]] = bias
    model.head = head


def _mean_features(model: TextClassifier, tokens: TokenBatcher, texts: list[str]) -> torch.Tensor:
    chunks = [
        model.features(*TokenBatcher.pad(tokens.ids(texts[i : i + 64])))
        for i in range(0, len(texts), 64)
    ]
    return torch.cat(chunks).mean(0)
