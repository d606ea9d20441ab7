"""The global models (CF co-occurrence, trending) as a portable snapshot keyed by item id."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from model.cooccurrence import ItemCooccurrence
from model.trending import TrendingPopularity


@dataclass
class GlobalSnapshot:
    """What the learner ships to workers: current (decayed) co-occurrence C, item counts n and
    trending counts, in the learner's item order ``item_ids``.

    >>> cf, trend = ItemCooccurrence(), TrendingPopularity()
    >>> for user, row in [("u", 0), ("u", 1)]:
    ...     cf.learn_one(user, row, ts=0); trend.learn_one(row, ts=0)
    >>> snap = GlobalSnapshot.capture(["a", "b"], cf, trend)
    >>> cf2, trend2 = GlobalSnapshot.from_bytes(snap.to_bytes()).for_items(["b", "x", "a"])
    >>> [round(float(v), 2) for v in cf2.scores([2], n_items=3)], trend2.scores(3).tolist()
    ([1.0, 0.0, 0.0], [1.0, 0.0, 1.0])
    """

    item_ids: list[str]
    cooccurrence: np.ndarray  # (n, n) float32
    counts: np.ndarray  # (n,) float64
    trending: np.ndarray  # (n,) float64

    @classmethod
    def capture(cls, item_ids: list[str], cf: ItemCooccurrence, trending: TrendingPopularity) -> GlobalSnapshot:
        n = len(item_ids)
        c, counts = cf.current(n)
        return cls(list(item_ids), c, counts, trending.scores(n))

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(buf, item_ids=np.array(self.item_ids, dtype=object).astype(str),
                            cooccurrence=self.cooccurrence, counts=self.counts, trending=self.trending)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> GlobalSnapshot:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return cls([str(i) for i in z["item_ids"]], z["cooccurrence"], z["counts"], z["trending"])

    def for_items(self, target_ids: list[str], **cf_options) -> tuple[ItemCooccurrence, TrendingPopularity]:
        """Frozen CF and trending models laid out in ``target_ids`` order (a worker's index
        rows); items the snapshot does not know get zeros."""
        position = {item_id: p for p, item_id in enumerate(self.item_ids)}
        src = np.array([position.get(i, -1) for i in target_ids])
        known = src >= 0
        n = len(target_ids)
        c = np.zeros((n, n), dtype=np.float32)
        rows = np.flatnonzero(known)
        c[np.ix_(rows, rows)] = self.cooccurrence[np.ix_(src[known], src[known])]
        counts = np.zeros(n)
        counts[known] = self.counts[src[known]]
        trend = np.zeros(n)
        trend[known] = self.trending[src[known]]
        return ItemCooccurrence.from_arrays(c, counts, **cf_options), TrendingPopularity.from_counts(trend)
