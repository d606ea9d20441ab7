"""The global models (CF neighbour lists, trending) as a portable snapshot keyed by item id."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from model.scoring.cooccurrence import ItemCooccurrence, ItemNeighbours
from model.scoring.repurchase import BuyAgain, RepurchaseCounts
from model.scoring.trending import TrendingPopularity, category_codes


@dataclass
class GlobalSnapshot:
    """What the learner ships to workers, in the learner's item order ``item_ids``: each item's
    top-N CF neighbours (CSR, :class:`ItemNeighbours`: O(n * N), never n^2), its trending
    count and its re-buying statistics (:class:`RepurchaseCounts`, 5 numbers). Items seen fewer than ``min_count`` times (decayed) at capture get no neighbours.

    >>> cf, trend = ItemCooccurrence(), TrendingPopularity()
    >>> for user, row in [("u", 0), ("u", 1)]:
    ...     cf.learn_one(user, row, ts=0); trend.learn_one(row, ts=0)
    >>> snap = GlobalSnapshot.capture(["a", "b"], cf, trend)
    >>> cf2, trend2 = GlobalSnapshot.from_bytes(snap.to_bytes()).for_items(["b", "x", "a"])
    >>> [round(float(v), 2) for v in cf2.scores([2], n_items=3)], trend2.scores(3).tolist()
    ([1.0, 0.0, 0.0], [1.0, 0.0, 1.0])
    """

    item_ids: list[str]
    neighbours: ItemNeighbours
    trending: np.ndarray  # (n,) decayed counts
    repurchase: np.ndarray | None = None  # (5, n) RepurchaseCounts.rows; None: nothing bought twice known

    @classmethod
    def capture(
        cls,
        item_ids: list[str],
        cf: ItemCooccurrence,
        trending: TrendingPopularity,
        min_count: float = 1.0,
        top_n: int = 100,
        repurchase: RepurchaseCounts | None = None,
    ) -> GlobalSnapshot:
        n = len(item_ids)
        rebuying = repurchase.rows(n) if repurchase is not None else None
        return cls(list(item_ids), cf.neighbours(n, top_n=top_n, min_count=min_count), trending.scores(n), rebuying)

    @property
    def nbytes(self) -> int:
        return (
            self.neighbours.nbytes + self.trending.nbytes + (0 if self.repurchase is None else self.repurchase.nbytes)
        )

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        nb = self.neighbours
        arrays = {
            "item_ids": np.array(self.item_ids, dtype=object).astype(str),
            "indptr": nb.indptr,
            "indices": nb.indices,
            "values": nb.values,
            "cf_options": np.array([nb.history, nb.recency]),
            "trending": self.trending.astype(np.float32),
        }
        if self.repurchase is not None:
            arrays["repurchase"] = self.repurchase.astype(np.float32)
        np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]  # the stubs read **kwds as allow_pickle
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> GlobalSnapshot:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            history, recency = z["cf_options"].tolist()
            neighbours = ItemNeighbours(z["indptr"], z["indices"], z["values"], int(history), float(recency))
            repurchase = z["repurchase"].astype(np.float64) if "repurchase" in z.files else None
            return cls([str(i) for i in z["item_ids"]], neighbours, z["trending"].astype(np.float64), repurchase)

    def for_items(
        self, target_ids: list[str], categories: list[str | None] | None = None
    ) -> tuple[ItemNeighbours, TrendingPopularity]:
        """Frozen CF and trending models laid out in ``target_ids`` order (a worker's index
        rows), trending also kept per category when ``categories`` are given; items the
        snapshot does not know get none."""
        position = {item_id: p for p, item_id in enumerate(self.item_ids)}
        src = np.array([position.get(i, -1) for i in target_ids], dtype=np.int64)
        known = src >= 0
        trend = np.zeros(len(target_ids))
        trend[known] = self.trending[src[known]]
        codes = None if categories is None else category_codes(categories)
        return self.neighbours.remapped(src), TrendingPopularity.from_counts(trend, categories=codes)

    def buy_again_for(self, target_ids: list[str], categories: list[str | None]) -> BuyAgain | None:
        """The buy-again model laid out in ``target_ids`` order, items shrunk towards their
        ``categories`` (the worker's catalogue knows them); None when the snapshot has none."""
        if self.repurchase is None:
            return None
        position = {item_id: p for p, item_id in enumerate(self.item_ids)}
        src = np.array([position.get(i, -1) for i in target_ids], dtype=np.int64)
        stats = np.zeros((5, len(target_ids)))
        stats[:, src >= 0] = self.repurchase[:, src[src >= 0]]
        return BuyAgain(stats, categories)
