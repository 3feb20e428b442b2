"""What a session needs from a task: model inputs ready to feed, grouped for batching.

The runtime never knows what an item is (a text, a decoded image): a version's preprocessor,
supplied by its task, turns a batch of items into groups of ONNX feeds. Grouping is the task's
choice (texts of similar token length pad less; images of one size stack as they are).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class FeedGroup:
    """Some of a batch's items, as ONNX Runtime feeds; ``positions`` index the batch."""

    positions: list[int]
    feeds: dict[str, npt.NDArray[Any]]


class Preprocessor(Protocol):
    """Turns one batch of items into feed groups; thread-safe, called from the batcher thread."""

    def groups(self, items: Sequence[Any]) -> list[FeedGroup]: ...

    def warmup_items(self) -> list[Any]:
        """A few typical items that exercise the session before it serves."""
        ...

    def properties(self) -> dict[str, str]:
        """What a client needs to know to prepare inputs (ModelMetadata properties)."""
        ...


def stacked(arrays: Sequence[npt.NDArray[Any]], name: str) -> FeedGroup:
    """Items that already are equally shaped arrays, fed as one group."""
    return FeedGroup(list(range(len(arrays))), {name: np.stack(arrays)})
