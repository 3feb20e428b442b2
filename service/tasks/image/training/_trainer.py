"""Training an image classifier on cached activations of its frozen prefix.

The backbone is split (``SplitFeatures``): the prefix stages never train, so their output for
every training image and augmented view is computed once; each epoch then runs only the
trainable stages and the head, which is what makes a round take seconds on a CPU.

Phase 1 fits the head alone on the pooled features of the whole frozen network (the baseline).
Phase 2 fine-tunes the trainable stages and the head at a low learning rate, each stage's rate
decayed by its depth below the top, with early stopping on the validation images; it is kept
only when it beats the head alone. BatchNorm layers stay in eval mode throughout: with batches
of a few images their batch statistics are noise, and updating the running statistics from them
would move every later prediction. Their scale and shift still train.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
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
    """Prefix activations of some images (all views stacked) and their labels."""

    def __init__(self, activations: torch.Tensor, labels: torch.Tensor) -> None:
        self.activations = activations
        self.labels = labels

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
            return CachedSet(torch.empty(0), y)
        return CachedSet(torch.cat(chunks), y)

    def fit(self, train: CachedSet, val: CachedSet) -> TrainReport:
        """Both phases (a first version), judged by validation loss: a few images per class."""
        started = time.perf_counter()
        r = self.recipe
        judge = Evaluation.lower_loss_than
        x_train, x_val = self._pooled(train), self._pooled(val)
        head_eval, head_epochs = fit_head(
            self.model.head, r, (x_train, train.labels), (x_val, val.labels), r.head_epochs
        )
        report = TrainReport(vars(head_eval), None, False, 0.0, head_epochs=head_epochs)
        self.progress(f"head on frozen features: validation accuracy {head_eval.accuracy:.3f}")
        if len(self.model.features.tail) and r.epochs > 0:
            head_state = _copy(self.model)
            tuned, report.finetune_epochs = self._fine_tune(train, val, report, judge)
            what = f"the last {len(self.model.features.tail)} stage(s)"
            scores = (head_eval, tuned)
            keep_better(
                self.model, head_state, scores, bool(len(val)), judge, report, self.progress, what
            )
        report.calibration = self.calibrate(val)
        report.seconds = time.perf_counter() - started
        self.model.eval()
        return report

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
        self, train: CachedSet, val: CachedSet, report: TrainReport, judge: Criterion
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
            self.progress(
                f"epoch {epoch + 1}: validation accuracy {current.accuracy:.3f}, loss {current.loss:.4f}"
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


def _batches(activations: torch.Tensor) -> list[torch.Tensor]:
    return [activations[i : i + EVAL_BATCH] for i in range(0, len(activations), EVAL_BATCH)]


def _copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}
