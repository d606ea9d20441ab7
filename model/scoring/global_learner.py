"""The learner's global models: item co-occurrence CF and trending popularity learned from
every event, with item rows of their own and event-id dedupe, and the prior a training example
keeps (the hybrid's other terms as a worker on the newest snapshot scores them)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from model.scoring.cooccurrence import ItemCooccurrence
from model.scoring.decay import DEFAULT_HALF_LIFE_S
from model.scoring.hybrid import HybridWeights, weighted_terms
from model.scoring.repurchase import RepurchaseCounts
from model.scoring.snapshot import GlobalSnapshot
from model.scoring.trending import TrendingPopularity
from model.user.preference import REJECTING_TYPES


class GlobalLearner:
    """CF + trending learned from events, with item rows of its own and event-id dedupe. Its
    cost per event does not depend on the catalogue's size (sparse CF, O(1) trending); only
    :meth:`prior` (a fine-tune example's prior, over the whole catalogue) does.

    >>> learner = GlobalLearner()
    >>> for i, item in enumerate(["a", "b", "a"]):
    ...     _ = learner.learn(f"e{i}", "u1" if i < 2 else "u2", item, "click", ts=0)
    >>> learner.learn("e0", "u1", "a", "click", ts=0)  # a redelivered event
    False
    >>> learner.item_ids, learner.events
    (['a', 'b'], 3)
    """

    def __init__(
        self,
        half_life_s: float = DEFAULT_HALF_LIFE_S,
        dedupe_window: int = 200_000,
        cf_min_item_count: float = 1.0,
        cf_neighbours: int = 100,
    ) -> None:
        self.cf = ItemCooccurrence()
        self.trending = TrendingPopularity(half_life_s)
        self.repurchase = RepurchaseCounts()
        self.item_ids: list[str] = []
        self._rows: dict[str, int] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.dedupe_window = dedupe_window
        self.cf_min_item_count = cf_min_item_count
        self.cf_neighbours = cf_neighbours
        self.events = 0
        self._positions: tuple[tuple[int, int], np.ndarray] | None = None  # catalogue -> learner rows

    def __getstate__(self) -> dict:
        """Pickled without the catalogue-position cache (keyed by object identity)."""
        return {**self.__dict__, "_positions": None}

    def has_seen(self, event_id: str) -> bool:
        return event_id in self._seen

    def prior(self, user_id: str, catalogue: tuple[str, ...], weights: HybridWeights) -> np.ndarray:
        """b_cf * z(cf(u, i)) + b_trend * z(pop(i)) for each item i of ``catalogue``, from what was
        learned so far: the hybrid's other terms in ``user_id``'s next list, as a worker on the
        newest snapshot scores them (the prior of a training example, before its event is learned).
        """
        key = (id(catalogue), len(self.item_ids))
        if self._positions is None or self._positions[0] != key:
            self._positions = (key, np.array([self._rows.get(i, -1) for i in catalogue], dtype=np.int64))
        positions = self._positions[1]
        found = positions >= 0
        n = len(self.item_ids)
        if not n:
            return np.zeros(len(catalogue), dtype=np.float32)

        def on_catalogue(raw: np.ndarray) -> np.ndarray:
            return np.where(found, raw[positions], 0.0)[None, :]

        cf = on_catalogue(self.cf.scores(list(self.cf.recent.get(user_id, ())), n)) if weights.cf else None
        trending = on_catalogue(self.trending.scores(n)) if weights.trending else None
        parts = weighted_terms(weights, np.ones(len(catalogue), dtype=bool), cf=cf, trending=trending)
        return sum(parts.values(), np.zeros((1, len(catalogue)), dtype=np.float32))[0]

    def learn(self, event_id: str, user_id: str, item_id: str | None, event_type: str, ts: int) -> bool:
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        if len(self._seen) > self.dedupe_window:
            self._seen.popitem(last=False)
        if event_type == "forget_user":
            self.cf.recent.pop(user_id, None)  # the global counts keep no user identity
            self.repurchase.forget(user_id)
            return True
        if item_id is None or event_type in REJECTING_TYPES:
            return True
        row = self._rows.get(item_id)
        if row is None:
            row = self._rows[item_id] = len(self.item_ids)
            self.item_ids.append(item_id)
        self.cf.learn_one(user_id, row, ts)
        self.trending.learn_one(row, ts)
        if event_type == "purchase":
            self.repurchase.learn_one(user_id, row, ts)
        self.events += 1
        return True

    def snapshot(self) -> GlobalSnapshot:
        """CF neighbour lists (top ``cf_neighbours`` per item), trending counts and re-buying
        statistics, by item id."""
        return GlobalSnapshot.capture(
            self.item_ids, self.cf, self.trending, self.cf_min_item_count, self.cf_neighbours, self.repurchase
        )
