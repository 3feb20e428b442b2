"""A first image version keeps the fine-tune or the head alone by k-fold cross-validation over
every seed image: folds are stratified and disjoint, every image is judged once by models that
never trained on it, the model is left as it was, and the verdict decides what is kept."""

from __future__ import annotations

import pytest
import torch

from service.config import TrainRecipe
from service.tasks.image.training import ImageClassifier, build_backbone
from service.tasks.image.training._trainer import (
    CachedSet,
    FoldScores,
    ImageTrainer,
    _Items,
    _stratified_folds,
)
from service.training._fitting import Evaluation


def _trainer(folds: int = 3) -> ImageTrainer:
    torch.manual_seed(0)
    features, _ = build_backbone("resnet18", trainable_stages=1, width=0.25)
    recipe = TrainRecipe(epochs=2, batch_size=4, head_epochs=20, selection_folds=folds)
    return ImageTrainer(ImageClassifier(features, 2), recipe, lambda _: None)


def _sets(trainer: ImageTrainer, images: int = 12, views: int = 2) -> tuple[CachedSet, CachedSet]:
    torch.manual_seed(1)
    labels = [0, 1] * (images // 2)
    pixels = [torch.randn(images, 3, 32, 32) + torch.tensor(labels).view(-1, 1, 1, 1)]
    pixels += [p + 0.1 * torch.randn_like(p) for p in pixels * (views - 1)]
    val_pixels = torch.randn(4, 3, 32, 32)
    return trainer.cache(pixels, labels), trainer.cache([val_pixels], [0, 1, 0, 1])


def test_folds_are_stratified_disjoint_and_cover_every_item() -> None:
    labels = [0] * 7 + [1] * 5 + [2] * 3
    folds = _stratified_folds(labels, 5, seed=0)
    assert folds is not None and len(folds) == 3  # the rarest class has three items
    assert sorted(i for fold in folds for i in fold) == list(range(len(labels)))
    for fold in folds:
        assert {labels[i] for i in fold} == {0, 1, 2}
    assert _stratified_folds(labels, 5, seed=0) == folds  # reproducible
    assert _stratified_folds([0, 0, 0, 1], 5, seed=0) is None  # one image of a class
    assert _stratified_folds(labels, 1, seed=0) is None  # selection by folds turned off


def test_items_map_training_views_and_validation_images() -> None:
    train = CachedSet(torch.arange(6.0).view(6, 1), torch.tensor([0, 1, 2] * 2), views=2)
    val = CachedSet(torch.tensor([[10.0], [11.0]]), torch.tensor([3, 4]))
    items = _Items(train, val)
    assert items.labels == [0, 1, 2, 3, 4]
    # item 1 is training image 1 (rows 1 and 4: both views); item 3 is validation image 0
    assert items.training([1, 3]).activations.flatten().tolist() == [1.0, 4.0, 10.0]
    assert items.plain([1, 3]).activations.flatten().tolist() == [1.0, 10.0]
    assert train.plain().activations.flatten().tolist() == [0.0, 1.0, 2.0]
    assert train.subset([2]).activations.flatten().tolist() == [2.0, 5.0]


def test_cross_validation_judges_every_image_and_leaves_the_model_as_it_was() -> None:
    trainer = _trainer()
    train, val = _sets(trainer)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    lines: list[str] = []
    trainer.progress = lines.append
    scores = trainer.cross_validate(train, val)
    assert scores is not None and scores.folds == 3
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any("3-fold cross-validation over 16 images" in line for line in lines)
    assert not any(line.startswith("epoch") for line in lines)  # the folds' epochs are quiet
    for evaluation in (scores.head, scores.tuned):
        assert 0.0 <= evaluation.accuracy <= 1.0 and evaluation.loss > 0


@pytest.mark.parametrize("tuned_wins", [True, False])
def test_the_cross_validation_verdict_decides_what_a_first_version_keeps(
    tuned_wins: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = _trainer()
    train, val = _sets(trainer)
    head, tuned = Evaluation(0.70, 0.6), Evaluation(0.80 if tuned_wins else 0.60, 0.5)
    monkeypatch.setattr(trainer, "cross_validate", lambda *_: FoldScores(head, tuned, 3))
    tail_before = {k: v.clone() for k, v in trainer.model.features.tail.state_dict().items()}
    report = trainer.fit(train, val)
    assert report.used_finetune is tuned_wins
    assert report.head_only["cv_accuracy"] == 0.70
    assert report.finetuned is not None and report.finetuned["cv_accuracy"] == tuned.accuracy
    tail_after = trainer.model.features.tail.state_dict()
    unchanged = all(torch.equal(tail_before[k], tail_after[k]) for k in tail_before)
    assert unchanged is not tuned_wins  # the head alone never touches the trainable stages


def test_too_few_images_for_folds_fall_back_to_the_validation_split() -> None:
    trainer = _trainer(folds=0)
    train, val = _sets(trainer)
    assert trainer.cross_validate(train, val) is None
    report = trainer.fit(train, val)
    assert "cv_accuracy" not in report.head_only
    assert report.finetuned is not None  # phase 2 ran and was judged on validation
