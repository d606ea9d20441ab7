"""The whole recommender in one process: per-user states (as the worker keeps them) plus the
global CF and trending models (as the learner keeps them), behind the Recommender protocol."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from model.embedding.item_index import ItemIndex
from model.evaluation.protocol import Interaction
from model.scoring.cooccurrence import ItemCooccurrence
from model.scoring.decay import DEFAULT_HALF_LIFE_S
from model.scoring.hybrid import CandidateSizes, HybridScorer, HybridWeights
from model.scoring.policy import ServingPolicy
from model.scoring.repurchase import BuyAgain, RepurchaseCounts
from model.scoring.trending import TrendingPopularity, category_codes
from model.user.preference import REJECTING_TYPES
from model.user.review import ReviewReader
from model.user.state import UserState


class OnlineHybrid:
    """Test-then-learn-able hybrid: ``learn_one`` updates the user's preference vector and
    history exactly as a worker does, and CF co-occurrence and trending counts as the learner
    does; ``recommend`` calls the same :class:`HybridScorer` the worker serves with, within the
    same :class:`ServingPolicy`, as of the latest event of the log. The buy-again model is
    rebuilt from the re-buying counts as the learner's snapshots would bring it: after every
    tenth of the purchases so far, at most every ``buy_again_every`` purchases.

    >>> from model.embedding.item_index import ItemInfo
    >>> index = ItemIndex(dim=2)
    >>> index.upsert([ItemInfo("a", "A"), ItemInfo("b", "B"), ItemInfo("c", "C")],
    ...              np.array([[1, 0], [0.9, 0.44], [0, 1]], dtype=np.float32))
    >>> model = OnlineHybrid(index)
    >>> for user, item in [("u1", "a"), ("u1", "c"), ("u2", "a")]:
    ...     model.learn_one(Interaction(user, item, ts=0, type="purchase"))
    >>> model.recommend("u2", k=2, exclude={"a"})  # u1 bought a and c together
    ['c', 'b']
    """

    def __init__(
        self,
        index: ItemIndex,
        weights: HybridWeights = HybridWeights(),
        name: str = "hybrid",
        half_life_s: float = DEFAULT_HALF_LIFE_S,
        history_size: int = 50,
        cf: ItemCooccurrence | None = None,
        trending: TrendingPopularity | None = None,
        policy: ServingPolicy = ServingPolicy(),
        sizes: CandidateSizes = CandidateSizes(),
        buy_again_every: int = 500,
        reviews: ReviewReader | None = None,
    ) -> None:
        self.name = name
        self.index = index
        self.half_life_s = half_life_s
        self.history_size = history_size
        self.cf = cf if cf is not None else ItemCooccurrence()
        self.trending = trending if trending is not None else TrendingPopularity()
        self.trending.set_categories(category_codes([info.category for info in index.infos]))
        self.scorer = HybridScorer(index, self.cf, self.trending, weights, policy=policy, sizes=sizes)
        self.repurchase = RepurchaseCounts()
        self.buy_again_every = buy_again_every
        self.reviews = reviews  # reads a review's text into the user's vector, as the worker does
        self.states: dict[str, UserState] = {}
        self._events = 0
        self._purchases = 0
        self._built_at = 0  # purchases learned when the buy-again model was last rebuilt
        self._now = 0  # ms: the latest event's time, when the next list is asked for
        self._asked: tuple[tuple[str, ...], np.ndarray] | None = None

    def _state(self, user_id: str) -> UserState:
        state = self.states.get(user_id)
        if state is None:
            state = UserState.new(self.index.dim, self.half_life_s, self.history_size)
        return state

    def learn_one(self, event: Interaction) -> None:
        row = self.index.row_of(event.item_id)
        if row is None:
            return
        self._events += 1
        self._now = max(self._now, event.ts)
        state = self.states.setdefault(event.user_id, self._state(event.user_id))
        value, text_vector = event.value, None
        if self.reviews is not None and event.type == "review" and event.text:
            [read] = self.reviews.read([event.text], [event.value])
            value, text_vector = read.stars, read.vector
        state.learn(
            f"#{self._events}", event.item_id, event.type, value, event.ts, self.index.vectors[row], text_vector
        )
        if event.type not in REJECTING_TYPES:
            self.cf.learn_one(event.user_id, row, event.ts)
            self.trending.learn_one(row, event.ts)
        if event.type == "purchase":
            self.repurchase.learn_one(event.user_id, row, event.ts)
            self._purchases += 1
            since = self._purchases - self._built_at
            if since >= min(self.buy_again_every, max(1, self._built_at // 10)):  # often early, then steadily
                categories = [info.category for info in self.index.infos]
                self.scorer.buy_again = BuyAgain(self.repurchase.rows(len(self.index)), categories)
                self._built_at = self._purchases

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = frozenset()) -> list[str]:
        [scored] = self.scorer.recommend([self._state(user_id)], k, [set(exclude)], now_ms=[self._now])
        return [s.item_id for s in scored]

    def score(self, user_id: str, item_ids: Sequence[str]) -> np.ndarray:
        rows = self._rows_of(item_ids)
        out = np.full(len(rows), -np.inf)
        known = rows >= 0
        out[known] = self.scorer.score_rows(self._state(user_id), rows[known])
        return out

    def _rows_of(self, item_ids: Sequence[str]) -> np.ndarray:
        """Index rows of ``item_ids`` (-1: unknown); the answer for the same tuple is kept (the
        harness asks about its whole catalogue after every list)."""
        if isinstance(item_ids, tuple) and self._asked is not None and self._asked[0] is item_ids:
            return self._asked[1]
        rows = np.array([-1 if (r := self.index.row_of(i)) is None else r for i in item_ids], dtype=np.int64)
        if isinstance(item_ids, tuple):
            self._asked = (item_ids, rows)
        return rows
