"""``loopserve`` for image models: init from an image folder or a path,label CSV, predict image
files against a served image model, label image folders (per-file errors, idempotent ids)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningApp
from fake_adaptation import MODEL, FakeAdaptationCore, FakeServer
from tasks.image import test_image_serving
from tasks.image.hostile_images import solid
from tasks.image.training.images import folder as image_folder_of

from service.cli import main
from service.config import ServerSettings, load_model_definition
from service.domain.loop import AddOutcome, NewSample, content_key, derived_sample_id
from service.errors import InvalidInput
from service.metrics import Metrics
from service.tasks.image import inspect, read_labeled_images

RED, GREEN, BLUE = (230, 20, 20), (20, 230, 20), (20, 20, 230)


def image_folder(root: Path) -> Path:
    """root/<label>/*.png|jpg: two labels, three images each, and a file that is no image."""
    for label, colour in (("red", RED), ("blue", BLUE)):
        folder = root / label
        folder.mkdir(parents=True)
        for i in range(3):
            fmt, suffix = ("PNG", ".png") if i % 2 else ("JPEG", ".jpg")
            (folder / f"{label}{i}{suffix}").write_bytes(solid(fmt, (40 + i, 30), colour))
        (folder / "notes.txt").write_text("ignored: not an image suffix")
    return root


def dirs(models: Path, tmp_path: Path) -> list[str]:
    return ["--models-dir", str(models), "--state-dir", str(tmp_path / "state")]


# ---- init ---------------------------------------------------------------------------------------


@pytest.fixture
def no_build(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record build_first_version's definitions instead of training (the build has its own tests)."""
    built: list[Any] = []
    monkeypatch.setattr(
        "service.training.build_first_version",
        lambda definition, registry, progress: built.append(definition),
    )
    return built


def test_init_from_an_image_folder_copies_the_seed_and_writes_the_definition(
    tmp_path: Path, no_build: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    source = image_folder(tmp_path / "photos")
    models = tmp_path / "models"
    args = ["--models-dir", str(models), "--state-dir", str(tmp_path / "state")]
    assert main(["init", "parts", "--task", "image", "--data", str(source), *args]) == 0
    assert "with labels blue, red" in capsys.readouterr().out
    toml = tomllib.loads((models / "parts" / "model.toml").read_text())
    assert toml["model"]["task"] == "image-classification"
    assert toml["model"]["labels"] == ["blue", "red"]
    assert toml["model"]["seed_data"] == "seed"
    assert toml["model"]["backbone"] == "bundled:mobilenet_v2"
    copied = sorted(
        p.relative_to(models / "parts" / "seed") for p in (models / "parts" / "seed").rglob("*.*")
    )
    assert [str(p) for p in copied] == [
        f"{label}/{label}{i}{'.png' if i % 2 else '.jpg'}"
        for label in ("blue", "red")
        for i in range(3)
    ]
    [definition] = no_build
    assert definition.task == "image-classification"
    assert definition.seed_path == (models / "parts" / "seed").resolve()


def test_init_from_a_csv_resolves_paths_next_to_it_and_keeps_both_of_two_same_names(
    tmp_path: Path, no_build: list[Any]
) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.png").write_bytes(
            solid("PNG", (20, 20), RED if folder == "a" else GREEN)
        )
    (tmp_path / "y.jpg").write_bytes(solid("JPEG", (20, 20), BLUE))
    data = tmp_path / "labels.csv"
    data.write_text("path,label\na/x.png,ok\nb/x.png,ok\ny.jpg,scratch\n")
    models = tmp_path / "models"
    code = main(["init", "parts", "--task", "image", "--data", str(data), *dirs(models, tmp_path)])
    assert code == 0
    seed = models / "parts" / "seed"
    assert sorted(str(p.relative_to(seed)) for p in seed.rglob("*.*")) == [
        "ok/x-1.png", "ok/x.png", "scratch/y.jpg",
    ]  # fmt: skip
    assert len(no_build) == 1


def test_init_refuses_a_file_that_is_not_an_image_naming_it(
    tmp_path: Path, no_build: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    source = image_folder(tmp_path / "photos")
    (source / "red" / "fake.jpg").write_bytes(b"GIF89a not really")
    models = tmp_path / "models"
    code = main(
        ["init", "parts", "--task", "image", "--data", str(source), *dirs(models, tmp_path)]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "fake.jpg" in err and "GIF" in err
    assert not (models / "parts").exists() and not no_build


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("path,label\nred0.jpg,ok\n", "needs at least two labels"),
        ("path,label\nred0.jpg,ok\nred0.jpg,../up\n", "cannot name a folder"),
        ("file,label\nred0.jpg,ok\n", "no 'path' column"),
        ("path,label\nred0.jpg,ok\n,bad\n", "line 3: empty path"),
    ],
)
def test_init_refuses_a_bad_csv(
    tmp_path: Path, no_build: list[Any], capsys: pytest.CaptureFixture[str], rows: str, message: str
) -> None:
    (tmp_path / "red0.jpg").write_bytes(solid("JPEG", (20, 20), RED))
    data = tmp_path / "labels.csv"
    data.write_text(rows)
    code = main(
        ["init", "parts", "--task", "image", "--data", str(data), *dirs(tmp_path / "m", tmp_path)]
    )
    assert code == 2
    assert message in capsys.readouterr().err
    assert not no_build


def test_init_draws_a_missing_seed_with_the_models_generator(
    tmp_path: Path, no_build: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "models" / "drawn"
    model.mkdir(parents=True)
    (model / "model.toml").write_text(
        '[model]\ntask = "image-classification"\nseed_data = "seed"\nlabels = ["a", "b"]\n'
    )
    (model / "generate_seed.py").write_text(
        "import sys, pathlib\n"
        "for label in ('a', 'b'):\n"
        "    (pathlib.Path(sys.argv[1]) / label).mkdir(parents=True)\n"
    )
    code = main(["init", "drawn", *dirs(tmp_path / "models", tmp_path)])
    assert code == 0
    assert "generating seed images" in capsys.readouterr().out
    assert (model / "seed" / "a").is_dir() and (model / "seed" / "b").is_dir()
    assert len(no_build) == 1


# ---- predict ------------------------------------------------------------------------------------


# The colours model (red, green, blue) served by the real server.
image_server = test_image_serving.image_server


def test_predict_classifies_image_files_and_reports_each_bad_one(
    image_server: RunningApp, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = []
    # More files than one request carries, so that a refused batch is resent file by file.
    for i, colour in enumerate([RED, GREEN, BLUE] * 4):
        path = tmp_path / f"p{i}.png"
        path.write_bytes(solid("PNG", (30, 20), colour))
        files.append(str(path))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(solid("JPEG", (30, 20), RED)[:40])
    files[1:1] = [str(broken), str(tmp_path / "missing.png")]
    code = main(["predict", *files, "--addr", image_server.address])
    out, err = capsys.readouterr()
    assert code == 1
    lines = [line.split("\t") for line in out.splitlines()]
    assert [(label, file) for label, _, file in lines] == [
        (["red", "green", "blue"][i % 3], str(tmp_path / f"p{i}.png")) for i in range(12)
    ]
    assert all(0.5 < float(confidence) <= 1.0 for _, confidence, _ in lines)
    assert f"{tmp_path / 'missing.png'}: cannot read" in err
    assert f"{broken}: INVALID_ARGUMENT: " in err
    assert "image[0]" in err  # the server's own message, about the one image sent


def test_predict_json_for_images(
    image_server: RunningApp, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(solid("JPEG", (64, 48), GREEN))
    assert main(["predict", str(photo), "--json", "--addr", image_server.address]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["file"] == str(photo) and row["label"] == "green"
    assert set(row["probabilities"]) == {"red", "green", "blue"}


# ---- label --------------------------------------------------------------------------------------


class ImageFakeCore(FakeAdaptationCore):
    """Takes image samples: bytes in data, refused as the server refuses what is no image."""

    async def add_samples(self, model: str, samples: list[NewSample], *, caller: str) -> AddOutcome:
        self._check_model(model)
        self.batches.append(list(samples))
        for i, sample in enumerate(samples):
            try:
                inspect(sample.data)
            except InvalidInput as exc:
                raise InvalidInput(f"sample[{i}]: {exc}") from None
        # The store keeps a sample's bytes once, under their key, in the sample's text.
        keyed = [dataclasses.replace(s, text=content_key(s.data), data=b"") for s in samples]
        return await super().add_samples(model, keyed, caller=caller)


@pytest.fixture
def image_core() -> Iterator[tuple[ImageFakeCore, FakeServer]]:
    core = ImageFakeCore()
    server = FakeServer(core)
    yield core, server
    server.stop()


def test_label_posts_a_folder_with_content_ids_and_reports_refused_files(
    image_core: tuple[ImageFakeCore, FakeServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    core, server = image_core
    # The fake core's labels: billing, shipping, other.
    for label, colour in (("billing", RED), ("shipping", GREEN)):
        (tmp_path / "in" / label).mkdir(parents=True)
        for i in range(2):
            (tmp_path / "in" / label / f"{i}.png").write_bytes(solid("PNG", (20 + i, 20), colour))
    (tmp_path / "in" / "shipping" / "bad.jpg").write_bytes(b"\xff\xd8\xff truncated")
    args = ["label", str(tmp_path / "in"), "--addr", server.address, "--model", MODEL]
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert out.strip() == f"{MODEL}: 4 accepted, 0 duplicates, 1 refused (5 images)"
    assert f"{tmp_path / 'in' / 'shipping' / 'bad.jpg'}: INVALID_ARGUMENT: sample[0]: " in err
    first = (tmp_path / "in" / "billing" / "0.png").read_bytes()
    stored = core.samples[derived_sample_id(content_key(first), "billing")]
    assert stored.text == content_key(first) and stored.label == "billing"
    # Posting the same folder again stores nothing twice.
    assert main(args) == 1
    assert "0 accepted, 4 duplicates, 1 refused" in capsys.readouterr().out


def test_label_reads_a_path_label_csv_with_prediction_ids(
    image_core: tuple[ImageFakeCore, FakeServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    core, server = image_core
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.webp").write_bytes(solid("WEBP", (20, 20), BLUE))
    (tmp_path / "img" / "b.png").write_bytes(solid("PNG", (20, 20), RED))
    candidates = tmp_path / "candidates.csv"
    candidates.write_text(
        "path,label,prediction_id,confidence\nimg/a.webp,other,req-1,0.41\nimg/b.png,,req-2,0.5\n"
    )
    code = main(["label", str(candidates), "--skip-unlabeled", "--json", "--addr", server.address])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["accepted"] == 1
    [sample] = core.batches[0]  # as posted (the base class then records it keyed)
    assert (sample.label, sample.prediction_id) == ("other", "req-1")
    assert sample.data == (tmp_path / "img" / "a.webp").read_bytes()


# ---- the example image model --------------------------------------------------------------------

EXAMPLE = Path(__file__).parents[1] / "models" / "part-inspection"


def test_the_example_image_model_draws_the_same_seed_at_the_same_seed(tmp_path: Path) -> None:
    generator = EXAMPLE / "generate_seed.py"
    for out in ("a", "b"):
        command = [sys.executable, str(generator), str(tmp_path / out), "--per-class", "2"]
        subprocess.run(command, check=True, capture_output=True, timeout=120)
    drawn = read_labeled_images(tmp_path / "a")
    definition = load_model_definition(EXAMPLE.parent, EXAMPLE.name)
    assert definition.task == "image-classification"
    assert sorted({image.label for image in drawn}) == list(definition.labels)
    assert len(drawn) == 2 * len(definition.labels)
    for image in drawn:
        twin = tmp_path / "b" / image.path.relative_to(tmp_path / "a")
        assert image.path.read_bytes() == twin.read_bytes()
        assert inspect(image.path.read_bytes()).format == "JPEG"


# ---- end to end ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_image_model_from_init_to_predict_and_label(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """init --task image builds version 1 with the real builder (a small random backbone at 64 px
    stands in for MobileNetV2 at 224), the server serves it, predict classifies held-out files
    and label posts a folder."""
    monkeypatch.setattr(
        "service.tasks.image._definition.DEFAULT_IMAGE_BACKBONE", "resnet18@0.25:random"
    )
    monkeypatch.setattr("service.tasks.image._definition.DEFAULT_IMAGE_SIZE", 64)
    image_folder_of(tmp_path / "photos", ["red", "blue"], 16)
    models, state = tmp_path / "models", tmp_path / "state"
    init = ["init", "shapes", "--task", "image", "--data", str(tmp_path / "photos")]
    assert main([*init, "--models-dir", str(models), "--state-dir", str(state)]) == 0
    assert "published shapes version 1" in capsys.readouterr().out
    held_out = image_folder_of(tmp_path / "new", ["red", "blue"], 6, start=100)
    settings = ServerSettings(
        models=("shapes",), models_dir=models, state_dir=state, host="127.0.0.1",
        grpc_port=0, metrics_port=0, drain_seconds=2.0,
    )  # fmt: skip
    app = RunningApp(settings, Metrics())
    try:
        files = sorted(str(p) for p in held_out.rglob("*.*"))
        assert main(["predict", *files, "--addr", app.address]) == 0
        predicted = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
        assert [file for _, _, file in predicted] == files
        right = sum(Path(file).parent.name == label for label, _, file in predicted)
        assert right >= 0.75 * len(files), predicted  # chance is a half
        assert main(["label", str(held_out), "--addr", app.address]) == 0
        assert capsys.readouterr().out.strip() == (
            f"shapes: {len(files)} accepted, 0 duplicates, 0 refused ({len(files)} images)"
        )
    finally:
        app.stop()
