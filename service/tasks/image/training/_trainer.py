"""Training an image classifier on cached activations of its frozen prefix.

The backbone is split (``SplitFeatures``): the prefix stages never train, so their output for
every training image and augmented view is computed once; each epoch then runs only the
trainable stages and the head, which is what makes a round take seconds on a CPU.

Phase 1 fits the head alone on the pooled features of the whole frozen network (the baseline).
Phase 2 fine-tunes the trainable stages and the head at a low learning rate, each stage's rate
decayed by its depth below the top, with early stopping on the validation images.

Which of the two a first version keeps is decided by k-fold cross-validation over every seed
image (``[train] selection_folds``), not by the validation split alone: a fifth of a hundred
images is twenty, too few to tell the two apart. (In scratch runs on ELPV at 50 images per class
the fine-tune was 6-15 points above the head on held-out cells in three of four draws; at 10 per
class the head was ahead.) Each fold fits both on the other folds' images and scores them on its
own images' plain view, so every image is judged once by models that never trained on it. When
some class has fewer images than two folds need, the validation loss decides.

BatchNorm layers stay in eval mode throughout: with batches of a few images their batch
statistics are noise, and updating the running statistics from them would move every later
prediction. Their scale and shift still train.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from service.calibration import Calibration, calibrate
from service.config import TrainRecipe
from service.tasks.image.training._export import ImageClassifier
from service.training._fitting import (
    Criterion,
    Evaluation,
    Progress,
    TrainReport,
    class_weights,
    evaluate_logits,
    fit_head,
    keep_better,
)

EVAL_BATCH = 64


def freeze_batchnorm(module: nn.Module) -> None:
    """Every BatchNorm layer of ``module`` to eval mode: normalise with the running statistics
    and leave them unchanged."""
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.eval()


class CachedSet:
    """Prefix activations of some images (``views`` views stacked, view-major: the plain view
    first) and their labels."""

    def __init__(self, activations: torch.Tensor, labels: torch.Tensor, views: int = 1) -> None:
        self.activations = activations
        self.labels = labels
        self.views = views

    @property
    def images(self) -> int:
        return len(self.labels) // max(self.views, 1)

    def plain(self) -> CachedSet:
        """The first view only: what the server computes for each image."""
        n = self.images
        return CachedSet(self.activations[:n], self.labels[:n])

    def subset(self, images: Sequence[int]) -> CachedSet:
        """Every view of the images at ``images``."""
        n = self.images
        index = [view * n + i for view in range(self.views) for i in images]
        return CachedSet(self.activations[index], self.labels[index], self.views)

    def __len__(self) -> int:
        return len(self.labels)


class ImageTrainer:
    def __init__(self, model: ImageClassifier, recipe: TrainRecipe, progress: Progress) -> None:
        self.model = model
        self.recipe = recipe
        self.progress = progress
        torch.manual_seed(recipe.seed)

    @torch.no_grad()
    def cache(self, views: Sequence[torch.Tensor], labels: Sequence[int]) -> CachedSet:
        """The frozen prefix's activations of every view of the images labelled ``labels``."""
        self.model.eval()
        prefix = self.model.features.prefix
        chunks = [
            prefix(view[i : i + EVAL_BATCH])
            for view in views
            for i in range(0, len(view), EVAL_BATCH)
        ]
        y = torch.tensor(list(labels) * len(views), dtype=torch.long)
        if not chunks:
            return CachedSet(torch.empty(0), y, len(views))
        return CachedSet(torch.cat(chunks), y, len(views))

    def fit(self, train: CachedSet, val: CachedSet) -> TrainReport:
        """Both phases (a first version): the head alone, then the fine-tune when
        cross-validation (or, with too few images, the validation loss) prefers it."""
        started = time.perf_counter()
        r = self.recipe
        tunable = bool(len(self.model.features.tail)) and r.epochs > 0
        folds = self.cross_validate(train, val) if tunable else None
        x_train, x_val = self._pooled(train), self._pooled(val)
        head_eval, head_epochs = fit_head(
            self.model.head, r, (x_train, train.labels), (x_val, val.labels), r.head_epochs
        )
        report = TrainReport(vars(head_eval), None, False, 0.0, head_epochs=head_epochs)
        self.progress(f"head on frozen features: validation accuracy {head_eval.accuracy:.3f}")
        what = f"the last {len(self.model.features.tail)} stage(s)"
        if folds is not None:
            report.head_only.update(folds.head_scores())
            if folds.fine_tune_wins():
                tuned, report.finetune_epochs = self._fine_tune(
                    train, val, report, Evaluation.lower_loss_than
                )
                report.finetuned = {**vars(tuned), **folds.tuned_scores()}
                report.used_finetune = True
                self.progress(f"fine-tuned {what}: validation accuracy {tuned.accuracy:.3f}")
            else:
                report.finetuned = folds.tuned_scores()
                self.progress("cross-validation preferred the head alone: keeping the head")
        elif tunable:
            head_state = _copy(self.model)
            tuned, report.finetune_epochs = self._fine_tune(
                train, val, report, Evaluation.lower_loss_than
            )
            scores = (head_eval, tuned)
            judge = Evaluation.lower_loss_than
            keep_better(
                self.model, head_state, scores, bool(len(val)), judge, report, self.progress, what
            )
        report.calibration = self.calibrate(val)
        report.seconds = time.perf_counter() - started
        self.model.eval()
        return report

    def cross_validate(self, train: CachedSet, val: CachedSet) -> FoldScores | None:
        """Out-of-fold scores of the head alone and of the fine-tune over every image of
        ``train`` and ``val``; None when some class has fewer images than two folds need.
        The model is left as it was."""
        items = _Items(train, val)
        folds = _stratified_folds(items.labels, self.recipe.selection_folds, self.recipe.seed)
        if folds is None:
            return None
        started, initial = time.perf_counter(), _copy(self.model)
        pooled = self._pooled(items.all_views)
        head_logits, tuned_logits, gold = [], [], []
        for held in folds:
            excluded = set(held)
            rest = [i for i in range(len(items.labels)) if i not in excluded]
            fit_on, judged_on = items.training(rest), items.plain(held)
            self.model.load_state_dict(initial)
            fit_head(
                self.model.head,
                self.recipe,
                (pooled[items.view_rows(rest)], fit_on.labels),
                (pooled[items.plain_rows(held)], judged_on.labels),
                self.recipe.head_epochs,
            )
            head_logits.append(self._logits(judged_on))
            scratch = TrainReport({}, None, False, 0.0)
            self._fine_tune(fit_on, judged_on, scratch, Evaluation.lower_loss_than, quiet=True)
            tuned_logits.append(self._logits(judged_on))
            gold.append(judged_on.labels)
        self.model.load_state_dict(initial)
        labels = torch.cat(gold)
        scores = FoldScores(
            evaluate_logits(torch.cat(head_logits), labels),
            evaluate_logits(torch.cat(tuned_logits), labels),
            len(folds),
        )
        self.progress(
            f"{len(folds)}-fold cross-validation over {len(labels)} images in "
            f"{time.perf_counter() - started:.0f}s: head alone accuracy "
            f"{scores.head.accuracy:.3f} (loss {scores.head.loss:.3f}), fine-tune "
            f"{scores.tuned.accuracy:.3f} (loss {scores.tuned.loss:.3f})"
        )
        return scores

    def fine_tune(self, train: CachedSet, val: CachedSet) -> TrainReport:
        """Phase 2 only, from the current weights (an incremental fine-tune), judged by
        validation accuracy."""
        started = time.perf_counter()
        report = TrainReport({}, None, True, 0.0)
        tuned, report.finetune_epochs = self._fine_tune(train, val, report, Evaluation.better_than)
        report.finetuned = vars(tuned)
        report.seconds = time.perf_counter() - started
        self.model.eval()
        return report

    def calibrate(self, val: CachedSet) -> Calibration:
        probabilities = self.probabilities(val)
        return calibrate(probabilities, val.labels.numpy(), "validation" if len(val) else "none")

    @torch.no_grad()
    def probabilities(self, cached: CachedSet) -> npt.NDArray[np.float32]:
        logits = self._logits(cached)
        return torch.softmax(logits, dim=-1).numpy()

    @torch.no_grad()
    def pooled_mean(self, cached: CachedSet) -> torch.Tensor:
        return self._pooled(cached).mean(0)

    # -------------------------------------------------------------------------------------------

    @torch.no_grad()
    def _pooled(self, cached: CachedSet) -> torch.Tensor:
        self.model.eval()
        if not len(cached):
            return torch.empty(0, self.model.head.in_features)
        return torch.cat([self.model.features.from_prefix(a) for a in _batches(cached.activations)])

    @torch.no_grad()
    def _logits(self, cached: CachedSet) -> torch.Tensor:
        self.model.eval()
        if not len(cached):
            return torch.empty(0, self.model.head.out_features)
        return torch.cat([self._forward(a) for a in _batches(cached.activations)])

    def _forward(self, activations: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model.head(self.model.features.from_prefix(activations))
        return logits

    def _fine_tune(
        self,
        train: CachedSet,
        val: CachedSet,
        report: TrainReport,
        judge: Criterion,
        quiet: bool = False,
    ) -> tuple[Evaluation, int]:
        """Train the tail and the head; keep the best epoch on validation (the training set
        when there is none), stopping after ``patience`` epochs without progress."""
        r = self.recipe
        optimizer = self._unfreeze_tail()
        rng = random.Random(r.seed)
        weights = (
            class_weights(train.labels, self.model.head.out_features) if r.balance_classes else None
        )
        best: tuple[Evaluation, dict[str, torch.Tensor], int] | None = None
        stale = 0
        for epoch in range(r.epochs):
            self._train_epoch(train, optimizer, rng, weights)
            scored = val if len(val) else train
            current = evaluate_logits(self._logits(scored), scored.labels)
            report.history.append(
                {"epoch": epoch + 1, "accuracy": current.accuracy, "loss": current.loss}
            )
            if not quiet:
                self.progress(
                    f"epoch {epoch + 1}: validation accuracy {current.accuracy:.3f}, "
                    f"loss {current.loss:.4f}"
                )
            if judge(current, best[0] if best else None):
                best, stale = (current, _copy(self.model), epoch + 1), 0
            else:
                stale += 1
                if stale >= r.patience:
                    break
        self.model.requires_grad_(False)
        if best is None:  # no epoch ran
            return evaluate_logits(self._logits(val), val.labels), 0
        self.model.load_state_dict(best[1])
        return best[0], best[2]

    def _unfreeze_tail(self) -> torch.optim.Optimizer:
        """The tail's stages and the head trainable; the top stage at ``learning_rate``, each
        one below at ``layer_lr_decay`` times the rate above it."""
        r = self.recipe
        self.model.requires_grad_(False)
        stages = list(self.model.features.tail)
        groups: list[dict[str, Any]] = []
        for depth, stage in enumerate(reversed(stages)):
            stage.requires_grad_(True)
            rate = r.learning_rate * r.layer_lr_decay**depth
            groups.append({"params": list(stage.parameters()), "lr": rate})
        self.model.head.requires_grad_(True)
        groups.append(
            {"params": list(self.model.head.parameters()), "lr": r.finetune_head_learning_rate}
        )
        return torch.optim.AdamW(groups, weight_decay=0.01)

    def _train_epoch(
        self,
        train: CachedSet,
        optimizer: torch.optim.Optimizer,
        rng: random.Random,
        weights: torch.Tensor | None,
    ) -> None:
        self.model.train()
        freeze_batchnorm(self.model)
        order = list(range(len(train)))
        rng.shuffle(order)
        size = self.recipe.batch_size
        for start in range(0, len(order), size):
            index = order[start : start + size]
            optimizer.zero_grad()
            logits = self._forward(train.activations[index])
            loss = nn.functional.cross_entropy(logits, train.labels[index], weight=weights)
            torch.autograd.backward(loss)
            optimizer.step()
        self.model.eval()


@dataclass(frozen=True)
class FoldScores:
    """Out-of-fold evaluations of the head alone and of the fine-tune."""

    head: Evaluation
    tuned: Evaluation
    folds: int

    def fine_tune_wins(self) -> bool:
        """Higher accuracy; on a tie, lower loss."""
        return self.tuned.better_than(self.head)

    def head_scores(self) -> dict[str, float]:
        return {
            "cv_accuracy": self.head.accuracy,
            "cv_loss": self.head.loss,
            "cv_folds": self.folds,
        }

    def tuned_scores(self) -> dict[str, float]:
        return {
            "cv_accuracy": self.tuned.accuracy,
            "cv_loss": self.tuned.loss,
            "cv_folds": self.folds,
        }


class _Items:
    """The training images (all their views) and the validation images (plain view) as one
    list of items for cross-validation: item i < n is training image i, the rest validation."""

    def __init__(self, train: CachedSet, val: CachedSet) -> None:
        self.train, self.val = train, val
        self.n = train.images
        self.labels = torch.cat([train.labels[: self.n], val.labels]).tolist()
        self.all_views = CachedSet(
            torch.cat([train.activations, val.activations]) if len(val) else train.activations,
            torch.cat([train.labels, val.labels]),
        )

    def view_rows(self, items: Sequence[int]) -> list[int]:
        """Rows of ``all_views`` holding every view of ``items``."""
        offset = len(self.train)
        return [v * self.n + i for v in range(self.train.views) for i in items if i < self.n] + [
            offset + i - self.n for i in items if i >= self.n
        ]

    def plain_rows(self, items: Sequence[int]) -> list[int]:
        offset = len(self.train)
        return [i if i < self.n else offset + i - self.n for i in items]

    def training(self, items: Sequence[int]) -> CachedSet:
        rows = self.view_rows(items)
        return CachedSet(self.all_views.activations[rows], self.all_views.labels[rows])

    def plain(self, items: Sequence[int]) -> CachedSet:
        rows = self.plain_rows(items)
        return CachedSet(self.all_views.activations[rows], self.all_views.labels[rows])


def _stratified_folds(labels: Sequence[int], wanted: int, seed: int) -> list[list[int]] | None:
    """``wanted`` folds of item indices, each class dealt round-robin after a seeded shuffle;
    fewer when the rarest class has fewer items, None below two."""
    counts = [labels.count(label) for label in set(labels)]
    k = min([wanted, *counts])
    if k < 2:
        return None
    rng = random.Random(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    for label in sorted(set(labels)):
        members = [i for i, y in enumerate(labels) if y == label]
        rng.shuffle(members)
        for position, item in enumerate(members):
            folds[position % k].append(item)
    return folds


def _batches(activations: torch.Tensor) -> list[torch.Tensor]:
    return [activations[i : i + EVAL_BATCH] for i in range(0, len(activations), EVAL_BATCH)]


def _copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}
