"""A fine-tune job of an image model: continue from the serving version's trainable stages and
head, on the images the spec names by content key (their bytes in ``spec.inputs_dir``), and
hand the candidate to the job's judging (``service.training._finetune``)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from service.domain.finetune import FineTuneSpec
from service.domain.versions import VersionMeta
from service.tasks.image import ImageOptions
from service.tasks.image.training._augment import Augmenter
from service.tasks.image.training._build import build_network, trainable_state
from service.tasks.image.training._checks import load_for_check, static_int8
from service.tasks.image.training._export import ImageClassifier, export_onnx, parity_check
from service.tasks.image.training._images import decode_keys, normalised
from service.tasks.image.training._reference import parse_backbone
from service.tasks.image.training._trainer import CachedSet, ImageTrainer
from service.tasks.image.training._weights import load_state
from service.training._candidate import Candidate, job_recipe
from service.training._fitting import Progress

Pairs = list[tuple[str, str]]


def train_candidate(spec: FineTuneSpec, log: Progress) -> Candidate:
    started = time.perf_counter()
    base = Path(spec.base_dir)
    meta = VersionMeta.from_dict(json.loads((base / "meta.json").read_text(encoding="utf-8")))
    options = ImageOptions.parse(meta.inputs, f"{base / 'meta.json'} inputs")
    inputs = Path(spec.inputs_dir)
    model = load_base(spec)
    recipe = job_recipe(spec)
    trainer = ImageTrainer(model, recipe, log)

    def pixels(pairs: Pairs) -> torch.Tensor:
        return normalised(decode_keys([key for key, _ in pairs], inputs, options), options)

    index = {label: i for i, label in enumerate(spec.labels)}
    train_pixels = decode_keys([key for key, _ in spec.train], inputs, options)
    train_y = [index[label] for _, label in spec.train]
    views = Augmenter(spec.augment, options, recipe.seed).views(train_pixels, spec.augment_views)
    train = trainer.cache(views, train_y)
    val_pixels = pixels(spec.validation)
    val = trainer.cache([val_pixels], [index[label] for _, label in spec.validation])
    log(
        f"decoded {len(spec.train)} training images ({len(views)} views each) and "
        f"{len(spec.validation)} validation images; cached the frozen stages' activations in "
        f"{time.perf_counter() - started:.1f}s"
    )
    if len(spec.labels) > len(spec.base_labels):
        _grow_head(trainer, spec, trainer.cache(views[:1], train_y))
    report = trainer.fine_tune(train, val)
    log(f"trained in {time.perf_counter() - started:.1f}s (cumulative)")

    staging = Path(spec.staging_dir)
    save_file(trainable_state(model), str(staging / "weights.safetensors"))
    export_onnx(model, staging / "model.onnx", options.size)
    parity = parity_check(model, staging / "model.onnx", options.size)
    candidate = load_for_check(staging / "model.onnx", options, spec.labels, spec.threads)
    quantize = (
        static_int8(
            staging / "model.onnx",
            views[0],
            lambda path: load_for_check(path, options, spec.labels, spec.threads),
        )
        if spec.int8
        else None
    )
    incumbent = load_for_check(
        base / spec.base_serving_file, options, spec.base_labels, spec.threads
    )

    def items(keys: Sequence[str]) -> list[Any]:
        return list(normalised(decode_keys(keys, inputs, options), options).numpy())

    return Candidate(candidate, incumbent, report, parity, quantize, items, words=False)


def load_base(spec: FineTuneSpec) -> ImageClassifier:
    """The serving version's network: the backbone it recorded, its trainable stages and head
    from weights.safetensors (ConfigError naming the first key that does not fit)."""
    reference = parse_backbone(spec.backbone)
    model = build_network(reference, spec.trainable_layers, len(spec.base_labels))
    path = Path(spec.base_dir) / "weights.safetensors"
    trainable = nn.ModuleDict(
        {"features": nn.ModuleDict({"tail": model.features.tail}), "head": model.head}
    )
    what = f"base version {spec.base_version} weights {str(path)!r} do not fit {reference}"
    load_state(trainable, load_file(str(path)), "\0", what)
    return model.eval()


@torch.no_grad()
def _grow_head(trainer: ImageTrainer, spec: FineTuneSpec, plain: CachedSet) -> None:
    """Class-incremental, as for text: old rows kept; each new class starts along its images'
    mean pooled feature minus the old classes', at the old rows' norm and lowest bias."""
    model = trainer.model
    old = model.head
    head = nn.Linear(old.in_features, len(spec.labels))
    head.weight[: old.out_features] = old.weight
    head.bias[: old.out_features] = old.bias
    scale, bias = float(old.weight.norm(dim=1).mean()), float(old.bias.min())
    is_old = plain.labels < old.out_features
    old_center = (
        trainer.pooled_mean(_subset(plain, is_old))
        if is_old.any()
        else torch.zeros(old.in_features)
    )
    for label in range(old.out_features, len(spec.labels)):
        mine = plain.labels == label
        direction = (
            trainer.pooled_mean(_subset(plain, mine)) - old_center
            if mine.any()
            else torch.randn(old.in_features)
        )
        head.weight[label] = nn.functional.normalize(direction, dim=0) * scale
        head.bias[label] = bias
    model.head = head


def _subset(cached: CachedSet, mask: torch.Tensor) -> CachedSet:
    return CachedSet(cached.activations[mask], cached.labels[mask])
