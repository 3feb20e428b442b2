"""``loopserve init`` of a text model: the first version from its seed texts."""

from __future__ import annotations

import dataclasses

import torch
from safetensors.torch import save_file

from service.config import ModelDefinition, read_labeled_csv
from service.domain.versions import DataCounts, VersionMeta
from service.registry import ModelRegistry, VersionInfo
from service.runtime import available_cpus
from service.tasks.text.training._export import (
    accuracy,
    export_onnx,
    int8_quantizer,
    load_for_check,
    parity_check,
)
from service.tasks.text.training._model import TextClassifier, load_encoder, trainable_state
from service.tasks.text.training._tokens import TokenBatcher, copy_tokenizer, label_name_examples
from service.tasks.text.training._trainer import Trainer
from service.training._data import Example, seed_labels, stratified_split
from service.training._fitting import Progress, TrainReport
from service.training._int8 import HeldOut, choose_graph


def build_first_version(
    definition: ModelDefinition, registry: ModelRegistry, progress: Progress
) -> VersionInfo:
    """Train, export, check and publish version 1 (or the next number), and make it current."""
    torch.set_num_threads(available_cpus())
    rows = read_labeled_csv(definition.seed_path)
    labels = seed_labels(definition, (label for _, label in rows))
    index = {label: i for i, label in enumerate(labels)}
    examples = [Example(text, index[label]) for text, label in rows]
    train, val = stratified_split(
        examples, definition.train.validation_fraction, definition.train.seed
    )
    names = label_name_examples(labels) if definition.train.label_name_examples else []
    progress(
        f"{definition.name}: {len(train)} training and {len(val)} validation examples, "
        f"{len(labels)} labels ({len(names)} named in words, one example each)"
    )

    backbone = definition.backbone_path()
    current = registry.current()
    with registry.stage(parent=current.version if current else None) as staged:
        tokenizer_path = staged.path / "tokenizer.json"
        copy_tokenizer(backbone, tokenizer_path)
        tokens = TokenBatcher(tokenizer_path, definition.max_seq_length)
        torch.manual_seed(definition.train.seed)  # the head's initialisation: reproducible builds
        model = TextClassifier(load_encoder(backbone), len(labels), definition.pooling)
        report = Trainer(model, tokens, definition.train, progress).fit(train + names, val)
        assert report.calibration is not None  # fit() always calibrates (on no rows: T = 1)
        progress(
            f"calibration: temperature {report.calibration.temperature} fitted on "
            f"{report.calibration.rows} validation rows"
        )
        save_file(
            trainable_state(model, definition.train.finetune_layers),
            str(staged.path / "weights.safetensors"),
        )

        onnx_path = staged.path / "model.onnx"
        export_onnx(model, tokens, onnx_path)
        check_texts = [e.item for e in (val or train)[:32]]
        session = load_for_check(onnx_path, tokenizer_path, labels, definition.max_seq_length)
        parity = parity_check(model, tokens, session, check_texts)
        progress(f"exported ONNX; largest difference from torch {parity:.1e}")
        meta = VersionMeta(
            labels=tuple(labels),
            max_seq_length=definition.max_seq_length,
            pooling=definition.pooling,
            backbone=definition.backbone,
            trainable_layers=definition.train.finetune_layers,
            status="promoted",
            reason="initial version from seed data",
            data=DataCounts(
                seed_rows=len(rows),
                train=len(train),
                validation=len(val),
                label_name_examples=len(names),
            ),
            train=report.record(),
            calibration=report.calibration,
            metrics={
                # After a refit the model has trained on the validation rows: report the score
                # measured while they were still held out.
                "validation_accuracy": (
                    _held_out_accuracy(report)
                    if report.refit_examples
                    else accuracy(session, [e.item for e in val], [e.label for e in val])
                ),
                "parity_max_abs_diff": parity,
            },
        )
        graph = choose_graph(
            session,
            staged.path,
            (
                int8_quantizer(onnx_path, tokenizer_path, labels, definition.max_seq_length)
                if definition.serving.int8
                else None
            ),
            _validation(val),
            definition.serving.int8_max_accuracy_drop,
            progress,
        )
        meta = dataclasses.replace(meta, int8=graph.int8, serving_file=graph.file)
        info = registry.publish(staged, meta)
    if current is None:
        registry.set_current(info.version, expected=None)
    progress(f"published {definition.name} version {info.version} at {info.path}")
    return info


def _held_out_accuracy(report: TrainReport) -> float:
    chosen = report.finetuned if report.used_finetune else report.head_only
    return float((chosen or report.head_only)["accuracy"])


def _validation(val: list[Example]) -> HeldOut:
    """The int8 check's rows: the validation split. After a refit the model has trained on them
    too (a first version has no other held-out rows)."""
    texts, gold = [e.item for e in val], [e.label for e in val]
    return HeldOut(len(val), "validation", lambda session: accuracy(session, texts, gold))
