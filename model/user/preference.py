"""User preference vectors in the item-embedding space, updated one event at a time."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from model.scoring.decay import DEFAULT_HALF_LIFE_S

#: Weight of each event type in the preference update. Negative types push the user away
#: from the item. ``rating`` and ``review`` with a star ``value`` use :func:`event_weight`.
DEFAULT_EVENT_WEIGHTS: Mapping[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "add_to_cart": 3.0,
    "remove_from_cart": -2.0,
    "purchase": 5.0,
    "rating": 1.0,
    "review": 2.0,
    "dislike": -4.0,
}

#: Event types after which the item counts as consumed (never recommended again).
CONSUMING_TYPES = frozenset({"purchase", "rating", "review"})

#: Event types by which a user turns an item down.
REJECTING_TYPES = frozenset({"dislike", "remove_from_cart"})


def event_weight(
    event_type: str, value: float | None = None, weights: Mapping[str, float] = DEFAULT_EVENT_WEIGHTS
) -> float:
    """Weight w(type, value) of one event.

    Ratings and reviews that carry stars (1..5) weigh ``value - 2.5``: a 5 pulls the user
    towards the item by 2.5, a 1 pushes away by 1.5. Other types take their table weight.

    >>> event_weight("click"), event_weight("rating", 5), event_weight("rating", 1), event_weight("dislike")
    (2.0, 2.5, -1.5, -4.0)
    """
    if event_type in ("rating", "review") and value is not None:
        return float(value) - 2.5
    return float(weights.get(event_type, 0.0))


def decay_factor(dt_ms: float, half_life_s: float) -> float:
    """Exponential time decay ``0.5 ** (dt / half_life)``; negative dt (late event) decays nothing.

    >>> decay_factor(3_600_000, 3600.0)
    0.5
    """
    if dt_ms <= 0 or half_life_s <= 0 or math.isinf(half_life_s):
        return 1.0
    return 0.5 ** (dt_ms / 1000.0 / half_life_s)


@dataclass
class PreferenceVector:
    """A user's taste as a point in the item space.

    u <- decay(t - t_last) * u + w(type, value) * e_item, with decay(dt) = 0.5 ** (dt / half_life).
    ``u`` accumulates unnormalised, so old events fade by time, not by count;
    :meth:`direction` is u / ||u||, the vector scored against items (cosine).

    >>> pv = PreferenceVector(dim=2, half_life_s=3600.0)
    >>> pv.learn_one(np.array([1.0, 0.0]), weight=1.0, ts=0)
    >>> pv.learn_one(np.array([0.0, 1.0]), weight=1.0, ts=3_600_000)  # one half-life later
    >>> pv.vector.tolist(), [round(float(x), 3) for x in pv.direction()]
    ([0.5, 1.0], [0.447, 0.894])
    """

    dim: int
    half_life_s: float = DEFAULT_HALF_LIFE_S
    vector: np.ndarray = field(default=cast(np.ndarray, None))  # None: zeros, set in __post_init__
    last_ts: int | None = None

    def __post_init__(self) -> None:
        if self.vector is None:
            self.vector = np.zeros(self.dim, dtype=np.float32)
        else:
            self.vector = np.asarray(self.vector, dtype=np.float32)

    def learn_one(self, item_vector: np.ndarray, weight: float, ts: int) -> None:
        """Fold one event on the item with vector ``item_vector`` at event time ``ts`` (ms)."""
        if self.last_ts is not None:
            self.vector *= np.float32(decay_factor(ts - self.last_ts, self.half_life_s))
        self.vector += np.float32(weight) * np.asarray(item_vector, dtype=np.float32)
        self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)

    def direction(self) -> np.ndarray:
        """u / ||u||, or the zero vector when the user has no signal yet."""
        norm = float(np.linalg.norm(self.vector))
        if norm < 1e-12:
            return np.zeros_like(self.vector)
        return self.vector / norm
