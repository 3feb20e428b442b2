"""Image models: version 1 from seed images (an ImageFolder directory or a path,label CSV), a
fine-tune job from a spec whose inputs are files named by content key, BatchNorm statistics
frozen while training, backbone references and weights that do not fit."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from images import COLOURS, csv_listing, folder, image
from safetensors.torch import load_file, save_file

from service import tasks
from service.config import TrainRecipe, load_model_definition
from service.domain.finetune import FineTuneRecipe, FineTuneSpec
from service.domain.gate import GateThresholds
from service.errors import ConfigError
from service.registry import ModelRegistry, VersionInfo
from service.runtime import LoadedVersion, SessionOptions
from service.tasks.image import ImageOptions, decode_image
from service.tasks.image.training import (
    BackboneReference,
    ImageClassifier,
    build_backbone,
    create_network,
    freeze_batchnorm,
    parse_backbone,
)
from service.tasks.image.training._checks import held_out_images, load_for_check, static_int8
from service.tasks.image.training._trainer import ImageTrainer
from service.training import build_first_version
from service.training._finetune import _fine_tune
from service.training._int8 import choose_graph

LABELS = ["blue", "red"]
BACKBONE = "resnet18@0.25:random"
MODEL_TOML = """[model]
task = "image-classification"
backbone = "{backbone}"
seed_data = "{seed}"

[input]
size = 32
crop_fraction = 1.0

[train]
finetune_layers = 1
learning_rate = 1e-3
epochs = 3
head_epochs = 200
augment = ["hflip", "crop", "color"]
augment_views = 1
"""


def _model(models: Path, name: str, seed: str, backbone: str = BACKBONE) -> Path:
    directory = models / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.toml").write_text(MODEL_TOML.format(backbone=backbone, seed=seed))
    return directory


def _build(models: Path, state: Path, name: str) -> tuple[VersionInfo, list[str]]:
    lines: list[str] = []
    definition = load_model_definition(models, name)
    info = build_first_version(definition, ModelRegistry(state, name), lines.append)
    return info, lines


@pytest.fixture(scope="module")
def folder_version(tmp_path_factory: pytest.TempPathFactory) -> tuple[VersionInfo, list[str]]:
    root = tmp_path_factory.mktemp("image-folder")
    directory = _model(root / "models", "colours", "seed")
    folder(directory / "seed", LABELS, 12)
    return _build(root / "models", root / "state", "colours")


def _accuracy(info: VersionInfo, labels: list[str], seeds: range) -> float:
    session = tasks.open_version("colours", info, SessionOptions(intra_op_threads=1))
    options = ImageOptions.parse(info.meta.inputs, "meta")
    items, gold = [], []
    for label in labels:
        for n in seeds:
            items.append(decode_image(image(label, n), options.spec(), options.limits()))
            gold.append(info.labels.index(label))
    predicted = session.predict(items).probabilities.argmax(1)
    return float((predicted == np.array(gold)).mean())


@pytest.mark.slow
def test_first_version_from_an_image_folder_serves_and_beats_chance(
    folder_version: tuple[VersionInfo, list[str]],
) -> None:
    info, lines = folder_version
    meta = info.meta
    assert meta.task == "image-classification" and meta.labels == tuple(LABELS)
    assert meta.inputs["size"] == 32 and meta.inputs["crop_fraction"] == 1.0
    assert meta.backbone == "resnet18@0.25:random" and meta.trainable_layers == 1
    assert (meta.data.seed_rows, meta.data.train + meta.data.validation) == (24, 24)
    assert meta.calibration is not None and meta.calibration.source == "validation"
    assert meta.metrics["parity_max_abs_diff"] <= 1e-4
    assert 0 <= meta.metrics["validation_accuracy"] <= 1
    assert (info.path / "weights.safetensors").is_file()
    assert any(line.startswith("epoch 1:") for line in lines), lines  # progress per epoch
    assert any("2 views each" in line for line in lines), lines
    assert _accuracy(info, LABELS, range(100, 120)) >= 0.8  # held-out images, chance is 0.5


@pytest.mark.slow
def test_first_version_from_a_csv_listing(tmp_path: Path) -> None:
    directory = _model(tmp_path / "models", "colours", "seed.csv")
    csv_listing(directory, LABELS, 8)
    info, _ = _build(tmp_path / "models", tmp_path / "state", "colours")
    assert info.meta.data.seed_rows == 16 and info.meta.labels == tuple(LABELS)
    assert _accuracy(info, LABELS, range(100, 110)) >= 0.7


def _key(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _pairs(
    inputs: Path, labels: list[str], seeds: range, wrong: bool = False
) -> list[tuple[str, str]]:
    pairs = []
    for label in labels:
        for n in seeds:
            data = image(label, n)
            (inputs / _key(data).removeprefix("sha256:")).write_bytes(data)
            shown = labels[(labels.index(label) + 1) % len(labels)] if wrong else label
            pairs.append((_key(data), shown))
    return pairs


def _spec(base: VersionInfo, job: Path, labels: list[str], wrong: bool = False) -> FineTuneSpec:
    inputs, staging = job / "inputs", job / "staging"
    inputs.mkdir(parents=True)
    staging.mkdir()
    new = [label for label in labels if label not in base.labels]
    return FineTuneSpec(
        model="colours",
        backbone=base.meta.backbone,
        pooling="mean",
        max_seq_length=128,
        base_version=base.version,
        base_dir=str(base.path),
        base_serving_file=base.serving_file.name,
        base_labels=list(base.labels),
        labels=list(base.labels) + new,
        trainable_layers=base.meta.trainable_layers,
        train=_pairs(inputs, labels, range(200, 210), wrong),
        validation=_pairs(inputs, labels, range(210, 213), wrong),
        holdout=_pairs(inputs, labels, range(213, 219), wrong),
        anchor=_pairs(inputs, LABELS, range(300, 310)),
        recipe=FineTuneRecipe(learning_rate=1e-4, head_learning_rate=1e-2, epochs=5),
        gate=GateThresholds(confidence_z=0.0),
        int8=False,
        int8_max_accuracy_drop=0.01,
        threads=1,
        nice=0,
        staging_dir=str(staging),
        result_path=str(job / "result.json"),
        traffic=[key for key, _ in _pairs(inputs, LABELS, range(400, 405))],
        task="image-classification",
        inputs_dir=str(inputs),
        augment=["crop"],
        augment_views=1,
    )


@pytest.mark.slow
def test_fine_tune_job_on_more_images_of_known_labels_is_promoted(
    folder_version: tuple[VersionInfo, list[str]], tmp_path: Path
) -> None:
    base, _ = folder_version
    spec = _spec(base, tmp_path, LABELS)
    result = _fine_tune(spec)
    assert result.ok and result.gate is not None
    assert result.gate.promote, result.gate.reason
    assert result.labels == LABELS and result.serving_file == "model.onnx"
    assert result.calibration is not None and result.calibration.source == "holdout"
    assert result.parity_max_abs_diff <= 1e-4 and result.data.train == 20
    assert result.train.finetune_epochs >= 1 and result.train.history
    assert result.review is not None and result.review.trigger == ""  # no token test on images
    assert result.review.traffic == 10
    staged = Path(spec.staging_dir)
    assert (staged / "model.onnx").is_file() and (staged / "weights.safetensors").is_file()


@pytest.mark.slow
def test_fine_tune_job_grows_the_head_for_a_new_label(
    folder_version: tuple[VersionInfo, list[str]], tmp_path: Path
) -> None:
    base, _ = folder_version
    spec = _spec(base, tmp_path, [*LABELS, "green"])
    result = _fine_tune(spec)
    assert result.ok and result.gate is not None and result.labels == [*LABELS, "green"]
    session = ort.InferenceSession(str(Path(spec.staging_dir) / "model.onnx"))
    pixels = np.zeros((2, 3, 32, 32), dtype=np.float32)
    assert session.run(["probabilities"], {"pixels": pixels})[0].shape == (2, 3)
    weights = load_file(str(Path(spec.staging_dir) / "weights.safetensors"))
    assert weights["head.weight"].shape[0] == 3


@pytest.mark.slow
def test_fine_tune_job_on_swapped_labels_is_rejected_for_forgetting(
    folder_version: tuple[VersionInfo, list[str]], tmp_path: Path
) -> None:
    base, _ = folder_version
    result = _fine_tune(_spec(base, tmp_path, LABELS, wrong=True))
    assert result.ok and result.gate is not None
    assert not result.gate.promote
    assert "forgets old data" in result.gate.reason


def test_batchnorm_statistics_stay_frozen_while_the_tail_trains() -> None:
    torch.manual_seed(0)
    features, _ = build_backbone("resnet18", trainable_stages=2, width=0.25)
    model = ImageClassifier(features, 2)
    before = {k: v.clone() for k, v in model.state_dict().items() if "running_" in k}
    trainer = ImageTrainer(
        model, TrainRecipe(epochs=2, batch_size=4, head_epochs=5), lambda _: None
    )
    pixels = torch.randn(12, 3, 32, 32) * 3 + 1  # far from the statistics BN was initialised with
    labels = [0, 1] * 6
    trainer.fine_tune(trainer.cache([pixels], labels), trainer.cache([pixels[:4]], labels[:4]))
    after = model.state_dict()
    assert before and all(torch.equal(before[k], after[k]) for k in before)
    tail_weights = [
        k for k in after if k.startswith("features.tail.") and k.endswith("conv1.weight")
    ]
    assert tail_weights  # the tail has convolutions, and they trained
    model.train()
    freeze_batchnorm(model)
    assert not any(m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_backbone_references(tmp_path: Path) -> None:
    assert parse_backbone("bundled:mobilenet_v2") == BackboneReference(
        "mobilenet_v2", "bundled:mobilenet_v2"
    )
    assert str(parse_backbone("resnet18@0.5:random")) == "resnet18@0.5:random"
    local = parse_backbone("resnet50:weights/r50.pth", tmp_path)
    assert local.weights == str(tmp_path / "weights" / "r50.pth")
    assert parse_backbone(str(local)) == local  # a version's record reads back the same
    with pytest.raises(ConfigError, match="unknown image backbone 'vgg16'"):
        parse_backbone("vgg16:random")
    with pytest.raises(ConfigError, match="use bundled:<architecture>, <architecture>:<weights"):
        parse_backbone("mobilenet_v2")
    with pytest.raises(ConfigError, match=r"width must be a number in \[0.05, 4\]"):
        parse_backbone("resnet18@wide:random")


def test_weights_that_do_not_fit_the_architecture_name_the_first_bad_key(tmp_path: Path) -> None:
    state = create_network("resnet18", width=0.25).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "r18.safetensors"))
    directory = _model(tmp_path / "models", "colours", "seed", "mobilenet_v2:../../r18.safetensors")
    folder(directory / "seed", LABELS, 2)
    with pytest.raises(
        ConfigError, match=r"do not fit mobilenet_v2: missing key 'features\.0\.0\.weight'"
    ):
        _build(tmp_path / "models", tmp_path / "state", "colours")


def test_colours_are_the_labels() -> None:
    assert set(LABELS) < set(COLOURS)


@pytest.mark.slow
def test_static_int8_serves_only_behind_the_validation_check(
    folder_version: tuple[VersionInfo, list[str]], tmp_path: Path
) -> None:
    info, _ = folder_version
    shutil.copyfile(info.path / "model.onnx", tmp_path / "model.onnx")
    options = ImageOptions.parse(info.meta.inputs, "meta")
    labels = list(info.labels)
    items = [
        decode_image(image(label, n), options.spec(), options.limits())
        for label in LABELS
        for n in range(500, 506)
    ]
    pixels = torch.from_numpy(np.stack(items))
    gold = [labels.index(label) for label in LABELS for _ in range(6)]

    def opened(path: Path) -> LoadedVersion:
        return load_for_check(path, options, labels, threads=1)

    fp32 = opened(tmp_path / "model.onnx")
    quantize = static_int8(tmp_path / "model.onnx", pixels, opened)
    graph = choose_graph(
        fp32, tmp_path, quantize, held_out_images(pixels, gold), 1.0, lambda _: None
    )
    assert graph.int8 is not None and graph.int8.accepted
    assert graph.file == "model.int8.onnx" and graph.session is not fp32
    assert (tmp_path / graph.file).is_file() and 0 <= graph.int8.int8_accuracy <= 1
    assert (graph.int8.rows, graph.int8.split) == (len(gold), "validation")
    # No validation images, no evidence: fp32, and the int8 file is gone.
    graph = choose_graph(
        fp32, tmp_path, quantize, held_out_images(pixels[:0], []), 1.0, lambda _: None
    )
    assert graph.int8 is not None and not graph.int8.accepted
    assert graph.file == "model.onnx" and graph.session is fp32
    assert not (tmp_path / "model.int8.onnx").exists()
