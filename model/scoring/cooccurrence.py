"""Online item-to-item collaborative filtering from co-occurrence in users' recent histories."""

from __future__ import annotations

from collections import defaultdict, deque

import numpy as np

from model.scoring.decay import DecayClock


class ItemCooccurrence:
    """sim(i, j) = C_ij / sqrt(n_i * n_j), learned one event at a time.

    When user u interacts with item i, C_ij += g and C_ji += g for each j among u's last
    ``window`` distinct items, and n_i += g, where g is the time-decay weight of the event
    (half-life ``half_life_s``; infinite = plain counts). A user's CF score of item i is
    ``cf(u, i) = sum_h r_h * sim(i, h)`` over their last ``history`` items h, with recency
    weight r_h = ``recency ** age`` (age 0 = most recent).

    Items are rows of a dense float32 matrix that grows with the catalogue: fine for
    catalogues of tens of thousands of items (n^2 * 4 bytes).

    >>> cf = ItemCooccurrence(window=5)
    >>> for user, item in [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("c", 0), ("c", 2)]:
    ...     cf.learn_one(user, item, ts=0)
    >>> [round(float(x), 3) for x in cf.scores([0], n_items=3)]  # users who took 0 took 1 more than 2
    [0.0, 0.816, 0.577]
    """

    def __init__(
        self,
        window: int = 20,
        history: int = 20,
        recency: float = 0.9,
        half_life_s: float = float("inf"),
        capacity: int = 1024,
    ) -> None:
        self.window = window
        self.history = history
        self.recency = recency
        self.clock = DecayClock(half_life_s)
        self._c = np.zeros((capacity, capacity), dtype=np.float32)
        self._n = np.zeros(capacity, dtype=np.float64)
        self.recent: dict[str, deque] = defaultdict(lambda: deque(maxlen=self.window))

    @classmethod
    def from_arrays(cls, cooccurrence: np.ndarray, counts: np.ndarray, **options) -> ItemCooccurrence:
        """A model holding given (already decayed) C and n, e.g. from a snapshot."""
        model = cls(capacity=max(1, len(counts)), **options)
        model._c[: len(counts), : len(counts)] = cooccurrence
        model._n[: len(counts)] = counts
        return model

    def current(self, n_items: int) -> tuple[np.ndarray, np.ndarray]:
        """Decayed C (n_items x n_items, float32) and n (n_items,) as of the latest event."""
        m = min(n_items, len(self._n))
        scale = self.clock.read_scale()
        c = np.zeros((n_items, n_items), dtype=np.float32)
        c[:m, :m] = self._c[:m, :m] * np.float32(scale)
        n = np.zeros(n_items)
        n[:m] = self._n[:m] * scale
        return c, n

    def _grow(self, rows: int) -> None:
        if rows <= len(self._n):
            return
        size = max(rows, 2 * len(self._n))
        c = np.zeros((size, size), dtype=np.float32)
        c[: len(self._n), : len(self._n)] = self._c
        n = np.zeros(size)
        n[: len(self._n)] = self._n
        self._c, self._n = c, n

    def learn_one(self, user_id: str, row: int, ts: int, weight: float = 1.0) -> None:
        if weight <= 0:
            return
        self._grow(row + 1)
        g = np.float32(weight * self.clock.weight(ts))
        recent = self.recent[user_id]
        others = [j for j in recent if j != row]
        if others:
            self._c[row, others] += g
            self._c[others, row] += g
        self._n[row] += g
        if row in recent:
            recent.remove(row)
        recent.append(row)
        factor = self.clock.rebase()
        if factor is not None:
            self._c *= np.float32(factor)
            self._n *= factor

    def similarity_rows(self, rows: list[int], n_items: int) -> np.ndarray:
        """sim(h, :) for each row h, shape (len(rows), n_items)."""
        m = min(n_items, len(self._n))
        out = np.zeros((len(rows), n_items), dtype=np.float32)
        valid = [r for r in rows if r < m]
        if not valid:
            return out
        idx = [k for k, r in enumerate(rows) if r < m]
        n = self._n[:m]
        norms = np.sqrt(np.maximum(n, 1e-12)).astype(np.float32)
        block = self._c[np.array(valid)][:, :m] / norms[None, :] / norms[np.array(valid)][:, None]
        out[idx, :m] = block
        return out

    def scores(self, history_rows: list[int], n_items: int) -> np.ndarray:
        """cf(u, :) from a user's history rows, oldest first (the last ``history`` are used)."""
        rows = list(dict.fromkeys(reversed(history_rows)))[: self.history]  # most recent first
        if not rows:
            return np.zeros(n_items, dtype=np.float32)
        sims = self.similarity_rows(rows, n_items)
        weights = (self.recency ** np.arange(len(rows))).astype(np.float32)
        return weights @ sims
