"""The hybrid scorer: content, collaborative filtering and trending, each normalised, summed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.embedding.item_index import ItemIndex
from model.scoring.cooccurrence import ItemCooccurrence
from model.scoring.diversity import mmr_rerank
from model.scoring.topk import top_k
from model.scoring.trending import TrendingPopularity
from model.user.state import UserState


@dataclass(frozen=True)
class HybridWeights:
    """beta of each component; 0 switches a component off. The defaults were chosen on the first
    30,000 MovieLens-100K events (docs/BENCHMARKS.md)."""

    content: float = 0.3
    cf: float = 1.0
    trending: float = 0.2


@dataclass(frozen=True)
class Scored:
    item_id: str
    score: float
    reasons: tuple[str, ...]


def zscore_rows(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(x - mean) / std per row over the columns where ``mask`` holds; constant rows give 0.

    >>> z = zscore_rows(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]), np.array([True, True, True]))
    >>> [[round(float(v), 3) for v in row] for row in z]
    [[-1.225, 0.0, 1.225], [0.0, 0.0, 0.0]]
    """
    cols = x[:, mask] if not mask.all() else x
    mean = cols.mean(axis=1, keepdims=True)
    std = cols.std(axis=1, keepdims=True)
    return np.where(std > 1e-9, (x - mean) / np.where(std > 1e-9, std, 1.0), 0.0).astype(np.float32)


def weighted_terms(
    weights: HybridWeights,
    mask: np.ndarray,
    *,
    content: np.ndarray | None = None,
    cf: np.ndarray | None = None,
    trending: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """beta_name * z(raw_name) of each raw term given (rows: users, or one row shared by all),
    z over the columns where ``mask`` holds; a term whose beta is 0 is left out. The hybrid
    score is the sum of the parts.

    >>> parts = weighted_terms(HybridWeights(cf=2.0), np.ones(2, bool), cf=np.array([[0.0, 1.0]]))
    >>> {name: part.tolist() for name, part in parts.items()}
    {'cf': [[-2.0, 2.0]]}
    """
    raw = {"content": content, "cf": cf, "trending": trending}
    return {
        name: getattr(weights, name) * zscore_rows(x, mask)
        for name, x in raw.items()
        if x is not None and getattr(weights, name)
    }


class HybridScorer:
    """score(u, i) = b_content * z(cos(u, e_i)) + b_cf * z(cf(u, i)) + b_trend * z(pop(i))

    z(.) standardises a component over the servable items for that user, so the betas weigh
    comparable quantities. cf comes from :class:`ItemCooccurrence` over the user's recent
    history (rejected items left out), pop from :class:`TrendingPopularity`. A user without
    history has only the trending term: cold start. Consumed and unavailable items are never
    served. With ``mmr_lambda < 1`` the best ``candidates`` are re-ranked by MMR for
    diversity. Each item carries 1-3 reasons, one per component that lifted it, strongest first.

    >>> from model.embedding.item_index import ItemInfo
    >>> index = ItemIndex(dim=2)
    >>> index.upsert([ItemInfo("a", "Apple"), ItemInfo("b", "Apricot"), ItemInfo("c", "Car")],
    ...              np.array([[1, 0], [0.96, 0.28], [0, 1]], dtype=np.float32))
    >>> state = UserState.new(dim=2)
    >>> _ = state.learn("e1", "a", "purchase", None, 0, index.vector_of("a"))
    >>> [(s.item_id, s.reasons) for s in HybridScorer(index).recommend([state], k=1)[0]]
    [('b', ('similar to Apple',))]
    """

    def __init__(
        self,
        index: ItemIndex,
        cf: ItemCooccurrence | None = None,
        trending: TrendingPopularity | None = None,
        weights: HybridWeights = HybridWeights(),
        mmr_lambda: float = 1.0,
        candidates: int = 50,
    ) -> None:
        self.index = index
        self.cf = cf
        self.trending = trending
        self.weights = weights
        self.mmr_lambda = mmr_lambda
        self.candidates = candidates

    def recommend(self, states: list[UserState], k: int, exclude: list[set[str]] | None = None) -> list[list[Scored]]:
        """One list per state, scored together; ``exclude`` adds item ids to skip per user."""
        if not states or len(self.index) == 0:
            return [[] for _ in states]
        available = self.index.available
        total, parts, cf_history = self.score_all(states)
        lists = []
        for row, state in enumerate(states):
            excluded = ~available
            excluded = excluded.copy()
            excluded[self._consumed_rows(state)] = True
            if exclude and exclude[row]:
                excluded[self._rows(list(exclude[row]))] = True
            pool = top_k(total[row], max(k, self.candidates) if self.mmr_lambda < 1 else k, excluded)
            if self.mmr_lambda < 1 and len(pool):
                pool = pool[mmr_rerank(total[row, pool], self.index.vectors[pool], k, self.mmr_lambda)]
            contributions = {name: part[row if len(part) > 1 else 0] for name, part in parts.items()}
            reasons = self._explain(state, pool, contributions, cf_history[row] if cf_history else [])
            lists.append(
                [
                    Scored(self.index.infos[r].item_id, float(total[row, r]), why)
                    for r, why in zip(pool, reasons, strict=True)
                ]
            )
        return lists

    def score_all(self, states: list[UserState]) -> tuple[np.ndarray, dict[str, np.ndarray], list[list[int]]]:
        """Hybrid scores of every item for each state (n_states, n_items), the weighted parts,
        and the history rows the CF part used."""
        n = len(self.index)
        available = self.index.available
        w = self.weights
        total = np.zeros((len(states), n), dtype=np.float32)
        content = cf = trending = None
        if w.content:
            content = np.stack([s.preference.direction() for s in states]) @ self.index.vectors.T
        cf_history: list[list[int]] = []
        if w.cf and self.cf is not None:
            cf_history = [self._cf_history(s) for s in states]
            cf = np.stack([self.cf.scores(h, n) for h in cf_history])
        if w.trending and self.trending is not None:
            trending = self.trending.scores(n)[None, :]
        parts = weighted_terms(w, available, content=content, cf=cf, trending=trending)
        for part in parts.values():
            total += part
        return total, parts, cf_history

    def other_terms(self, states: list[UserState]) -> np.ndarray:
        """The hybrid without its content term, b_cf * z(cf) + b_trend * z(pop), for each state
        over every item (n_states, n_items): the prior a fine-tune trains the content term on top
        of (:attr:`model.finetune.examples.TrainingExample.prior`)."""
        total, parts, _ = self.score_all(states)
        return total - parts["content"] if "content" in parts else total

    # -- helpers -----------------------------------------------------------------------------
    def _cf_history(self, state: UserState) -> list[int]:
        rows = [self.index.row_of(h.item_id) for h in state.history if not h.is_rejection]
        return [r for r in rows if r is not None]

    def _explain(
        self, state: UserState, pool: np.ndarray, contributions: dict[str, np.ndarray], cf_history: list[int]
    ) -> list[tuple[str, ...]]:
        """1-3 reasons per item of ``pool``, one per component that lifted it, strongest first.
        Similarities to the user's history are computed once per list, not per item."""
        infos = self.index.infos
        liked = list(
            dict.fromkeys(
                reversed([r for h in state.history if h.weight > 0 and (r := self.index.row_of(h.item_id)) is not None])
            )
        )[:20]
        content_sims = self.index.vectors[liked] @ self.index.vectors[pool].T if liked else None
        cf_rows = list(dict.fromkeys(reversed(cf_history)))[: self.cf.history] if self.cf and cf_history else []
        # cf_rows is non-empty only with a CF model
        cf_sims = (
            self.cf.similarity_rows(cf_rows, len(self.index))[:, pool] if cf_rows and self.cf is not None else None
        )
        out = []
        for j, row in enumerate(pool):
            ranked = sorted(contributions, key=lambda name: -contributions[name][row])
            chosen = [name for name in ranked if contributions[name][row] > 0][:3] or ranked[:1]
            reasons = []
            for name in chosen:
                if name == "content" and content_sims is not None:
                    reasons.append(f"similar to {infos[liked[int(content_sims[:, j].argmax())]].title}")
                elif name == "cf" and cf_sims is not None and cf_sims[:, j].max() > 0:
                    reasons.append(f"often bought with {infos[cf_rows[int(cf_sims[:, j].argmax())]].title}")
                elif name == "trending":
                    category = infos[row].category
                    reasons.append(f"trending in {category}" if category else "trending now")
            out.append(tuple(reasons))
        return out

    def _consumed_rows(self, state: UserState) -> np.ndarray:
        """Rows of the user's consumed items, cached on the state (consumed grows at the end
        and drops from the front, so the cache is extended instead of rebuilt)."""
        consumed = state.consumed
        key = (len(consumed), consumed[0] if consumed else None)
        cached = getattr(state, "_consumed_rows", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        if cached is not None and cached[0][1] == key[1] and cached[0][0] <= key[0]:
            rows = np.concatenate([cached[1], self._rows(consumed[cached[0][0] :])])
        else:
            rows = self._rows(consumed)
        state._consumed_rows = (key, rows)  # type: ignore[attr-defined]  # a cache on the state, not a field of it
        return rows

    def _rows(self, item_ids: list[str]) -> np.ndarray:
        rows = [self.index.row_of(i) for i in item_ids]
        return np.array([r for r in rows if r is not None], dtype=np.int64)
