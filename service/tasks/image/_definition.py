"""``loopserve init NAME --task image --data DIR|CSV``: an image model's definition, with its seed
images copied into the model directory (``models/NAME/seed/<label>/``) so that the definition is
complete without the original folder; and example models whose seed images are generated."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from service.config import ModelDefinition, load_model_definition, validate_model_name
from service.errors import ConfigError, InvalidInput
from service.tasks.image._container import inspect
from service.tasks.image._files import LabeledImage, read_labeled_images

DEFAULT_IMAGE_BACKBONE = "bundled:mobilenet_v2"
DEFAULT_IMAGE_SIZE = 224
SEED_DIR = "seed"
# An example model whose seed images are drawn by a script rather than kept in the repository.
SEED_GENERATOR = "generate_seed.py"


def create_image_definition(models_dir: Path, name: str, data: Path, task: str) -> ModelDefinition:
    """Write ``models_dir/name/`` (model.toml + seed/<label>/ images) from an image folder or a
    ``path,label`` CSV. Every file must be a JPEG, PNG or WebP (checked from its header)."""
    validate_model_name(name)
    directory = models_dir / name
    if (directory / "model.toml").exists():
        raise ConfigError(
            f"{directory / 'model.toml'} already exists; drop --data to build from it"
        )
    try:
        images = read_labeled_images(data)
    except InvalidInput as exc:
        raise ConfigError(str(exc)) from None
    labels = sorted({image.label for image in images})
    if len(labels) < 2:
        raise ConfigError(f"{data}: needs at least two labels, found {labels}")
    for label in labels:
        _check_folder_name(data, label)
    for image in images:
        _check_image(image.path)
    directory.mkdir(parents=True, exist_ok=True)
    _copy_seed(images, directory / SEED_DIR)
    write_image_model_toml(directory, labels, task)
    return load_model_definition(models_dir, name)


def _check_folder_name(data: Path, label: str) -> None:
    """A label names its seed folder: it must be one plain path component."""
    if (
        label in (".", "..")
        or label.startswith(".")
        or any(c in label for c in "/\\")
        or any(ord(c) < 32 or ord(c) == 127 for c in label)
    ):
        raise ConfigError(
            f"{data}: label {label!r} cannot name a folder (no '/', '\\', leading '.' or "
            "control characters)"
        )


def _check_image(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            head = handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        inspect(head)
    except InvalidInput as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _copy_seed(images: list[LabeledImage], seed: Path) -> None:
    """Copy each image to ``seed/<label>/<its name>`` (a numbered name where two share one)."""
    for image in images:
        folder = seed / image.label
        folder.mkdir(parents=True, exist_ok=True)
        target, n = folder / image.path.name, 1
        while target.exists():
            target = folder / f"{image.path.stem}-{n}{image.path.suffix}"
            n += 1
        shutil.copyfile(image.path, target)


def write_image_model_toml(directory: Path, labels: list[str], task: str) -> Path:
    """A model.toml for an image model of ``task`` with the default backbone and input
    geometry."""
    label_list = ", ".join(json.dumps(label, ensure_ascii=False) for label in labels)
    text = (
        "# Written by `loopserve init --task image`; every key below is optional except the "
        "labels.\n"
        "[model]\n"
        f'task = "{task}"\n'
        f'backbone = "{DEFAULT_IMAGE_BACKBONE}"\n'
        f'seed_data = "{SEED_DIR}"\n'
        f"labels = [{label_list}]\n\n"
        "[input]\n"
        f"size = {DEFAULT_IMAGE_SIZE}\n\n"
        "[serving]\n"
        "max_batch_size = 8\n"
        "# Static int8 (calibrated on the seed images) serves when its accuracy on the validation\n"
        "# images is at most int8_max_accuracy_drop below fp32's; otherwise fp32 serves.\n"
        "int8 = true\n"
        "int8_max_accuracy_drop = 0.01\n"
    )
    path = directory / "model.toml"
    path.write_text(text, encoding="utf-8")
    return path


def ensure_seed_data(definition: ModelDefinition) -> None:
    """Draw an example model's seed images with its ``generate_seed.py`` when they are missing
    (the images are reproducible from a seed, so the repository keeps the script, not them)."""
    generator = definition.directory / SEED_GENERATOR
    if definition.seed_path.exists() or not generator.is_file():
        return
    print(f"{definition.name}: generating seed images with {generator}")
    try:
        subprocess.run(
            [sys.executable, str(generator), str(definition.seed_path)],
            check=True,
            cwd=definition.directory,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ConfigError(f"{generator} failed: {exc}") from None
