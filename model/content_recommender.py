"""Content-based top-K lists: cosine between a user's preference direction and item vectors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.item_index import ItemIndex
from model.retrieval import top_k
from model.user_state import UserState


@dataclass(frozen=True)
class Scored:
    item_id: str
    score: float
    reasons: tuple[str, ...]


class ContentRecommender:
    """Recommend the k items closest to each user's taste, never a consumed or unavailable one.

    score(u, i) = cos(u, e_i) = (u / ||u||) . e_i; excluded: items the user purchased / rated /
    reviewed, and unavailable items. Each item is explained by the positively weighted recent
    history item most similar to it ("similar to <title>").

    >>> from model.item_index import ItemInfo
    >>> index = ItemIndex(dim=2)
    >>> index.upsert([ItemInfo("a", "Apple"), ItemInfo("b", "Apricot"), ItemInfo("c", "Car")],
    ...              np.array([[1, 0], [0.96, 0.28], [0, 1]], dtype=np.float32))
    >>> state = UserState.new(dim=2)
    >>> _ = state.learn("e1", "a", "purchase", None, 0, index.vector_of("a"))
    >>> [(s.item_id, s.reasons) for s in ContentRecommender(index).recommend([state], k=1)[0]]
    [('b', ('similar to Apple',))]
    """

    def __init__(self, index: ItemIndex) -> None:
        self.index = index

    def recommend(self, states: list[UserState], k: int) -> list[list[Scored]]:
        """One list per state, computed with a single matrix product for the whole batch."""
        if not states or len(self.index) == 0:
            return [[] for _ in states]
        users = np.stack([s.preference.direction() for s in states])
        scores = users @ self.index.vectors.T  # (n_users, n_items)
        unavailable = ~self.index.available
        lists = []
        for row, state in enumerate(states):
            excluded = unavailable.copy()
            excluded[self._consumed_rows(state)] = True
            chosen = top_k(scores[row], k, excluded)
            lists.append(self._explain(state, chosen, scores[row]))
        return lists

    def _consumed_rows(self, state: UserState) -> np.ndarray:
        """Index rows of the user's consumed items, cached on the state (consumed only grows at
        the end and drops from the front, so the cache is extended instead of rebuilt)."""
        consumed = state.consumed
        key = (len(consumed), consumed[0] if consumed else None)
        cached = getattr(state, "_consumed_rows", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        if cached is not None and cached[0][1] == key[1] and cached[0][0] <= key[0]:
            new = consumed[cached[0][0]:]
            rows = np.concatenate([cached[1], self._rows(new)])
        else:
            rows = self._rows(consumed)
        state._consumed_rows = (key, rows)
        return rows

    def _rows(self, item_ids: list[str]) -> np.ndarray:
        rows = [self.index.row_of(i) for i in item_ids]
        return np.array([r for r in rows if r is not None], dtype=np.int64)

    def _explain(self, state: UserState, rows: np.ndarray, scores: np.ndarray) -> list[Scored]:
        liked = [h.item_id for h in state.history if h.weight > 0 and h.item_id in self.index]
        liked = list(dict.fromkeys(reversed(liked)))[:20]  # most recent first, unique
        if liked:
            liked_vectors = np.stack([self.index.vector_of(i) for i in liked])
            nearest = (liked_vectors @ self.index.vectors[rows].T).argmax(axis=0) if len(rows) else []
        out = []
        for j, row in enumerate(rows):
            info = self.index.infos[row]
            reasons = (f"similar to {self.index.infos[self.index.row_of(liked[nearest[j]])].title}",) if liked else ()
            out.append(Scored(info.item_id, float(scores[row]), reasons))
        return out
