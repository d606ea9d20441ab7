"""Trending popularity: time-decayed interaction counts."""

from __future__ import annotations

import numpy as np

from model.scoring.decay import DEFAULT_HALF_LIFE_S, DecayClock


class TrendingPopularity:
    """pop(i, t) = sum over events e on i of w_e * 0.5^((t - t_e) / half_life).

    Items are addressed by row (the item index's row numbers); counts grow as rows appear.

    >>> trend = TrendingPopularity(half_life_s=3600)
    >>> trend.learn_one(0, ts=0); trend.learn_one(1, ts=3_600_000); trend.learn_one(1, ts=3_600_000)
    >>> trend.scores(3).round(2).tolist()
    [0.5, 2.0, 0.0]
    """

    def __init__(self, half_life_s: float = DEFAULT_HALF_LIFE_S) -> None:
        self.clock = DecayClock(half_life_s)
        self._counts = np.zeros(1024, dtype=np.float64)

    @classmethod
    def from_counts(cls, counts: np.ndarray) -> TrendingPopularity:
        """A model holding given (already decayed) counts, e.g. from a snapshot."""
        model = cls()
        model._counts = np.array(counts, dtype=np.float64)
        return model

    def learn_one(self, row: int, ts: int, weight: float = 1.0) -> None:
        g = self.clock.weight(ts)
        if row >= len(self._counts):
            grown = np.zeros(max(row + 1, 2 * len(self._counts)))
            grown[: len(self._counts)] = self._counts
            self._counts = grown
        self._counts[row] += weight * g
        factor = self.clock.rebase()
        if factor is not None:
            self._counts *= factor

    def scores(self, n_items: int) -> np.ndarray:
        """Current decayed counts of rows 0..n_items-1 (float64)."""
        out = np.zeros(n_items)
        m = min(n_items, len(self._counts))
        out[:m] = self._counts[:m] * self.clock.read_scale()
        return out
