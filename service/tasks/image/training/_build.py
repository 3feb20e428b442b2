"""``loopserve init`` of an image model: the first version from the seed images."""

from __future__ import annotations

import dataclasses

import torch
from safetensors.torch import save_file

from service.config import DEFAULT_BACKBONE, ModelDefinition
from service.domain.versions import DataCounts, VersionMeta
from service.errors import ConfigError
from service.registry import ModelRegistry, VersionInfo
from service.runtime import available_cpus
from service.tasks.image import ImageOptions, read_seed_images
from service.tasks.image.training._augment import Augmenter
from service.tasks.image.training._backbone import build_backbone
from service.tasks.image.training._checks import (
    accuracy,
    held_out_images,
    load_for_check,
    static_int8,
)
from service.tasks.image.training._export import ImageClassifier, export_onnx, parity_check
from service.tasks.image.training._images import decode_files, normalised
from service.tasks.image.training._reference import (
    DEFAULT_IMAGE_BACKBONE,
    BackboneReference,
    parse_backbone,
)
from service.tasks.image.training._trainer import ImageTrainer
from service.training._data import Example, seed_labels, stratified_split
from service.training._fitting import Progress
from service.training._int8 import choose_graph

TRAINABLE_PREFIXES = ("features.tail.", "head.")


def image_backbone(definition: ModelDefinition) -> BackboneReference:
    """The backbone an image model names (MobileNetV2 with ImageNet weights by default)."""
    written = definition.backbone
    if written == DEFAULT_BACKBONE:  # model.toml names none: the text default does not apply
        written = DEFAULT_IMAGE_BACKBONE
    return parse_backbone(written, definition.directory)


def build_network(
    reference: BackboneReference, trainable_stages: int, labels: int
) -> ImageClassifier:
    features, _ = build_backbone(
        reference.architecture, reference.weights, trainable_stages, reference.width
    )
    return ImageClassifier(features, labels)


def trainable_state(model: ImageClassifier) -> dict[str, torch.Tensor]:
    """What a fine-tune may change and continues from: the trainable stages and the head."""
    return {
        k: v.detach().clone().contiguous()
        for k, v in model.state_dict().items()
        if k.startswith(TRAINABLE_PREFIXES)
    }


def build_first_version(
    definition: ModelDefinition, registry: ModelRegistry, progress: Progress
) -> VersionInfo:
    """Train, export, check and publish version 1 (or the next number) of an image model."""
    torch.set_num_threads(available_cpus())
    where = f"model {definition.name!r} [input]"
    options = ImageOptions.parse(definition.inputs, where)
    reference = image_backbone(definition)
    recipe = definition.train
    files = read_seed_images(definition.seed_path)
    labels = seed_labels(definition, (label for _, label in files))
    if len(labels) < 2:
        raise ConfigError(f"{definition.seed_path}: needs at least two labels, found {labels}")
    index = {label: i for i, label in enumerate(labels)}
    pixels = decode_files([path for path, _ in files], options)
    rows = [Example(str(i), index[label]) for i, (_, label) in enumerate(files)]
    train, val = stratified_split(rows, recipe.validation_fraction, recipe.seed)
    train_at, val_at = [int(e.item) for e in train], [int(e.item) for e in val]
    train_y, val_y = [e.label for e in train], [e.label for e in val]
    augmenter = Augmenter(recipe.augment, options, recipe.seed)
    train_views = augmenter.views(pixels[train_at], recipe.augment_views)
    progress(
        f"{definition.name}: {len(train)} training images ({len(train_views)} views each: "
        f"{', '.join(augmenter.names) or 'no augmentation'}) and {len(val)} validation images, "
        f"{len(labels)} labels; backbone {reference}"
    )
    torch.manual_seed(recipe.seed)  # the head's initialisation: reproducible builds
    model = build_network(reference, recipe.finetune_layers, len(labels))
    trainer = ImageTrainer(model, recipe, progress)
    val_pixels = normalised(pixels[val_at], options)
    report = trainer.fit(trainer.cache(train_views, train_y), trainer.cache([val_pixels], val_y))
    assert report.calibration is not None
    progress(
        f"calibration: temperature {report.calibration.temperature} fitted on "
        f"{report.calibration.rows} validation images"
    )
    current = registry.current()
    with registry.stage(parent=current.version if current else None) as staged:
        save_file(trainable_state(model), str(staged.path / "weights.safetensors"))
        onnx_path = staged.path / "model.onnx"
        export_onnx(model, onnx_path, options.size)
        parity = parity_check(model, onnx_path, options.size)
        progress(f"exported ONNX; largest difference from torch {parity:.1e}")
        session = load_for_check(onnx_path, options, labels)
        meta = VersionMeta(
            labels=tuple(labels),
            max_seq_length=definition.max_seq_length,
            task=definition.task,
            inputs=options.as_dict(),
            backbone=str(reference),
            trainable_layers=len(model.features.tail),
            status="promoted",
            reason="initial version from seed images",
            data=DataCounts(seed_rows=len(files), train=len(train), validation=len(val)),
            train=report.record(),
            calibration=report.calibration,
            metrics={
                "validation_accuracy": accuracy(session, val_pixels, val_y),
                "parity_max_abs_diff": parity,
            },
        )
        graph = choose_graph(
            session,
            staged.path,
            (
                static_int8(
                    onnx_path, train_views[0], lambda path: load_for_check(path, options, labels)
                )
                if definition.serving.int8
                else None
            ),
            held_out_images(val_pixels, val_y),
            definition.serving.int8_max_accuracy_drop,
            progress,
        )
        meta = dataclasses.replace(meta, int8=graph.int8, serving_file=graph.file)
        info = registry.publish(staged, meta)
    if current is None:
        registry.set_current(info.version, expected=None)
    progress(f"published {definition.name} version {info.version} at {info.path}")
    return info
