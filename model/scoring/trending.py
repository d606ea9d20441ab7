"""Trending popularity: time-decayed interaction counts, with their running moments and the
top items kept as they change, overall and within each category, so no list needs a pass over
the catalogue."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model.scoring.decay import DEFAULT_HALF_LIFE_S, DecayClock


def category_codes(categories: Sequence[str | None]) -> np.ndarray:
    """A code per distinct category, in order of first appearance (-1 for None).

    >>> category_codes(["shoes", None, "kitchen", "shoes"]).tolist()
    [0, -1, 1, 0]
    """
    code_of: dict[str, int] = {}
    return np.array([-1 if c is None else code_of.setdefault(c, len(code_of)) for c in categories], dtype=np.int64)


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

    With category codes per row (:meth:`set_categories`), the same is kept within each
    category: sums, sums of squares and the ``category_top`` most trending rows.

    >>> trend.set_categories(np.array([0, 1, 1]))
    >>> trend.top_in(1).tolist(), [round(float(m), 2) for m in trend.category_moments(np.array([1]))[0]]
    ([1], [2.0, 4.0])
    """

    def __init__(self, half_life_s: float = DEFAULT_HALF_LIFE_S, top: int = 1_000, category_top: int = 50) -> None:
        self.clock = DecayClock(half_life_s)
        self.top = top
        self.category_top = category_top
        self._counts = np.zeros(1024, dtype=np.float64)
        self._sum = 0.0  # of stored counts
        self._squares = 0.0
        self._best: dict[int, None] = {}  # rows that may be in the top, at most 2 * top
        self._floor = 0.0  # stored count an outsider must exceed to join the top
        self._category = np.zeros(0, dtype=np.int64)  # row -> category code (-1: none)
        self._category_sum = np.zeros(0)  # per code, of stored counts
        self._category_squares = np.zeros(0)
        self._category_best: list[dict[int, None]] = []  # per code, at most 2 * category_top rows
        self._category_floor = np.zeros(0)

    @classmethod
    def from_counts(
        cls, counts: np.ndarray, top: int = 1_000, categories: np.ndarray | None = None
    ) -> TrendingPopularity:
        """A model holding given (already decayed) counts, e.g. from a snapshot, with the
        category code of each row if given."""
        model = cls(top=top)
        model._counts = np.array(counts, dtype=np.float64)
        model._sum = float(model._counts.sum())
        model._squares = float((model._counts**2).sum())
        best = np.argsort(-model._counts, kind="stable")[: model.top]
        model._best = dict.fromkeys(int(r) for r in best if model._counts[r] > 0)
        if categories is not None:
            model.set_categories(categories)
        return model

    def set_categories(self, codes: np.ndarray) -> None:
        """Category code (0, 1, ...; -1 for none) of each row, rows beyond: none. O(rows)."""
        codes = np.asarray(codes, dtype=np.int64)
        self._category = codes
        n_codes = int(codes.max(initial=-1)) + 1
        m = min(len(codes), len(self._counts))
        counts, codes = self._counts[:m], codes[:m]
        has = codes >= 0
        self._category_sum = np.bincount(codes[has], counts[has], minlength=n_codes).astype(np.float64)
        self._category_squares = np.bincount(codes[has], counts[has] ** 2, minlength=n_codes).astype(np.float64)
        self._category_best = [{} for _ in range(n_codes)]
        self._category_floor = np.zeros(n_codes)
        order = np.lexsort((np.arange(m), -counts))
        order = order[has[order] & (counts[order] > 0)]
        taken = np.zeros(n_codes, dtype=np.int64)
        for row in order.tolist():
            code = int(codes[row])
            if taken[code] < self.category_top:
                self._category_best[code][row] = None
                taken[code] += 1

    def _code(self, row: int) -> int:
        return int(self._category[row]) if row < len(self._category) else -1

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
        code = self._code(row)
        if code >= 0:
            self._category_sum[code] += new - old
            self._category_squares[code] += new * new - old * old
            best = self._category_best[code]
            if row not in best and new > self._category_floor[code]:
                best[row] = None
                if len(best) > 2 * self.category_top:
                    kept = sorted(best, key=lambda r: -self._counts[r])[: self.category_top]
                    self._category_best[code] = dict.fromkeys(kept)
                    self._category_floor[code] = float(self._counts[kept[-1]])
        factor = self.clock.rebase()
        if factor is not None:
            self._counts *= factor
            self._sum *= factor
            self._squares *= factor * factor
            self._floor *= factor
            self._category_sum *= factor
            self._category_squares *= factor * factor
            self._category_floor *= factor

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

    def categories_of(self, rows: np.ndarray) -> np.ndarray:
        """Category code of each row (-1: none)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.full(rows.shape, -1, dtype=np.int64)
        inside = rows < len(self._category)
        out[inside] = self._category[rows[inside]]
        return out

    def category_moments(self, codes: np.ndarray, left_out: np.ndarray | None = None) -> np.ndarray:
        """(len(codes), 2): sum and sum of squares of the current counts within each category,
        without the rows ``left_out`` (e.g. unavailable items)."""
        codes = np.asarray(codes, dtype=np.int64)
        out = np.stack([self._category_sum[codes], self._category_squares[codes]], axis=1)
        if left_out is not None and len(left_out):
            rows = left_out[left_out < min(len(self._counts), len(self._category))]
            for code in np.intersect1d(codes, self._category[rows]).tolist():
                gone = self._counts[rows[self._category[rows] == code]]
                out[codes == code] -= [gone.sum(), (gone**2).sum()]
        scale = self.clock.read_scale()
        return out * [scale, scale * scale]

    def top_in(self, code: int) -> np.ndarray:
        """The most trending rows of category ``code``, best first (at most ``category_top``)."""
        if not 0 <= code < len(self._category_best):
            return np.zeros(0, dtype=np.int64)
        best = self._category_best[code]
        rows = np.fromiter(best, dtype=np.int64, count=len(best))
        order = np.lexsort((rows, -self._counts[rows]))
        return rows[order][: self.category_top]
