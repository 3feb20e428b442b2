"""Backbone + head as one torch module, and the split that lets lower layers be cached.

Backbones are Hugging Face-format BERT-family text encoders (``embeddings`` + ``encoder.layer``),
which covers MiniLM, BERT, RoBERTa and friends. Another family plugs in by providing the same
three steps: ``embed`` (inputs → hidden states), ``run_layers`` and pooling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModel

from service.errors import ConfigError


class TextClassifier(nn.Module):
    """Encoder → pooling → L2-normalised embedding → linear head."""

    def __init__(self, encoder: nn.Module, num_labels: int, pooling: str) -> None:
        super().__init__()
        if not hasattr(encoder, "embeddings") or not hasattr(encoder, "encoder"):
            raise ConfigError(
                "backbone must be a BERT-family encoder (with embeddings and encoder.layer)"
            )
        self.encoder = encoder
        self.pooling = pooling
        hidden = int(self._hf.config.hidden_size)
        self.head = nn.Linear(hidden, num_labels)

    @property
    def _hf(self) -> Any:
        """The encoder as the untyped Hugging Face module it is."""
        return self.encoder

    @property
    def layers(self) -> nn.ModuleList:
        layers: nn.ModuleList = self._hf.encoder.layer
        return layers

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        token_types = torch.zeros_like(input_ids)
        hidden: torch.Tensor = self._hf.embeddings(input_ids=input_ids, token_type_ids=token_types)
        return hidden

    def run_layers(
        self, hidden: torch.Tensor, mask: torch.Tensor, start: int, stop: int | None = None
    ) -> torch.Tensor:
        additive: torch.Tensor = self._hf.get_extended_attention_mask(mask, mask.shape).to(
            hidden.dtype
        )
        for layer in self.layers[start:stop]:
            hidden = layer(hidden, attention_mask=additive)[0]
        return hidden

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return nn.functional.normalize(pooled, dim=-1)

    def features(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.run_layers(self.embed(input_ids), mask, 0)
        return self.pool(hidden, mask)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.features(input_ids, attention_mask)
        return self.head(embedding), embedding


class ExportWrapper(nn.Module):
    """What the ONNX graph computes: class probabilities and the pooled embedding."""

    def __init__(self, model: TextClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits, embedding = self.model(input_ids, attention_mask)
        return torch.softmax(logits, dim=-1), embedding


def load_encoder(path: Path) -> nn.Module:
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"backbone directory {path} has no config.json (need a Hugging Face-format encoder)"
        )
    # Eager attention exports to plain ONNX ops and matches ORT numerically.
    encoder: nn.Module = AutoModel.from_pretrained(str(path), attn_implementation="eager")
    return encoder.eval()


def trainable_state(model: TextClassifier, top_layers: int) -> dict[str, torch.Tensor]:
    """Parameters a fine-tune may change: the head and the top ``top_layers`` encoder layers."""
    first = len(model.layers) - top_layers
    keep = ("head.", *(f"encoder.encoder.layer.{i}." for i in range(first, len(model.layers))))
    return {
        k: v.detach().clone().contiguous()
        for k, v in model.state_dict().items()
        if k.startswith(keep)
    }
