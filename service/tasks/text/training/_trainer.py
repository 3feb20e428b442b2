"""The training recipe: a head on frozen features, then low-LR fine-tuning of the top layers.

Phase 1 (feature extraction) trains only the linear head on embeddings computed once. Phase 2
unfreezes the top ``finetune_layers`` encoder layers: the frozen lower layers run once and their
outputs are cached, each upper layer gets a learning rate decayed by depth, and training stops
early when the validation score stops improving. Phase 2 is kept only if it beats phase 1 on the
validation split. A first version is judged by validation loss (its split has a few rows per
class); an incremental fine-tune by validation accuracy.

With ``refit`` the validation split only chooses: once the epochs of each phase are known, the
model starts again from the pretrained weights and trains those epochs on every example. With
ten examples per class, holding two out of training costs more accuracy than the selection gains
(measured on BANKING77, all 77 intents: 85.3 % without, 86.5 % with, on one 10-shot split).
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from service.calibration import Calibration, calibrate
from service.config import TrainRecipe
from service.tasks.text.training._model import TextClassifier
from service.tasks.text.training._tokens import TokenBatcher
from service.training._data import Example
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

log = logging.getLogger(__name__)
EVAL_BATCH = 64


class Trainer:
    def __init__(
        self, model: TextClassifier, tokens: TokenBatcher, recipe: TrainRecipe, progress: Progress
    ) -> None:
        self.model = model
        self.tokens = tokens
        self.recipe = recipe
        self.progress = progress
        torch.manual_seed(recipe.seed)

    def fit(self, train: list[Example], val: list[Example]) -> TrainReport:
        started = time.perf_counter()
        r = self.recipe
        refit = r.refit and bool(val)
        pretrained = {k: v.clone() for k, v in self.model.state_dict().items()} if refit else {}
        train_ids, val_ids = (
            self.tokens.ids([e.item for e in train]),
            self.tokens.ids([e.item for e in val]),
        )
        train_y = torch.tensor([e.label for e in train])
        val_y = torch.tensor([e.label for e in val])
        judge = Evaluation.lower_loss_than
        head_eval, head_epochs = self._fit_head(train_ids, train_y, val_ids, val_y)
        report = TrainReport(vars(head_eval), None, False, 0.0, head_epochs=head_epochs)
        self.progress(f"head on frozen features: validation accuracy {head_eval.accuracy:.3f}")
        if r.finetune_layers > 0 and r.epochs > 0:
            head_state = {k: v.clone() for k, v in self.model.state_dict().items()}
            tuned_eval, report.finetune_epochs = self._fine_tune(
                train_ids, train_y, val_ids, val_y, report, judge=judge
            )
            scores = (head_eval, tuned_eval)
            what = f"top {r.finetune_layers} layers"
            keep_better(
                self.model, head_state, scores, bool(val), judge, report, self.progress, what
            )
        # The model selected on validation, before a refit trains on those rows: the last
        # moment any row is held out from it.
        report.calibration = self._calibrate(val_ids, val_y)
        if refit:
            self.model.load_state_dict(pretrained)
            self._refit(train + val, report)
        report.seconds = time.perf_counter() - started
        self.model.eval()
        return report

    def _refit(self, examples: list[Example], report: TrainReport) -> None:
        """Train the chosen epochs of each phase again, from the pretrained weights, on all."""
        ids = self.tokens.ids([e.item for e in examples])
        labels = torch.tensor([e.label for e in examples])
        none: list[list[int]] = []
        self._fit_head(ids, labels, none, labels[:0], epochs=report.head_epochs)
        if report.used_finetune:
            self._fine_tune(ids, labels, none, labels[:0], None, epochs=report.finetune_epochs)
        report.refit_examples = len(examples)
        self.progress(
            f"trained again on all {len(examples)} examples: {report.head_epochs} head epochs"
            + (f", {report.finetune_epochs} fine-tuning epochs" if report.used_finetune else "")
        )

    def fine_tune(self, train: list[Example], val: list[Example]) -> TrainReport:
        """Only phase 2, continuing from the current weights (incremental fine-tuning)."""
        started = time.perf_counter()
        train_ids, val_ids = (
            self.tokens.ids([e.item for e in train]),
            self.tokens.ids([e.item for e in val]),
        )
        train_y = torch.tensor([e.label for e in train])
        val_y = torch.tensor([e.label for e in val])
        report = TrainReport({}, None, True, 0.0)
        tuned, report.finetune_epochs = self._fine_tune(train_ids, train_y, val_ids, val_y, report)
        report.finetuned = vars(tuned)
        report.seconds = time.perf_counter() - started
        self.model.eval()
        return report

    def _calibrate(self, ids: list[list[int]], labels: torch.Tensor) -> Calibration:
        """The temperature fitted on the current model's probabilities for held-out rows."""
        probabilities = self._probabilities(ids)
        return calibrate(probabilities, labels.numpy(), "validation" if len(ids) else "none")

    @torch.no_grad()
    def _probabilities(self, ids: list[list[int]]) -> npt.NDArray[np.float32]:
        """Class probabilities as the exported graph computes them (softmax of the logits)."""
        self.model.eval()
        chunks = [
            torch.softmax(self.model(*TokenBatcher.pad(ids[i : i + EVAL_BATCH]))[0], dim=-1)
            for i in range(0, len(ids), EVAL_BATCH)
        ]
        if not chunks:
            return np.empty((0, self.model.head.out_features), dtype=np.float32)
        return torch.cat(chunks).numpy()

    # phase 1 -----------------------------------------------------------------------------------

    @torch.no_grad()
    def _features(self, ids: list[list[int]]) -> torch.Tensor:
        self.model.eval()
        chunks = [
            self.model.features(*TokenBatcher.pad(ids[i : i + EVAL_BATCH]))
            for i in range(0, len(ids), EVAL_BATCH)
        ]
        return torch.cat(chunks) if chunks else torch.empty(0, self.model.head.in_features)

    def _fit_head(
        self,
        train_ids: list[list[int]],
        train_y: torch.Tensor,
        val_ids: list[list[int]],
        val_y: torch.Tensor,
        epochs: int | None = None,
    ) -> tuple[Evaluation, int]:
        """Full-batch training of the head; with a validation split, the best checkpoint (every
        10 epochs) and its epoch count, else ``epochs`` (default ``head_epochs``) epochs."""
        total = epochs if epochs is not None else self.recipe.head_epochs
        x_train, x_val = self._features(train_ids), self._features(val_ids)
        return fit_head(self.model.head, self.recipe, (x_train, train_y), (x_val, val_y), total)

    # phase 2 -----------------------------------------------------------------------------------

    @torch.no_grad()
    def _lower_cache(self, ids: list[list[int]], lower: int) -> list[torch.Tensor]:
        """Hidden states after the frozen lower layers, one unpadded tensor per text."""
        self.model.eval()
        cache: list[torch.Tensor] = []
        for i in range(0, len(ids), EVAL_BATCH):
            chunk = ids[i : i + EVAL_BATCH]
            input_ids, mask = TokenBatcher.pad(chunk)
            hidden = self.model.run_layers(self.model.embed(input_ids), mask, 0, lower)
            cache.extend(hidden[j, : len(row)].clone() for j, row in enumerate(chunk))
        return cache

    def _upper(self, cache: list[torch.Tensor], index: list[int], lower: int) -> torch.Tensor:
        width = max(cache[i].shape[0] for i in index)
        dim = cache[index[0]].shape[1]
        hidden = torch.zeros((len(index), width, dim))
        mask = torch.zeros((len(index), width), dtype=torch.long)
        for row, i in enumerate(index):
            n = cache[i].shape[0]
            hidden[row, :n] = cache[i]
            mask[row, :n] = 1
        out = self.model.run_layers(hidden, mask, lower)
        logits: torch.Tensor = self.model.head(self.model.pool(out, mask))
        return logits

    def _fine_tune(
        self,
        train_ids: list[list[int]],
        train_y: torch.Tensor,
        val_ids: list[list[int]],
        val_y: torch.Tensor,
        report: TrainReport | None,
        epochs: int | None = None,
        judge: Criterion = Evaluation.better_than,
    ) -> tuple[Evaluation, int]:
        """Train the top layers and the head; keep the best epoch on validation (the training
        split when there is none) and return it with its count, stopping after ``patience``
        epochs without progress. With ``epochs``: exactly that many, no selection."""
        r = self.recipe
        depth = len(self.model.layers)
        lower = depth - min(r.finetune_layers, depth)
        train_cache = self._lower_cache(train_ids, lower)
        optimizer = self._unfreeze_top(lower)
        rng = random.Random(r.seed)
        if epochs is not None:
            for _ in range(epochs):
                self._train_epoch(train_cache, train_y, lower, optimizer, rng)
            self._freeze()
            return self._evaluate_cached(train_cache, train_y, lower), epochs
        val_cache = self._lower_cache(val_ids, lower)
        best: tuple[Evaluation, dict[str, torch.Tensor], int] | None = None
        stale = 0
        for epoch in range(r.epochs):
            self._train_epoch(train_cache, train_y, lower, optimizer, rng)
            current = (
                self._evaluate_cached(val_cache, val_y, lower)
                if len(val_y)
                else self._evaluate_cached(train_cache, train_y, lower)
            )
            if report is not None:
                report.history.append(
                    {"epoch": epoch + 1, "accuracy": current.accuracy, "loss": current.loss}
                )
            self.progress(
                f"epoch {epoch + 1}: validation accuracy {current.accuracy:.3f}, "
                f"loss {current.loss:.4f}"
            )
            if judge(current, best[0] if best else None):
                state = {k: v.clone() for k, v in self.model.state_dict().items()}
                best, stale = (current, state, epoch + 1), 0
            else:
                stale += 1
                if stale >= r.patience:
                    break
        assert best is not None
        self.model.load_state_dict(best[1])
        self._freeze()
        return best[0], best[2]

    def _unfreeze_top(self, lower: int) -> torch.optim.Optimizer:
        """Make the layers from ``lower`` up and the head trainable, with depth-decayed rates."""
        r = self.recipe
        depth = len(self.model.layers)
        self._freeze()
        groups: list[dict[str, Any]] = []
        for i in range(lower, depth):
            params = list(self.model.layers[i].parameters())
            for p in params:
                p.requires_grad_(True)
            groups.append(
                {"params": params, "lr": r.learning_rate * r.layer_lr_decay ** (depth - 1 - i)}
            )
        for p in self.model.head.parameters():
            p.requires_grad_(True)
        groups.append(
            {"params": list(self.model.head.parameters()), "lr": r.finetune_head_learning_rate}
        )
        return torch.optim.AdamW(groups, weight_decay=0.01)

    def _freeze(self) -> None:
        for p in self.model.parameters():
            p.requires_grad_(False)

    def _train_epoch(
        self,
        cache: list[torch.Tensor],
        labels: torch.Tensor,
        lower: int,
        optimizer: torch.optim.Optimizer,
        rng: random.Random,
    ) -> None:
        self.model.train()
        weights = (
            class_weights(labels, self.model.head.out_features)
            if self.recipe.balance_classes
            else None
        )
        order = list(range(len(cache)))
        rng.shuffle(order)
        size = self.recipe.batch_size
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        for index in batches:
            optimizer.zero_grad()
            logits = self._upper(cache, index, lower)
            loss = nn.functional.cross_entropy(logits, labels[index], weight=weights)
            loss.backward()
            optimizer.step()
        self.model.eval()

    @torch.no_grad()
    def _evaluate_cached(
        self, cache: list[torch.Tensor], labels: torch.Tensor, lower: int
    ) -> Evaluation:
        self.model.eval()
        logits = torch.cat(
            [
                self._upper(cache, list(range(i, min(i + EVAL_BATCH, len(cache)))), lower)
                for i in range(0, len(cache), EVAL_BATCH)
            ]
        )
        return evaluate_logits(logits, labels)
