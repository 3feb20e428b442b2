"""One contract suite over every registered task: what serving relies on, whatever the modality.

Each task supplies a case: a model definition, a valid request's input tensor, and a version
directory its preprocessor can open. The same checks then run over all of them. Every task also
names its training module, which implements ``service.training.TaskTraining``.
"""

from __future__ import annotations

import dataclasses
import inspect
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from tasks.image.hostile_images import solid

from service import tasks
from service.config import ModelDefinition
from service.domain.loop import NewSample
from service.domain.versions import VersionMeta
from service.errors import ConfigError, InvalidInput
from service.types import Tensor


@dataclass(frozen=True)
class Case:
    definition: ModelDefinition
    tensor: Callable[[int], Tensor]  # a valid input tensor of n elements
    version_dir: Path
    sample: NewSample  # a valid labeled sample
    write_seed: Callable[[], None]  # writes seed data of labels "a" and "b" where it names


def _text_case(tmp: Path, backbone: Path) -> Case:
    version_dir = tmp / "text-version"
    version_dir.mkdir()
    shutil.copy(backbone / "tokenizer.json", version_dir / "tokenizer.json")
    definition = ModelDefinition(name="t", directory=tmp, task="text-classification")

    def write_seed() -> None:
        seed = "text,label\na first text,a\na second text,b\n"
        definition.seed_path.write_text(seed, encoding="utf-8")

    return Case(
        definition,
        lambda n: Tensor("text", "BYTES", (n,), [f"text number {i}".encode() for i in range(n)]),
        version_dir,
        NewSample("a labeled text", "a"),
        write_seed,
    )


def _image_case(tmp: Path) -> Case:
    version_dir = tmp / "image-version"
    version_dir.mkdir()
    definition = ModelDefinition(
        name="i", directory=tmp, task="image-classification", inputs={"size": 32}, seed_data="seed"
    )
    jpeg = solid("JPEG", (80, 60))

    def write_seed() -> None:
        for label in ("a", "b"):
            (definition.seed_path / label).mkdir(parents=True)
            (definition.seed_path / label / "1.png").write_bytes(solid("PNG"))

    return Case(
        definition,
        lambda n: Tensor("image", "BYTES", (n,), [jpeg] * n),
        version_dir,
        NewSample("", "a", data=jpeg),
        write_seed,
    )


@pytest.fixture(params=["text-classification", "image-classification"])
def case(request: pytest.FixtureRequest, tmp_path: Path, tiny_backbone: Path) -> Case:
    if request.param == "text-classification":
        return _text_case(tmp_path, tiny_backbone)
    return _image_case(tmp_path)


def _meta(case: Case) -> VersionMeta:
    task = tasks.get(case.definition.task)
    return VersionMeta(
        labels=("a", "b"),
        max_seq_length=16,
        task=task.name,
        inputs=task.version_inputs(case.definition),
    )


def test_every_task_is_registered_by_its_name() -> None:
    assert set(tasks.names()) >= {"text-classification", "image-classification"}
    for name in tasks.names():
        assert tasks.get(name).name == name


def test_an_unknown_task_is_a_config_error_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown task 'audio'.*'image-classification'"):
        tasks.get("audio")


def test_a_valid_request_decodes_to_one_item_per_element(case: Case) -> None:
    inputs = tasks.get(case.definition.task).input_contract(case.definition)
    assert inputs.input_specs()
    assert len(inputs.decode([case.tensor(3)])) == 3


def test_a_wrong_tensor_name_is_refused_with_what_to_send(case: Case) -> None:
    inputs = tasks.get(case.definition.task).input_contract(case.definition)
    tensor = dataclasses.replace(case.tensor(1), name="nonsense")
    with pytest.raises(InvalidInput, match=r"got input tensor\(s\) 'nonsense'; send one input"):
        inputs.decode([tensor])


def test_more_elements_than_the_limit_are_refused(case: Case) -> None:
    inputs = tasks.get(case.definition.task).input_contract(case.definition)
    too_many = inputs.limits.max_elements + 1
    with pytest.raises(InvalidInput, match=rf"holds {too_many} .*at most {too_many - 1}"):
        inputs.decode([case.tensor(too_many)])


def test_an_empty_request_is_refused(case: Case) -> None:
    inputs = tasks.get(case.definition.task).input_contract(case.definition)
    with pytest.raises(InvalidInput, match="holds no"):
        inputs.decode([case.tensor(0)])


def test_a_valid_sample_passes_and_an_empty_one_is_refused_naming_it(case: Case) -> None:
    inputs = tasks.get(case.definition.task).input_contract(case.definition)
    inputs.validate_sample(3, case.sample)
    with pytest.raises(InvalidInput, match=r"^sample\[3\] "):
        inputs.validate_sample(3, NewSample("", "a"))


def test_a_sample_of_both_a_text_and_content_is_refused(case: Case) -> None:
    inputs = tasks.get(case.definition.task).input_contract(case.definition)
    both = NewSample("a text", "a", data=solid("PNG"))
    with pytest.raises(InvalidInput, match=r"^sample\[0\] has (a text|content bytes)"):
        inputs.validate_sample(0, both)


def test_seed_data_reads_as_valid_labeled_samples(case: Case) -> None:
    task = tasks.get(case.definition.task)
    case.write_seed()
    seed = list(task.seed_samples(case.definition))
    assert sorted(s.label for s in seed) == ["a", "b"]
    inputs = task.input_contract(case.definition)
    for i, sample in enumerate(seed):
        inputs.validate_sample(i, sample)


def test_the_preprocessor_feeds_every_item_exactly_once(case: Case) -> None:
    task = tasks.get(case.definition.task)
    items = task.input_contract(case.definition).decode([case.tensor(5)])
    preprocessor = task.preprocessor(case.version_dir, _meta(case))
    groups = preprocessor.groups(items)
    assert sorted(p for g in groups for p in g.positions) == list(range(5))
    for group in groups:
        assert group.feeds
        assert all(len(array) == len(group.positions) for array in group.feeds.values())


def test_warm_up_items_and_properties_are_usable(case: Case) -> None:
    task = tasks.get(case.definition.task)
    preprocessor = task.preprocessor(case.version_dir, _meta(case))
    assert preprocessor.groups(preprocessor.warmup_items())
    properties = preprocessor.properties()
    assert properties and all(isinstance(v, str) and v for v in properties.values())


def test_a_version_records_its_input_options_as_json_values(case: Case) -> None:
    recorded = tasks.get(case.definition.task).version_inputs(case.definition)
    import json

    assert json.loads(json.dumps(recorded)) == recorded


def test_a_fine_tune_job_continues_from_the_backbone_its_task_names(tmp_path: Path) -> None:
    text = ModelDefinition(name="t", directory=tmp_path, backbone="encoder")
    meta = VersionMeta(labels=("a", "b"), max_seq_length=16, backbone="resnet18@0.25:w.pt")
    assert tasks.get(text.task).job_backbone(text, meta) == str(tmp_path / "encoder")
    image = dataclasses.replace(text, task="image-classification")
    assert tasks.get(image.task).job_backbone(image, meta) == "resnet18@0.25:w.pt"


def test_an_image_model_takes_preprocessed_tensors_too(tmp_path: Path) -> None:
    case = _image_case(tmp_path)
    inputs = tasks.get(case.definition.task).input_contract(case.definition)
    pixels = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    items = inputs.decode([Tensor("image", "UINT8", pixels.shape, pixels)])
    assert [item.shape for item in items] == [(3, 32, 32)] * 2
    normalised = np.zeros((1, 3, 32, 32), dtype=np.float32)
    assert len(inputs.decode([Tensor("image", "FP32", normalised.shape, normalised)])) == 1
    wrong = np.zeros((1, 3, 16, 16), dtype=np.float32)
    with pytest.raises(InvalidInput, match=r"FP32 image tensor has shape \[1,3,16,16\]"):
        inputs.decode([Tensor("image", "FP32", wrong.shape, wrong)])


def test_a_broken_image_is_refused_naming_its_element(tmp_path: Path) -> None:
    case = _image_case(tmp_path)
    inputs = tasks.get(case.definition.task).input_contract(case.definition)
    good = solid("PNG")
    with pytest.raises(InvalidInput, match=r"^image\[1\]: "):
        inputs.decode([Tensor("image", "BYTES", (2,), [good, good[:40]])])


def test_a_bad_input_table_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    image = ModelDefinition(name="i", directory=tmp_path, task="image-classification")
    with pytest.raises(ConfigError, match=r"\[input\].*unknown key\(s\) colour"):
        tasks.get(image.task).input_contract(dataclasses.replace(image, inputs={"colour": 1}))
    with pytest.raises(ConfigError, match="size"):
        tasks.get(image.task).input_contract(dataclasses.replace(image, inputs={"size": 4}))
    text = ModelDefinition(name="t", directory=tmp_path)
    with pytest.raises(ConfigError, match=r"\[input\] size: a text-classification model has none"):
        tasks.get(text.task).input_contract(dataclasses.replace(text, inputs={"size": 32}))


# --- the training side -------------------------------------------------------------------------


@pytest.mark.parametrize("name", tasks.names())
def test_a_task_names_a_training_module_that_implements_the_training_contract(name: str) -> None:
    from service.training import TaskTraining, task_training
    from service.training._contract import MEMBERS

    path = tasks.get(name).training
    assert path.startswith("service.tasks.") and path.endswith(".training")
    training = task_training(name)
    assert isinstance(training, TaskTraining)
    assert training.__name__ == path
    for member in MEMBERS:
        wanted = list(inspect.signature(getattr(TaskTraining, member)).parameters)[1:]  # no self
        assert list(inspect.signature(getattr(training, member)).parameters) == wanted, member


def test_a_training_module_without_the_contract_is_refused_naming_what_it_lacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from service.training import task_training

    fake = SimpleNamespace(name="audio-classification", training="service.training._data")
    monkeypatch.setitem(tasks._TASKS, fake.name, fake)
    with pytest.raises(
        TypeError,
        match=r"task 'audio-classification': its training module service.training._data lacks "
        r"build_first_version, train_candidate",
    ):
        task_training(fake.name)


def test_the_training_of_an_unknown_task_is_a_config_error() -> None:
    from service.training import task_training

    with pytest.raises(ConfigError, match=r"unknown task 'audio'"):
        task_training("audio")
