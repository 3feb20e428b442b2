"""Image backbones in plain torch: torchvision's layouts, weight loading and its errors, the
frozen/trainable split."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from service.errors import ConfigError
from service.tasks.image.training import (
    ARCHITECTURES,
    ImageClassifier,
    SplitFeatures,
    build_backbone,
    bundled,
    create_network,
    load_state,
    resolve,
)

# torchvision's published figures: state-dict entries and parameters of each ImageNet network.
TORCHVISION_SIZES = {
    "mobilenet_v2": (314, 3_504_872),
    "resnet18": (122, 11_689_512),
    "resnet50": (320, 25_557_032),
    "efficientnet_lite0": (296, 4_652_008),  # the efficientnet-lite-pytorch reference
}


def _tiny(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_network(name, width=0.25)


@pytest.mark.parametrize("name", sorted(TORCHVISION_SIZES))
def test_layout_matches_the_published_network(name: str) -> None:
    network = create_network(name)
    entries, parameters = TORCHVISION_SIZES[name]
    assert len(network.state_dict()) == entries
    assert sum(p.numel() for p in network.parameters()) == parameters


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2"])
def test_efficientnet_lite_matches_the_reference_implementation(name: str) -> None:
    reference_module = pytest.importorskip("efficientnet_lite_pytorch")
    size = 64
    reference = reference_module.EfficientNet.from_name(name.replace("_", "-"), image_size=size)
    mine = create_network(name)
    theirs = reference.state_dict()
    assert {k: v.shape for k, v in mine.state_dict().items()} == {
        k: v.shape for k, v in theirs.items()
    }
    load_state(mine, theirs, "_fc.", "reference")
    pixels = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(mine(pixels), reference.eval()(pixels), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_bundled_imagenet_weights_load_completely(name: str) -> None:
    network = create_network(name)
    path = bundled(name)
    state = torch.load(path, weights_only=True)
    assert load_state(network, state, ARCHITECTURES[name].classifier, name)  # head included
    spec = ARCHITECTURES[name].spec
    pixels = torch.rand(2, 3, spec.size, spec.size)
    with torch.no_grad():
        logits = create_network(name, f"bundled:{name}")(pixels)
    assert logits.shape == (2, 1000)
    assert torch.isfinite(logits).all()


# --- weight files and their errors ----------------------------------------------------------------


def _save(state: dict[str, torch.Tensor], path: Path) -> str:
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return str(path)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights_round_trip_through_either_file_format(tmp_path: Path, suffix: str) -> None:
    source = _tiny("resnet18")
    path = _save(source.state_dict(), tmp_path / f"w{suffix}")
    loaded = create_network("resnet18", path, width=0.25)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def _mutated(kind: str) -> dict[str, torch.Tensor]:
    state = dict(_tiny("mobilenet_v2").state_dict())
    if kind == "missing":
        del state["features.3.conv.1.0.weight"]
    elif kind == "unexpected":
        state["features.99.weight"] = torch.zeros(1)
    else:
        state["features.0.0.weight"] = torch.zeros(8, 3, 5, 5)
    return state


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "missing key 'features.3.conv.1.0.weight' (1 missing, 0 unexpected"),
        ("unexpected", "unexpected key 'features.99.weight' (0 missing, 1 unexpected"),
        (
            "shape",
            "key 'features.0.0.weight' has shape [8, 3, 5, 5], the network needs [8, 3, 3, 3]",
        ),
    ],
)
def test_a_mismatched_file_names_its_first_bad_key(tmp_path: Path, kind: str, message: str) -> None:
    path = _save(_mutated(kind), tmp_path / "w.safetensors")
    with pytest.raises(ConfigError) as refused:
        create_network("mobilenet_v2", path, width=0.25)
    assert str(refused.value).startswith(f"weights {path!r} do not fit mobilenet_v2: ")
    assert message in str(refused.value)


def test_a_checkpoint_without_or_with_another_classifier_loads_the_features(tmp_path: Path) -> None:
    source = _tiny("resnet18").state_dict()
    headless = {k: v for k, v in source.items() if not k.startswith("fc.")}
    network = create_network("resnet18", width=0.25)
    assert not load_state(network, headless, "fc.", "headless")
    ten_classes = {**headless, "fc.weight": torch.zeros(10, 512 // 4), "fc.bias": torch.zeros(10)}
    assert not load_state(network, ten_classes, "fc.", "ten classes")
    assert torch.equal(network.state_dict()["conv1.weight"], source["conv1.weight"])


def test_a_pickled_object_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"weights": Path("x")}, path)  # a pickled Python object, not a tensor
    with pytest.raises(ConfigError, match="cannot be read as tensors"):
        create_network("resnet18", str(path), width=0.25)


def test_unknown_names_and_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match="unknown image backbone 'vgg16'; known: efficientnet_lite0"
    ):
        create_network("vgg16")
    with pytest.raises(
        ConfigError,
        match="no bundled weights for 'resnet18'; bundled: efficientnet_lite0, mobilenet_v2",
    ):
        resolve("bundled:resnet18")
    with pytest.raises(ConfigError, match="does not exist"):
        resolve(str(tmp_path / "absent.pth"))


def test_bundled_weights_are_found_in_site_packages_without_a_network() -> None:
    path = bundled("mobilenet_v2")
    assert path.name.startswith("mobilenet_v2-") and path.suffix == ".pth"
    assert "site-packages" in path.parts or "dist-packages" in path.parts


# --- the split ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18", "efficientnet_lite0"])
def test_split_features_compute_what_the_whole_network_does(name: str) -> None:
    torch.manual_seed(0)
    network = create_network(name, width=0.25)
    features = SplitFeatures(network.stages(), 2, network.feature_dim).eval()
    classifier = ImageClassifier(features, 1000).eval()
    linear = [m for m in network.modules() if isinstance(m, torch.nn.Linear)][-1]
    classifier.head.load_state_dict(linear.state_dict())
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        probabilities, embedding = classifier(pixels)
        torch.testing.assert_close(probabilities, torch.softmax(network(pixels), -1))
        torch.testing.assert_close(features.from_prefix(features.prefix(pixels)), features(pixels))
    torch.testing.assert_close(embedding.norm(dim=1), torch.ones(2))


def test_only_the_tail_trains_and_the_prefix_keeps_its_statistics() -> None:
    features, dim = build_backbone("resnet18", trainable_stages=1, width=0.25)
    assert dim == 512 // 4
    features.train()
    assert not features.prefix.training and features.tail.training
    assert all(not p.requires_grad for p in features.prefix.parameters())
    prefix_bn = next(m for m in features.prefix.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = prefix_bn.running_mean.clone()
    features(torch.randn(4, 3, 64, 64)).sum().backward()
    assert torch.equal(prefix_bn.running_mean, before)
    assert all(p.grad is not None for p in features.tail.parameters())
    assert all(p.grad is None for p in features.prefix.parameters())


def test_trainable_stage_count_is_checked() -> None:
    with pytest.raises(ConfigError, match="trainable stages must be 0 to 5; got 6"):
        build_backbone("resnet18", trainable_stages=6, width=0.25)
    probe, _ = build_backbone("resnet18", trainable_stages=0, width=0.25)
    assert sum(p.numel() for p in probe.tail.parameters()) == 0  # a linear probe on frozen features
