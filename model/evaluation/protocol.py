"""The interface every recommender in model/ speaks, so one harness can evaluate them all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Interaction:
    """One event of a time-ordered log (a MovieLens rating, a shop click, ...)."""

    user_id: str
    item_id: str
    ts: int  # ms since epoch
    type: str = "rating"
    value: float | None = None
    text: str | None = None  # a review's words


@runtime_checkable
class Recommender(Protocol):
    """``learn_one`` folds one event in; ``recommend`` ranks items for a user, best first;
    ``score`` gives comparable scores for given items (used for AUC)."""

    name: str

    def learn_one(self, event: Interaction) -> None: ...

    def recommend(self, user_id: str, k: int, exclude: set[str]) -> list[str]: ...

    def score(self, user_id: str, item_ids: Sequence[str]) -> np.ndarray: ...
