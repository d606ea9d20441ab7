"""Online item-to-item collaborative filtering from co-occurrence in users' recent histories,
kept sparse: memory grows with the item pairs that co-occur, never with n_items^2."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from model.scoring.decay import DecayClock


@dataclass(frozen=True)
class SparseScores:
    """A score vector over item rows, zero outside ``rows`` (distinct, ascending)."""

    rows: np.ndarray  # (m,) int64
    values: np.ndarray  # (m,) float32

    @classmethod
    def empty(cls) -> SparseScores:
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))

    def dense(self, n_items: int) -> np.ndarray:
        out = np.zeros(n_items, dtype=np.float32)
        keep = self.rows < n_items
        out[self.rows[keep]] = self.values[keep]
        return out


def weighted_sum(neighbour_lists: Sequence[tuple[np.ndarray, np.ndarray]], weights: np.ndarray) -> SparseScores:
    """sum_h w_h * s_h of sparse vectors s_h given as (rows, values).

    >>> s = weighted_sum([(np.array([1, 2]), np.array([0.5, 1.0])), (np.array([2]), np.array([1.0]))], np.array([1.0, 0.5]))
    >>> s.rows.tolist(), s.values.tolist()
    ([1, 2], [0.5, 1.5])
    """
    parts = [(r, v * np.float32(w)) for (r, v), w in zip(neighbour_lists, weights, strict=True) if len(r)]
    if not parts:
        return SparseScores.empty()
    rows = np.concatenate([r for r, _ in parts]).astype(np.int64)
    values = np.concatenate([v for _, v in parts]).astype(np.float32)
    unique, inverse = np.unique(rows, return_inverse=True)
    summed = np.zeros(len(unique), dtype=np.float32)
    np.add.at(summed, inverse, values)
    return SparseScores(unique, summed)


class CFScoring:
    """What both CF models share: a user's score from the neighbours of their recent items,

        cf(u, i) = sum_h r_h * sim(h, i),   r_h = recency ** age_h (age 0 = most recent),

    over their last ``history`` distinct items h; :meth:`neighbours_of` gives sim(h, .)."""

    history: int
    recency: float

    def neighbours_of(self, row: int) -> tuple[np.ndarray, np.ndarray]:  # (rows, sim) of one item
        raise NotImplementedError

    def recent_rows(self, history_rows: Sequence[int]) -> list[int]:
        """The last ``history`` distinct rows, most recent first."""
        return list(dict.fromkeys(reversed(history_rows)))[: self.history]

    def sparse_scores(self, history_rows: Sequence[int]) -> SparseScores:
        """cf(u, .) from a user's history rows, oldest first, on the items it reaches only."""
        rows = self.recent_rows(history_rows)
        if not rows:
            return SparseScores.empty()
        weights = (self.recency ** np.arange(len(rows))).astype(np.float32)
        return weighted_sum([self.neighbours_of(r) for r in rows], weights)

    def scores(self, history_rows: Sequence[int], n_items: int) -> np.ndarray:
        """cf(u, :) as a dense vector over rows 0..n_items-1 (tests, small catalogues)."""
        return self.sparse_scores(history_rows).dense(n_items)

    def similarity(self, rows: Sequence[int], items: np.ndarray) -> np.ndarray:
        """sim(h, i) for each h of ``rows`` and i of ``items``: (len(rows), len(items))."""
        items = np.asarray(items, dtype=np.int64)
        out = np.zeros((len(rows), len(items)), dtype=np.float32)
        if not len(items):
            return out
        order = np.argsort(items, kind="stable")
        ranked = items[order]
        lists = [self.neighbours_of(h) for h in rows]
        cols = np.concatenate([c for c, _ in lists] + [np.zeros(0, np.int64)])
        sims = np.concatenate([v for _, v in lists] + [np.zeros(0, np.float32)])
        owner = np.repeat(np.arange(len(rows)), [len(c) for c, _ in lists])
        at = np.minimum(np.searchsorted(ranked, cols), len(ranked) - 1)
        hit = ranked[at] == cols
        out[owner[hit], order[at[hit]]] = sims[hit]
        return out


class _Pairs:
    """One item's co-occurrences: the items it met (``cols``) and C with each (``values``),
    growable arrays updated in place, with the position of each item (``at``)."""

    __slots__ = ("at", "cols", "n", "values")

    def __init__(self) -> None:
        self.at: dict[int, int] = {}
        self.cols = np.zeros(4, dtype=np.int64)
        self.values = np.zeros(4, dtype=np.float64)
        self.n = 0

    def add(self, col: int, g: float) -> None:
        at = self.at.get(col)
        if at is not None:
            self.values[at] += g
            return
        if self.n == len(self.cols):
            self.cols = np.concatenate([self.cols, np.zeros(self.n, dtype=np.int64)])
            self.values = np.concatenate([self.values, np.zeros(self.n)])
        self.cols[self.n], self.values[self.n] = col, g
        self.at[col] = self.n
        self.n += 1

    def keep_strongest(self, m: int) -> None:
        order = np.argsort(-self.values[: self.n], kind="stable")[:m]
        self.cols, self.values = self.cols[order].copy(), self.values[order].copy()
        self.n = len(order)
        self.at = dict(zip(self.cols.tolist(), range(self.n), strict=True))


class ItemCooccurrence(CFScoring):
    """sim(i, j) = C_ij / sqrt(n_i * n_j), learned one event at a time, sparse and bounded.

    When user u interacts with item i, C_ij += g and C_ji += g for each j among u's last
    ``window`` distinct items, and n_i += g, where g is the time-decay weight of the event
    (half-life ``half_life_s``; infinite = plain counts). Each item keeps its co-occurrences in
    arrays of the items it met, updated in place; past ``2 * max_pairs`` entries it keeps the
    ``max_pairs`` strongest, so memory is O(pairs that co-occur), at most 2 * max_pairs per item.
    A user's CF score comes from the pairs of their recent items (:class:`CFScoring`).

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
        max_pairs: int = 2_000,
    ) -> None:
        self.window = window
        self.history = history
        self.recency = recency
        self.max_pairs = max_pairs
        self.clock = DecayClock(half_life_s)
        self._pairs: list[_Pairs] = []
        self._n = np.zeros(1024, dtype=np.float64)
        self.recent: dict[str, deque] = {}  # user -> their last ``window`` rows (plain dict: picklable)

    @property
    def n_pairs(self) -> int:
        """Stored co-occurrence entries (each pair counts twice: C_ij and C_ji)."""
        return sum(p.n for p in self._pairs)

    def _grow(self, rows: int) -> None:
        while len(self._pairs) < rows:
            self._pairs.append(_Pairs())
        if rows > len(self._n):
            grown = np.zeros(max(rows, 2 * len(self._n)))
            grown[: len(self._n)] = self._n
            self._n = grown

    def learn_one(self, user_id: str, row: int, ts: int, weight: float = 1.0) -> None:
        if weight <= 0:
            return
        self._grow(row + 1)
        g = weight * self.clock.weight(ts)
        recent = self.recent.get(user_id)
        if recent is None:
            recent = self.recent[user_id] = deque(maxlen=self.window)
        mine = self._pairs[row]
        for j in recent:
            if j != row:
                mine.add(j, g)
                theirs = self._pairs[j]
                theirs.add(row, g)
                if theirs.n > 2 * self.max_pairs:
                    theirs.keep_strongest(self.max_pairs)
        if mine.n > 2 * self.max_pairs:
            mine.keep_strongest(self.max_pairs)
        self._n[row] += g
        if row in recent:
            recent.remove(row)
        recent.append(row)
        factor = self.clock.rebase()
        if factor is not None:
            for pairs in self._pairs:
                pairs.values *= factor
            self._n *= factor

    def counts(self, n_items: int) -> np.ndarray:
        """Decayed n of rows 0..n_items-1 as of the latest event."""
        out = np.zeros(n_items)
        m = min(n_items, len(self._pairs))
        out[:m] = self._n[:m] * self.clock.read_scale()
        return out

    def neighbours_of(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """sim(row, j) for every j that co-occurred with ``row`` (the decay cancels in the ratio)."""
        if row >= len(self._pairs) or not self._pairs[row].n:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        pairs = self._pairs[row]
        cols, c = pairs.cols[: pairs.n], pairs.values[: pairs.n]
        n = np.maximum(self._n[cols], 1e-12)
        return cols, (c / np.sqrt(n * max(self._n[row], 1e-12))).astype(np.float32)

    def neighbours(self, n_items: int, top_n: int = 100, min_count: float = 1.0) -> ItemNeighbours:
        """Each item's ``top_n`` most similar items, as CSR lists: what a snapshot ships. Items
        seen fewer than ``min_count`` times (decayed) get none and are nobody's neighbour."""
        frequent = self.counts(n_items) >= min_count
        indptr = np.zeros(n_items + 1, dtype=np.int64)
        chunks_i: list[np.ndarray] = []
        chunks_v: list[np.ndarray] = []
        for row in range(min(n_items, len(self._pairs))):
            if not frequent[row] or not self._pairs[row].n:
                continue
            cols, sims = self.neighbours_of(row)
            keep = cols < n_items
            cols, sims = cols[keep], sims[keep]
            keep = frequent[cols]
            cols, sims = cols[keep], sims[keep]
            if len(cols) > top_n:
                top = np.argpartition(-sims, top_n - 1)[:top_n]
                cols, sims = cols[top], sims[top]
            order = np.argsort(-sims, kind="stable")
            chunks_i.append(cols[order].astype(np.int32))
            chunks_v.append(sims[order])
            indptr[row + 1] = len(order)
        np.cumsum(indptr, out=indptr)
        indices = np.concatenate(chunks_i) if chunks_i else np.zeros(0, dtype=np.int32)
        values = np.concatenate(chunks_v) if chunks_v else np.zeros(0, dtype=np.float32)
        return ItemNeighbours(indptr, indices, values, history=self.history, recency=self.recency)


class ItemNeighbours(CFScoring):
    """Each item's most similar items, frozen (what workers score CF with): the neighbours of
    row i are ``indices[indptr[i]:indptr[i + 1]]`` with similarities ``values[...]``, strongest
    first (CSR). Size O(n_items * top_n).

    >>> nb = ItemNeighbours(np.array([0, 1, 2, 2]), np.array([1, 0], np.int32), np.array([0.5, 0.5], np.float32))
    >>> nb.scores([0], n_items=3).tolist(), nb.remapped(np.array([1, 0, -1])).scores([1], n_items=3).tolist()
    ([0.0, 0.5, 0.0], [0.5, 0.0, 0.0])
    """

    def __init__(
        self, indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, history: int = 20, recency: float = 0.9
    ) -> None:
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.indices = np.asarray(indices, dtype=np.int32)
        self.values = np.asarray(values, dtype=np.float32)
        self.history = history
        self.recency = recency

    @property
    def n_items(self) -> int:
        return len(self.indptr) - 1

    @property
    def nbytes(self) -> int:
        return self.indptr.nbytes + self.indices.nbytes + self.values.nbytes

    def neighbours_of(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        if row >= self.n_items:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        a, b = self.indptr[row], self.indptr[row + 1]
        return self.indices[a:b].astype(np.int64), self.values[a:b]

    def remapped(self, source: np.ndarray) -> ItemNeighbours:
        """The lists laid out in other rows: new row r holds old row ``source[r]`` (-1: an item
        these lists do not know, which gets none); neighbours unknown to the new rows drop out."""
        source = np.asarray(source, dtype=np.int64)
        new_of_old = np.full(self.n_items + 1, -1, dtype=np.int64)
        known = source >= 0
        new_of_old[source[known]] = np.flatnonzero(known)
        lengths = np.where(known, self.indptr[np.maximum(source, 0) + 1] - self.indptr[np.maximum(source, 0)], 0)
        starts = self.indptr[np.maximum(source, 0)]
        take = (
            np.concatenate([np.arange(s, s + n) for s, n in zip(starts, lengths, strict=True) if n])
            if lengths.any()
            else np.zeros(0, dtype=np.int64)
        )
        owner = np.repeat(np.arange(len(source)), lengths)
        cols = new_of_old[self.indices[take]]
        keep = cols >= 0
        counts = np.bincount(owner[keep], minlength=len(source))
        indptr = np.zeros(len(source) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return ItemNeighbours(indptr, cols[keep].astype(np.int32), self.values[take][keep], self.history, self.recency)
