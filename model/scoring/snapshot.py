"""The global models (CF co-occurrence, trending) as a portable snapshot keyed by item id."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from model.scoring.cooccurrence import ItemCooccurrence
from model.scoring.trending import TrendingPopularity


@dataclass
class GlobalSnapshot:
    """What the learner ships to workers: current (decayed) co-occurrence C, item counts n and
    trending counts, in the learner's item order ``item_ids``. C covers only the items at
    ``cf_rows`` (those seen at least ``min_count`` times at capture): rarely-seen items get no
    CF score, and the matrix (m^2 floats in every worker) stays small.

    >>> cf, trend = ItemCooccurrence(), TrendingPopularity()
    >>> for user, row in [("u", 0), ("u", 1)]:
    ...     cf.learn_one(user, row, ts=0); trend.learn_one(row, ts=0)
    >>> snap = GlobalSnapshot.capture(["a", "b"], cf, trend)
    >>> cf2, trend2 = GlobalSnapshot.from_bytes(snap.to_bytes()).for_items(["b", "x", "a"])
    >>> [round(float(v), 2) for v in cf2.scores([2], n_items=3)], trend2.scores(3).tolist()
    ([1.0, 0.0, 0.0], [1.0, 0.0, 1.0])
    >>> cf.learn_one("v", 0, ts=0)  # "a" seen twice, "b" once: with min_count 2 only "a" keeps CF
    >>> GlobalSnapshot.capture(["a", "b"], cf, trend, min_count=2).cf_rows.tolist()
    [0]
    """

    item_ids: list[str]
    cooccurrence: np.ndarray  # (m, m) float32, rows/columns = cf_rows
    counts: np.ndarray  # (n,) float64
    trending: np.ndarray  # (n,) float64
    cf_rows: np.ndarray | None = None  # (m,) indices into item_ids; None: all n

    def __post_init__(self) -> None:
        if self.cf_rows is None:
            self.cf_rows = np.arange(len(self.item_ids))

    @classmethod
    def capture(
        cls, item_ids: list[str], cf: ItemCooccurrence, trending: TrendingPopularity, min_count: float = 1
    ) -> GlobalSnapshot:
        n = len(item_ids)
        c, counts = cf.current(n)
        frequent = np.flatnonzero(counts >= min_count)  # decayed counts: seen often enough lately
        return cls(list(item_ids), c[np.ix_(frequent, frequent)], counts, trending.scores(n), frequent)

    def to_bytes(self) -> bytes:
        assert self.cf_rows is not None  # __post_init__ fills it
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            item_ids=np.array(self.item_ids, dtype=object).astype(str),
            cooccurrence=self.cooccurrence,
            counts=self.counts,
            trending=self.trending,
            cf_rows=self.cf_rows,
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> GlobalSnapshot:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            cf_rows = z["cf_rows"] if "cf_rows" in z.files else None
            return cls([str(i) for i in z["item_ids"]], z["cooccurrence"], z["counts"], z["trending"], cf_rows)

    def for_items(self, target_ids: list[str], **cf_options) -> tuple[ItemCooccurrence, TrendingPopularity]:
        """Frozen CF and trending models laid out in ``target_ids`` order (a worker's index
        rows); items the snapshot does not know get zeros."""
        position = {item_id: p for p, item_id in enumerate(self.item_ids)}
        src = np.array([position.get(i, -1) for i in target_ids], dtype=np.int64)
        known = src >= 0
        n = len(target_ids)
        c = np.zeros((n, n), dtype=np.float32)
        assert self.cf_rows is not None  # __post_init__ fills it
        in_cf = np.full(len(self.item_ids) + 1, -1, dtype=np.int64)  # item position -> row of C (-1: none)
        in_cf[self.cf_rows] = np.arange(len(self.cf_rows))
        cf_src = in_cf[src]  # src -1 reads the last slot, which stays -1
        rows = np.flatnonzero(cf_src >= 0)
        c[np.ix_(rows, rows)] = self.cooccurrence[np.ix_(cf_src[rows], cf_src[rows])]
        counts = np.zeros(n)
        counts[known] = self.counts[src[known]]
        trend = np.zeros(n)
        trend[known] = self.trending[src[known]]
        return ItemCooccurrence.from_arrays(c, counts, **cf_options), TrendingPopularity.from_counts(trend)
