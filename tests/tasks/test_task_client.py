"""The task contract's client side over every registered task: what the ``loopserve`` command
sends and reads, checked against the same task's serving side.

Each task supplies a case: command-line arguments, a label file, labeling-candidate payloads and
the data of ``init --data``. Requests made from the arguments must decode on the server into one
item each, samples read from a label file must pass the server's sample validation, candidates
written out must read back as a label file, and a definition made from the data must have seed
data the server accepts.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from tasks.image.hostile_images import solid

from service import tasks
from service.config import ModelDefinition
from service.errors import InvalidInput


@dataclass(frozen=True)
class ClientCase:
    task: str
    arguments: Callable[[Path], list[str]]  # valid `loopserve predict` arguments
    label_file: Callable[[Path], Path]  # a label file of labels "a" and "b"; `init --data` too
    payloads: list[str | bytes]  # labeling candidates' payloads as the server gives them out
    inputs: dict[str, int]  # the served model's [input] table


def _text_case() -> ClientCase:
    def label_file(tmp: Path) -> Path:
        path = tmp / "labels.csv"
        path.write_text("text,label\na first text,a\na second text,b\n", encoding="utf-8")
        return path

    return ClientCase(
        "text-classification",
        lambda tmp: ["where is my parcel", "héllo"],
        label_file,
        ["a served text", "another one"],
        {},
    )


def _image_case() -> ClientCase:
    def arguments(tmp: Path) -> list[str]:
        (tmp / "one.jpg").write_bytes(solid("JPEG", (40, 30)))
        (tmp / "two.png").write_bytes(solid("PNG", (20, 20)))
        return [str(tmp / "one.jpg"), str(tmp / "two.png")]

    def label_file(tmp: Path) -> Path:
        for label, fmt in (("a", "PNG"), ("b", "JPEG")):
            (tmp / "labeled" / label).mkdir(parents=True)
            (tmp / "labeled" / label / f"1.{fmt.lower()}").write_bytes(solid(fmt, (24, 24)))
        return tmp / "labeled"

    payloads: list[str | bytes] = [solid("JPEG"), solid("WEBP")]
    return ClientCase("image-classification", arguments, label_file, payloads, {"size": 32})


@pytest.fixture(params=["text-classification", "image-classification"])
def case(request: pytest.FixtureRequest) -> ClientCase:
    return _text_case() if request.param == "text-classification" else _image_case()


def _served(case: ClientCase, tmp: Path) -> ModelDefinition:
    return ModelDefinition(name="m", directory=tmp, task=case.task, inputs=dict(case.inputs))


def test_every_task_has_a_client_side_named_by_its_own_option() -> None:
    options = [task.client().help.option for task in tasks.in_order()]
    assert len(set(options)) == len(options)
    for task in tasks.in_order():
        assert tasks.by_option(task.client().help.option) is task
    assert tasks.in_order()[0].name == "text-classification"  # the default comes first


def test_an_unknown_option_is_a_config_error_naming_the_known_ones() -> None:
    from service.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown task 'audio'; known tasks: 'text', 'image'"):
        tasks.by_option("audio")


def test_predict_arguments_make_a_request_that_decodes_to_one_item_each(
    case: ClientCase, tmp_path: Path
) -> None:
    task = tasks.get(case.task)
    arguments = case.arguments(tmp_path)
    inputs = task.client().predict_inputs(arguments)
    assert inputs.errors == []
    assert [item.name for item in inputs.items] == arguments
    tensor = task.client().request(inputs.items)
    served = task.input_contract(_served(case, tmp_path))
    assert [spec.name for spec in served.input_specs()] == [tensor.name]
    assert len(served.decode([tensor])) == len(arguments)


def test_a_label_file_is_recognised_and_reads_as_samples_the_server_accepts(
    case: ClientCase, tmp_path: Path
) -> None:
    task = tasks.get(case.task)
    path = case.label_file(tmp_path)
    assert task.client().recognises_file(path)
    assert tasks.recognising(lambda side: side.recognises_file(path)) is task
    read = task.client().read_labels(path, skip_unlabeled=False)
    assert (read.errors, read.listed) == ([], 2)
    assert sorted(s.label for s in read.samples) == ["a", "b"]
    assert len(read.names) == len(read.samples)
    served = task.input_contract(_served(case, tmp_path))
    for i, sample in enumerate(read.samples):
        served.validate_sample(i, sample)
    again = task.client().read_labels(path, skip_unlabeled=False)
    assert [s.id for s in again.samples] == [s.id for s in read.samples]  # posting is idempotent
    assert all(s.id for s in read.samples)


def test_candidates_written_out_read_back_as_a_label_file(case: ClientCase, tmp_path: Path) -> None:
    task = tasks.get(case.task)
    assert tasks.recognising(lambda side: side.recognises_payloads(case.payloads)) is task
    out = tmp_path / "candidates.csv"
    column = task.client().write_candidates(out, case.payloads)
    assert len(column.cells) == len(column.values) == len(case.payloads)
    with out.open("w", newline="", encoding="utf-8") as handle:  # as `loopserve candidates` does
        writer = csv.writer(handle)
        writer.writerow([column.name, "label", "prediction_id"])
        writer.writerows([cell, "a", f"req-{i}"] for i, cell in enumerate(column.cells))
    read = task.client().read_labels(out, skip_unlabeled=True)
    assert read.errors == []
    assert [s.text or s.data for s in read.samples] == case.payloads
    assert [s.prediction_id for s in read.samples] == ["req-0", "req-1"]


def test_init_data_makes_a_definition_whose_seed_the_server_accepts(
    case: ClientCase, tmp_path: Path
) -> None:
    task = tasks.get(case.task)
    data = case.label_file(tmp_path)
    definition = task.client().create_definition(tmp_path / "models", "made", data)
    assert definition.task == task.name and set(definition.labels) == {"a", "b"}
    task.client().prepare_seed(definition)
    served = task.input_contract(definition)
    seed = list(task.seed_samples(definition))
    assert sorted(s.label for s in seed) == ["a", "b"]
    for i, sample in enumerate(seed):
        served.validate_sample(i, sample)


def test_a_file_no_other_task_recognises_is_the_default_tasks(tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"
    assert tasks.recognising(lambda side: side.recognises_file(missing)).name == (
        "text-classification"
    )
    with pytest.raises(InvalidInput, match="cannot read"):
        tasks.recognising(lambda side: side.recognises_file(missing)).client().read_labels(
            missing, skip_unlabeled=False
        )
