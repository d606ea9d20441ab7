"""Trending popularity: time-decayed interaction counts, with their running moments and the
top items kept as they change, so no list needs a pass over the catalogue."""

from __future__ import annotations

import numpy as np

from model.scoring.decay import DEFAULT_HALF_LIFE_S, DecayClock


class TrendingPopularity:
    """pop(i, t) = sum over events e on i of w_e * 0.5^((t - t_e) / half_life).

    Items are addressed by row (the item index's row numbers); counts grow as rows appear. Beside
    the counts it keeps sum_i pop(i) and sum_i pop(i)^2 (for the hybrid's z-score) and the
    ``top`` most trending rows: a decay scales every count alike, so only the item of an event
    can enter the top, and keeping the best ``2 * top`` candidates is exact and O(1) per event.

    >>> trend = TrendingPopularity(half_life_s=3600, top=2)
    >>> trend.learn_one(0, ts=0); trend.learn_one(1, ts=3_600_000); trend.learn_one(1, ts=3_600_000)
    >>> trend.scores(3).round(2).tolist(), trend.top_rows().tolist()
    ([0.5, 2.0, 0.0], [1, 0])
    >>> [round(m, 2) for m in trend.moments(3)]  # sum and sum of squares
    [2.5, 4.25]
    """

    def __init__(self, half_life_s: float = DEFAULT_HALF_LIFE_S, top: int = 1_000) -> None:
        self.clock = DecayClock(half_life_s)
        self.top = top
        self._counts = np.zeros(1024, dtype=np.float64)
        self._sum = 0.0  # of stored counts
        self._squares = 0.0
        self._best: dict[int, None] = {}  # rows that may be in the top, at most 2 * top
        self._floor = 0.0  # stored count an outsider must exceed to join the top

    @classmethod
    def from_counts(cls, counts: np.ndarray, top: int = 1_000) -> TrendingPopularity:
        """A model holding given (already decayed) counts, e.g. from a snapshot."""
        model = cls(top=top)
        model._counts = np.array(counts, dtype=np.float64)
        model._sum = float(model._counts.sum())
        model._squares = float((model._counts**2).sum())
        best = np.argsort(-model._counts, kind="stable")[: model.top]
        model._best = dict.fromkeys(int(r) for r in best if model._counts[r] > 0)
        return model

    def learn_one(self, row: int, ts: int, weight: float = 1.0) -> None:
        g = self.clock.weight(ts)
        if row >= len(self._counts):
            grown = np.zeros(max(row + 1, 2 * len(self._counts)))
            grown[: len(self._counts)] = self._counts
            self._counts = grown
        old = float(self._counts[row])
        new = old + weight * g
        self._counts[row] = new
        self._sum += new - old
        self._squares += new * new - old * old
        if row not in self._best and new > self._floor:
            self._best[row] = None
            if len(self._best) > 2 * self.top:
                kept = sorted(self._best, key=lambda r: -self._counts[r])[: self.top]
                self._best = dict.fromkeys(kept)
                self._floor = float(self._counts[kept[-1]])
        factor = self.clock.rebase()
        if factor is not None:
            self._counts *= factor
            self._sum *= factor
            self._squares *= factor * factor
            self._floor *= factor

    def scores(self, n_items: int) -> np.ndarray:
        """Current decayed counts of rows 0..n_items-1 (float64)."""
        out = np.zeros(n_items)
        m = min(n_items, len(self._counts))
        out[:m] = self._counts[:m] * self.clock.read_scale()
        return out

    def values(self, rows: np.ndarray) -> np.ndarray:
        """Current decayed counts of ``rows`` (0 for rows never seen)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros(len(rows))
        seen = rows < len(self._counts)
        out[seen] = self._counts[rows[seen]] * self.clock.read_scale()
        return out

    def moments(self, n_items: int, left_out: np.ndarray | None = None) -> tuple[float, float]:
        """sum and sum of squares of the current counts over every row, without the rows
        ``left_out`` (e.g. unavailable items); O(len(left_out)). The rows counted must be rows
        of the caller's ``n_items`` (a worker's counts are laid out in its index rows)."""
        scale = self.clock.read_scale()
        total, squares = self._sum, self._squares
        if left_out is not None and len(left_out):
            rows = left_out[left_out < min(n_items, len(self._counts))]
            total -= float(self._counts[rows].sum())
            squares -= float((self._counts[rows] ** 2).sum())
        return float(total * scale), float(squares * scale * scale)

    def top_rows(self) -> np.ndarray:
        """The most trending rows, best first (at most ``top``)."""
        best = np.fromiter(self._best, dtype=np.int64, count=len(self._best))
        order = np.lexsort((best, -self._counts[best]))
        return best[order][: self.top]
