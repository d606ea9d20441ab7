"""The hybrid scorer: content, collaborative filtering, trending (overall and in the user's
categories) and buy-again, each normalised, summed; candidates first, then the ranking of the
candidates only."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

from model.embedding.item_index import ItemIndex
from model.scoring.cooccurrence import CFScoring, SparseScores
from model.scoring.diversity import mmr_rerank
from model.scoring.policy import ServingPolicy
from model.scoring.repurchase import DAY_MS, BuyAgain
from model.scoring.topk import top_k
from model.scoring.trending import TrendingPopularity
from model.user.state import UserState

_USERS_AT_ONCE = 64  # users ranked in one matrix (faster than larger ones, measured)


@dataclass(frozen=True)
class HybridWeights:
    """beta of each component; 0 switches a component off. The defaults were chosen on the first
    30,000 MovieLens-100K events (docs/BENCHMARKS.md); ``category_trending`` on the first 30% of
    MovieLens and of the grocery sample (a tie with 0 on both, 0.3 hurt MovieLens; section 12)."""

    content: float = 0.3
    cf: float = 1.0
    trending: float = 0.2
    repurchase: float = 3.0  # chosen on the first 30% of the grocery log (docs/BENCHMARKS.md)
    category_trending: float = 0.1


@dataclass(frozen=True)
class Scored:
    item_id: str
    score: float
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Moments:
    """Mean and standard deviation of a term over the servable items, per user (B,)."""

    mean: np.ndarray
    std: np.ndarray

    def z(self, raw: np.ndarray) -> np.ndarray:
        """(raw - mean) / std of each user's row of ``raw`` (B, C); 0 where a term is constant."""
        std = self.std[:, None]
        z = (raw - self.mean[:, None]) / np.where(std > 1e-9, std, 1.0)
        return np.where(std > 1e-9, z, 0.0).astype(np.float32)

    @classmethod
    def of_sums(cls, total: np.ndarray, squares: np.ndarray, n: int) -> Moments:
        mean = np.asarray(total, dtype=np.float64) / max(n, 1)
        var = np.asarray(squares, dtype=np.float64) / max(n, 1) - mean**2
        return cls(mean, np.sqrt(np.maximum(var, 0.0)))


def zscore_rows(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(x - mean) / std per row over the columns where ``mask`` holds; constant rows give 0. The
    same :class:`Moments` as the scorer's, taken over the given columns.

    >>> z = zscore_rows(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]), np.array([True, True, True]))
    >>> [[round(float(v), 3) for v in row] for row in z]
    [[-1.225, 0.0, 1.225], [0.0, 0.0, 0.0]]
    """
    cols = (x[:, mask] if not mask.all() else x).astype(np.float64)
    moments = Moments.of_sums(cols.sum(axis=1), (cols * cols).sum(axis=1), cols.shape[1])
    return moments.z(x) if len(x) else x.astype(np.float32)


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


@dataclass(frozen=True)
class CandidateSizes:
    """How many candidates each term brings to the ranking stage: the ``content`` nearest items
    to the user's vector, the ``cf`` best CF scores from the neighbours of their recent items, the
    ``trending`` most trending items, the ``category_trending`` most trending items of each of the
    user's three strongest categories. ``exact`` ranks every item instead (to measure what the
    candidate stage costs; never at catalogue scale)."""

    content: int = 100
    cf: int = 100
    trending: int = 50
    category_trending: int = 20
    exact: bool = False


@dataclass
class _Terms:
    """What each term of a batch of users needs: their vectors, sparse CF scores and the rows
    CF used, and each term's moments over the servable items."""

    n: int = 0  # users
    users: np.ndarray | None = None
    cf: list[SparseScores] | None = None
    cf_history: list[list[int]] = field(default_factory=list)
    due: list[SparseScores] | None = None  # due(u, i) of the user's past purchases: who may be served
    rebuy: list[SparseScores] | None = None  # rebuy(u, i) of the same rows: the buy-again term
    bought_days: list[dict[int, float]] = field(default_factory=list)  # row -> days since bought
    liked: list[list[int]] = field(default_factory=list)  # rows the user liked, most recent first
    categories: list[SparseScores] | None = None  # per category code: a_u(c) / P(c)
    strongest: list[list[int]] = field(default_factory=list)  # the user's top 3 category codes
    moments: dict[str, Moments] = field(default_factory=dict)


class HybridScorer:
    """score(u, i) = b_content * z(cos(u, e_i)) + b_cf * z(cf(u, i)) + b_trend * z(pop(i))
    + b_rep * z(rebuy(u, i)) + b_cat * z(a_u(c_i) * pop(i) / P(c_i)), in two stages: candidates,
    then the ranking of the candidates only. The last term is trending within the user's
    categories: a_u(c) is the share of category c among the user's last 20 liked items, P(c)
    the trending count of all servable items of c (so a first click in a category already
    brings its trending items: cold start by category).

    z(.) standardises a term by its mean and standard deviation over the servable items, known
    in closed form without a pass over the catalogue: for content from the index's running sums
    (mean = u . m, var = u' S u - mean^2), for CF and buy-again from the user's sparse scores
    (zero elsewhere), for trending from the model's running sums (per category for the last
    term). So a candidate's score is
    exactly the score the full catalogue would give it; the candidates (:class:`CandidateSizes`:
    nearest items by the index's vector search, best CF neighbours of the user's recent items,
    top trending, and every past purchase due again) decide which items are ranked. A user
    without history has only the trending term: cold start. What a list may contain is the
    :class:`ServingPolicy` (consumed and just-seen items only when due again, never an
    unavailable item, MMR). due(u, i) and rebuy(u, i) are :class:`BuyAgain`'s, when the scorer has one. Each item
    carries 1-3 reasons, one per term that lifted it, strongest first.

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
        cf: CFScoring | None = None,
        trending: TrendingPopularity | None = None,
        weights: HybridWeights = HybridWeights(),
        policy: ServingPolicy = ServingPolicy(),
        sizes: CandidateSizes = CandidateSizes(),
        buy_again: BuyAgain | None = None,
    ) -> None:
        self.index = index
        self.cf = cf
        self.trending = trending
        self.weights = weights
        self.policy = policy
        self.sizes = sizes
        self.buy_again = buy_again

    def recommend(
        self,
        states: Sequence[UserState],
        k: int,
        exclude: Sequence[Collection[str]] | None = None,
        now_ms: Sequence[int] | None = None,
    ) -> list[list[Scored]]:
        """One list per state, scored together, as of ``now_ms`` (default: each user's latest
        event), within the :class:`ServingPolicy`; ``exclude`` adds item ids to skip per user."""
        if not states or self.index.n_available == 0:
            return [[] for _ in states]
        if len(states) > _USERS_AT_ONCE:  # bounded matrices: (users x candidates x dim) stays in cache
            return [
                scored
                for s in range(0, len(states), _USERS_AT_ONCE)
                for scored in self.recommend(
                    states[s : s + _USERS_AT_ONCE],
                    k,
                    exclude[s : s + _USERS_AT_ONCE] if exclude else None,
                    now_ms[s : s + _USERS_AT_ONCE] if now_ms else None,
                )
            ]
        nows = list(now_ms) if now_ms else [_latest_ts(s) for s in states]
        terms = self._terms(states, nows)
        policy = self.policy
        pool_size = max(k, policy.mmr_pool) if policy.mmr_lambda < 1 else k
        excluded = [
            self._excluded(s, now, exclude[b] if exclude else None, terms, b)
            for b, (s, now) in enumerate(zip(states, nows, strict=True))
        ]
        rows, valid = _padded(self._candidates(terms, excluded))
        total, parts = self._score(terms, rows)
        total[~valid] = -np.inf
        order = np.argsort(-total, axis=1, kind="stable")[:, :pool_size]  # ties: the lower row first
        lists = []
        for b, top in enumerate(order):
            top = top[valid[b, top]]
            pool, scores = rows[b, top], total[b, top]
            if policy.mmr_lambda < 1 and len(pool):
                picked = mmr_rerank(scores, self.index.vectors[pool], k, policy.mmr_lambda)
                pool, scores, top = pool[picked], scores[picked], top[picked]
            contributions = np.stack([part[b, top] for part in parts.values()]) if parts else np.zeros((0, len(top)))
            history = terms.cf_history[b] if terms.cf_history else []
            bought_days = terms.bought_days[b] if terms.bought_days else {}
            reasons = self._explain(terms.liked[b][:20], pool, list(parts), contributions, history, bought_days)
            infos = self.index.infos
            lists.append(
                [
                    Scored(infos[r].item_id, s, why)
                    for r, s, why in zip(pool.tolist(), scores.tolist(), reasons, strict=True)
                ]
            )
        return lists

    def score_all(self, states: Sequence[UserState]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Hybrid scores of every item for each state (n_states, n_items) and the weighted parts
        (unavailable items included: the caller masks them)."""
        return self._score(self._terms(states, [_latest_ts(s) for s in states]), np.arange(len(self.index)))

    def score_rows(self, state: UserState, rows: np.ndarray) -> np.ndarray:
        """The hybrid score of the items at ``rows`` for one user (as a full ranking would give)."""
        terms = self._terms([state], [_latest_ts(state)])
        return self._score(terms, np.asarray(rows, dtype=np.int64))[0][0]

    def other_terms(self, states: Sequence[UserState]) -> np.ndarray:
        """The hybrid without its content term, b_cf * z(cf) + b_trend * z(pop), for each state
        over every item (n_states, n_items): the prior a fine-tune trains the content term on top
        of (:attr:`model.finetune.examples.TrainingExample.prior`)."""
        total, parts = self.score_all(states)
        return total - parts["content"] if "content" in parts else total

    # -- the two stages ------------------------------------------------------------------------
    def _terms(self, states: Sequence[UserState], nows: Sequence[int]) -> _Terms:
        """What each term needs per user at time ``nows[b]``, with its moments over the servable
        items."""
        w, index = self.weights, self.index
        n_available = index.n_available
        terms = _Terms(n=len(states))
        if w.content:
            terms.users = np.stack([s.preference.direction() for s in states]).astype(np.float32)
            total, squares = index.moments(terms.users)
            terms.moments["content"] = Moments.of_sums(total, squares, n_available)
        history = [[(self.index.row_of(h.item_id), h) for h in s.history] for s in states]
        terms.liked = [
            list(dict.fromkeys(r for r, h in reversed(rows) if r is not None and h.weight > 0)) for rows in history
        ]
        if w.cf and self.cf is not None:
            terms.cf_history = [[r for r, h in rows if r is not None and not h.is_rejection] for rows in history]
            terms.cf = [self.cf.sparse_scores(h) for h in terms.cf_history]
            terms.moments["cf"] = self._sparse_moments(terms.cf)
        if self.buy_again is not None:
            terms.bought_days, terms.due, terms.rebuy = [], [], []
            for state, now in zip(states, nows, strict=True):
                days, due, rebuy = self._due(state, now)
                terms.bought_days.append(days)
                terms.due.append(due)
                terms.rebuy.append(rebuy)
            if w.repurchase:
                terms.moments["repurchase"] = self._sparse_moments(terms.rebuy)
        if w.category_trending and self.trending is not None:
            self._category_terms(terms)
        if w.trending and self.trending is not None:
            trend_sum, trend_squares = self.trending.moments(len(index), index.unavailable_rows())
            terms.moments["trending"] = Moments.of_sums(
                np.full(len(states), trend_sum), np.full(len(states), trend_squares), n_available
            )
        return terms

    def _category_terms(self, terms: _Terms) -> None:
        """Per user a_u(c) / P(c) by category code, their strongest categories, and the moments of
        a_u(c_i) pop(i) / P(c_i) over the servable items: sum_c a_c, sum_c a_c^2 S(c) / P(c)^2."""
        assert self.trending is not None
        terms.categories, terms.strongest = [], []
        totals, squares = np.zeros(terms.n), np.zeros(terms.n)
        unavailable = self.index.unavailable_rows()
        for b, liked in enumerate(terms.liked):
            codes = self.trending.categories_of(np.array(liked[:20], dtype=np.int64))
            codes, counts = np.unique(codes[codes >= 0], return_counts=True)
            sums = self.trending.category_moments(codes, unavailable)
            alive = sums[:, 0] > 1e-12
            codes, share, sums = codes[alive], counts[alive] / max(1, len(liked[:20])), sums[alive]
            terms.categories.append(SparseScores(codes, (share / np.maximum(sums[:, 0], 1e-12)).astype(np.float32)))
            terms.strongest.append(codes[np.argsort(-share, kind="stable")[:3]].tolist())
            totals[b] = share.sum()
            squares[b] = (share**2 * sums[:, 1] / np.maximum(sums[:, 0], 1e-12) ** 2).sum()
        terms.moments["category_trending"] = Moments.of_sums(totals, squares, self.index.n_available)

    def _sparse_moments(self, scores: list[SparseScores]) -> Moments:
        """Moments of sparse terms (zero outside their rows) over the servable items."""
        index = self.index
        live = [s.values[index.available[s.rows]].astype(np.float64) if len(s.rows) else np.zeros(0) for s in scores]
        return Moments.of_sums(
            np.array([v.sum() for v in live]), np.array([(v * v).sum() for v in live]), index.n_available
        )

    def _due(self, state: UserState, now: int) -> tuple[dict[int, float], SparseScores, SparseScores]:
        """Days since each past purchase (by row), their due and rebuy scores (rows ascending)."""
        assert self.buy_again is not None
        bought = sorted(
            (r, now - bought[1], bought[2] if len(bought) > 2 else bought[0])
            for item, bought in state.bought.items()
            if (r := self.index.row_of(item)) is not None
        )
        if not bought:
            return {}, SparseScores.empty(), SparseScores.empty()
        rows = np.array([r for r, _, _ in bought], dtype=np.int64)
        days = np.array([age for _, age, _ in bought], dtype=np.float64) / DAY_MS
        due, rebuy = self.buy_again.rebuy(rows, days, np.array([h for _, _, h in bought], dtype=np.float64))
        return (
            dict(zip(rows.tolist(), days.tolist(), strict=True)),
            SparseScores(rows, due.astype(np.float32)),
            SparseScores(rows, rebuy.astype(np.float32)),
        )

    def _excluded(
        self, state: UserState, now: int, exclude: Collection[str] | None, terms: _Terms, b: int
    ) -> np.ndarray:
        """Rows the policy keeps out of the user's list (ascending): consumed and recently seen
        items unless due again, and the caller's ``exclude``."""
        rows = np.union1d(self._consumed_rows(state), self._rows(self.policy.recent_items(state, now)))
        if terms.due is not None and len(terms.due[b].rows):
            due = terms.due[b]
            rows = np.setdiff1d(rows, due.rows[due.values >= self.policy.due_threshold], assume_unique=True)
        return np.union1d(rows, self._rows(list(exclude))) if exclude else rows

    def _candidates(self, terms: _Terms, excluded: list[np.ndarray]) -> list[np.ndarray]:
        """Per user: the rows to rank, servable and not excluded."""
        index, sizes = self.index, self.sizes
        n = len(index)
        if sizes.exact:
            servable = np.flatnonzero(index.available)
            return [np.setdiff1d(servable, e, assume_unique=True) for e in excluded]
        found: list[list[np.ndarray]] = [[] for _ in excluded]
        if terms.users is not None and sizes.content:
            for b, rows in enumerate(index.nearest(terms.users, sizes.content, excluded)):
                found[b].append(rows)
        if terms.cf is not None and sizes.cf:
            for b, scores in enumerate(terms.cf):
                rows = scores.rows[scores.rows < n]
                values = scores.values[scores.rows < n]
                keep = index.available[rows] & ~np.isin(rows, excluded[b])
                rows, values = rows[keep], values[keep]
                if len(rows) > sizes.cf:
                    rows = rows[top_k(values, sizes.cf)]
                found[b].append(rows)
        if terms.due is not None:  # every past purchase that is due again
            for b, due in enumerate(terms.due):
                rows = due.rows[(due.values >= self.policy.due_threshold) & (due.rows < n)]
                found[b].append(rows[index.available[rows] & ~np.isin(rows, excluded[b])])
        if terms.strongest and sizes.category_trending:
            assert self.trending is not None  # the category terms come from it
            for b, codes in enumerate(terms.strongest):
                for code in codes:
                    top = self.trending.top_in(code)
                    top = top[(top < n)]
                    top = top[index.available[top] & ~np.isin(top, excluded[b])]
                    found[b].append(top[: sizes.category_trending])
        if self.trending is not None and self.weights.trending and sizes.trending:
            top = self.trending.top_rows()
            top = top[top < n]
            top = top[index.available[top]]
            for b in range(len(excluded)):
                found[b].append(top[~np.isin(top, excluded[b])][: sizes.trending])
        return [np.unique(np.concatenate(f)) if f else np.zeros(0, dtype=np.int64) for f in found]

    def _score(self, terms: _Terms, rows: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The hybrid score of ``rows`` for each user of ``terms`` (B, C) and its weighted parts;
        ``rows`` is (B, C), one row of candidates per user, or (C,), the same items for all."""
        w = self.weights
        shared = rows.ndim == 1
        shape = (terms.n, rows.shape[-1])
        parts: dict[str, np.ndarray] = {}
        if "content" in terms.moments and terms.users is not None:
            vectors = self.index.vectors[rows]
            if shared:
                raw = terms.users @ vectors.T
            else:
                raw = np.matmul(vectors, terms.users[:, :, None], dtype=np.float32)[:, :, 0]
            parts["content"] = np.float32(w.content) * terms.moments["content"].z(raw)
        if "cf" in terms.moments and terms.cf is not None:
            parts["cf"] = np.float32(w.cf) * terms.moments["cf"].z(_lookup(terms.cf, rows, len(self.index) + 1))
        if "repurchase" in terms.moments and terms.rebuy is not None:
            raw = _lookup(terms.rebuy, rows, len(self.index) + 1)
            parts["repurchase"] = np.float32(w.repurchase) * terms.moments["repurchase"].z(raw)
        if "trending" in terms.moments and self.trending is not None:
            values = self.trending.values(rows.ravel()).reshape(rows.shape)
            parts["trending"] = np.float32(w.trending) * terms.moments["trending"].z(np.broadcast_to(values, shape))
        if "category_trending" in terms.moments and terms.categories is not None and self.trending is not None:
            codes = self.trending.categories_of(rows)
            stride = max((int(c.rows.max()) for c in terms.categories if len(c.rows)), default=0) + 2
            share = _lookup(terms.categories, np.broadcast_to(codes, shape), stride)
            raw = share * self.trending.values(rows.ravel()).reshape(rows.shape)
            parts["category_trending"] = np.float32(w.category_trending) * terms.moments["category_trending"].z(raw)
        total = np.zeros(shape, dtype=np.float32)
        for part in parts.values():
            total += part
        return total, parts

    # -- helpers -----------------------------------------------------------------------------
    def _explain(
        self,
        liked: list[int],
        pool: np.ndarray,
        names: list[str],
        contributions: np.ndarray,
        cf_history: list[int],
        bought_days: dict[int, float],
    ) -> list[tuple[str, ...]]:
        """1-3 reasons per item of ``pool``, one per term that lifted it, strongest first;
        ``contributions[t, j]`` is term ``names[t]``'s part of item j's score; ``liked``: the
        rows the user liked, most recent first. Similarities to them are computed once per list."""
        infos = self.index.infos
        like_of = (self.index.vectors[liked] @ self.index.vectors[pool].T).argmax(axis=0).tolist() if liked else None
        cf_rows = self.cf.recent_rows(cf_history) if self.cf and cf_history else []
        bought_with: list[int | None] = [None] * len(pool)
        if cf_rows and self.cf is not None:
            sims = self.cf.similarity(cf_rows, pool)
            bought_with = [
                int(a) if s > 0 else None for a, s in zip(sims.argmax(axis=0), sims.max(axis=0), strict=True)
            ]
        ranking = np.argsort(-contributions, axis=0, kind="stable").T.tolist()  # per item: terms, strongest first
        lifted = (contributions > 0).T.tolist()
        out = []
        for j, row in enumerate(pool.tolist()):
            chosen = [t for t in ranking[j] if lifted[j][t]][:3] or ranking[j][:1]
            reasons = []
            for t in chosen:
                name = names[t]
                if name == "content" and like_of is not None:
                    reasons.append(f"similar to {infos[liked[like_of[j]]].title}")
                elif name == "cf" and (a := bought_with[j]) is not None:
                    reasons.append(f"often bought with {infos[cf_rows[a]].title}")
                elif name == "repurchase" and row in bought_days:
                    days = bought_days[row]
                    reasons.append(f"buy again (you last bought it {_days(days)} ago)")
                elif name == "category_trending" and infos[row].category:
                    reasons.append(f"trending in {infos[row].category}")
                elif name == "trending":
                    reasons.append("trending now")
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


def _padded(candidates: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-user candidate rows as one (B, C) matrix (C: the longest list), padded with row 0,
    and where it holds a real candidate."""
    width = max((len(c) for c in candidates), default=0)
    rows = np.zeros((len(candidates), width), dtype=np.int64)
    valid = np.zeros((len(candidates), width), dtype=bool)
    for b, c in enumerate(candidates):
        rows[b, : len(c)] = c
        valid[b, : len(c)] = True
    return rows, valid


def _lookup(scores: list[SparseScores], rows: np.ndarray, stride: int) -> np.ndarray:
    """Each user's sparse score at ``rows`` (B, C) or (C,) shared, 0 where it has none: one
    search over every user's sorted rows, offset by ``b * stride`` so the users stay apart."""
    keys = np.concatenate([s.rows + b * stride for b, s in enumerate(scores)] + [np.zeros(0, np.int64)])
    values = np.concatenate([s.values for s in scores] + [np.zeros(0, np.float32)])
    wanted = rows + (np.arange(len(scores), dtype=np.int64) * stride)[:, None]
    if not len(keys):
        return np.zeros(wanted.shape, dtype=np.float32)
    at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return np.where(keys[at] == wanted, values[at], np.float32(0.0))


def _latest_ts(state: UserState) -> int:
    """When the user last did something (ms): the time their list is made for by default."""
    return max((h.ts for h in state.history), default=0)


def _days(days: float) -> str:
    n = max(1, round(days))
    return "1 day" if n == 1 else f"{n} days"
