"""Baseline recommenders, each speaking the ``model.evaluation.protocol.Recommender`` protocol.

Every baseline keeps its item scores in a numpy vector over the items it has seen (rows in
order of first appearance), so ``recommend`` is one vector of scores, a mask of the excluded
items and an argpartition (``model.scoring.topk.top_k``; ties go to the earlier-seen item).
Items a baseline has never seen score 0 in ``score`` and are never recommended.

One module on purpose: the peers share that item-row layout (``_ItemRows``),
and the harness's list of peers reads in one place.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np

from model.evaluation.protocol import Interaction
from model.scoring.topk import top_k


class _ItemRows:
    """Item id <-> row number, rows handed out in order of first appearance and never reused."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.row_of: dict[str, int] = {}
        self._cached_ids: Sequence[str] | None = None
        self._cached_rows = np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, item_id: str) -> int:
        row = self.row_of.get(item_id)
        if row is None:
            row = self.row_of[item_id] = len(self.ids)
            self.ids.append(item_id)
        return row

    def rows_of(self, item_ids: Sequence[str]) -> np.ndarray:
        """Rows of ``item_ids``, -1 for unknown ids. The last answer is kept for an identical
        tuple, so a harness asking about the same catalogue snapshot again pays nothing."""
        if isinstance(item_ids, tuple) and item_ids is self._cached_ids:
            return self._cached_rows
        row_of = self.row_of
        rows = np.fromiter((row_of.get(i, -1) for i in item_ids), dtype=np.int64, count=len(item_ids))
        if isinstance(item_ids, tuple):
            self._cached_ids, self._cached_rows = item_ids, rows
        return rows

    def mask(self, item_ids: Iterable[str]) -> np.ndarray:
        """Boolean vector over the rows, True at the known ``item_ids``."""
        masked = np.zeros(len(self.ids), dtype=bool)
        rows = [r for r in map(self.row_of.get, item_ids) if r is not None]
        masked[rows] = True
        return masked

    def top(self, scores: np.ndarray, k: int, exclude: Iterable[str]) -> list[str]:
        return [self.ids[r] for r in top_k(scores, k, self.mask(exclude))]

    def pick(self, scores: np.ndarray, item_ids: Sequence[str]) -> np.ndarray:
        """``scores[row]`` for each id, 0 for ids without a row."""
        rows = self.rows_of(item_ids)
        known = rows >= 0
        out = np.zeros(len(rows), dtype=np.float64)
        out[known] = scores[rows[known]]
        return out


def _grown(array: np.ndarray, size: int, square: bool = False) -> np.ndarray:
    """``array`` with room for ``size`` rows (and columns if ``square``), doubled and zero-filled."""
    if array.shape[0] >= size:
        return array
    capacity = max(size, 2 * array.shape[0], 64)
    shape = (capacity, capacity) if square else (capacity, *array.shape[1:])
    bigger = np.zeros(shape, dtype=array.dtype)
    bigger[tuple(slice(0, n) for n in array.shape)] = array
    return bigger


class Popularity:
    """All-time most popular items: score(u, i) = n_i, the number of events on item i.

    >>> model = Popularity()
    >>> for user, item in [("a", "x"), ("b", "x"), ("b", "y")]:
    ...     model.learn_one(Interaction(user, item, ts=0))
    >>> model.recommend("c", k=2, exclude=set()), model.recommend("a", k=2, exclude={"x"})
    (['x', 'y'], ['y'])
    """

    def __init__(self, name: str = "popularity") -> None:
        self.name = name
        self.items = _ItemRows()
        self._counts = np.zeros(0, dtype=np.float64)

    def learn_one(self, event: Interaction) -> None:
        row = self.items.add(event.item_id)
        self._counts = _grown(self._counts, row + 1)
        self._counts[row] += 1.0

    def scores(self) -> np.ndarray:
        """n_i for every known item, by row."""
        return self._counts[: len(self.items)]

    def recommend(self, user_id: str, k: int, exclude: set[str]) -> list[str]:
        return self.items.top(self.scores(), k, exclude)

    def score(self, user_id: str, item_ids: Sequence[str]) -> np.ndarray:
        return self.items.pick(self.scores(), item_ids)


class FrequentPurchases:
    """The grocery baseline "your most frequent past purchases": score(u, i) = n_ui + 1e-6 * t_ui,
    how often u bought (or rated, or took) i, ties to the most recent; users' lists hold their own
    items only, then the all-time most popular items after them (score - 1 + n_i / (1 + max n)).

    >>> model = FrequentPurchases()
    >>> for user, item in [("a", "milk"), ("a", "bread"), ("a", "milk"), ("b", "eggs"), ("b", "eggs"), ("b", "eggs")]:
    ...     model.learn_one(Interaction(user, item, ts=0))
    >>> model.recommend("a", k=3, exclude=set()), model.recommend("c", k=1, exclude=set())
    (['milk', 'bread', 'eggs'], ['eggs'])
    """

    def __init__(self, name: str = "frequent-purchases") -> None:
        self.name = name
        self.popularity = Popularity()
        self._mine: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)  # user -> item -> (count, order)
        self._events = 0

    def learn_one(self, event: Interaction) -> None:
        self.popularity.learn_one(event)
        self._events += 1
        count, _ = self._mine[event.user_id].get(event.item_id, (0, 0))
        self._mine[event.user_id][event.item_id] = (count + 1, self._events)

    def scores(self, user_id: str) -> np.ndarray:
        items = self.popularity.items
        counts = self.popularity.scores()
        out = counts / (1.0 + counts.max(initial=0.0)) - 1.0  # below every own item
        for item_id, (count, order) in self._mine.get(user_id, {}).items():
            out[items.row_of[item_id]] = count + order / (self._events + 1)
        return out

    def recommend(self, user_id: str, k: int, exclude: set[str]) -> list[str]:
        return self.popularity.items.top(self.scores(user_id), k, exclude)

    def score(self, user_id: str, item_ids: Sequence[str]) -> np.ndarray:
        return self.popularity.items.pick(self.scores(user_id), item_ids)


class RecentPopularity:
    """Trending items: event counts decayed with a half-life of event time.

    score(i, t) = sum_{events e on i, t_e <= t} 2^(-(t - t_e) / half_life), t = the latest event
    time learned. Stored relative to a reference time (rescaled now and then), so one event costs
    O(1).

    >>> day = 86_400_000
    >>> model = RecentPopularity(half_life_days=1.0)
    >>> for item, ts in [("old", 0), ("old", 0), ("old", 0), ("new", 2 * day)]:
    ...     model.learn_one(Interaction("u", item, ts))
    >>> model.recommend("v", k=2, exclude=set()), model.score("v", ["old", "new"]).tolist()
    (['new', 'old'], [0.75, 1.0])
    """

    def __init__(self, half_life_days: float = 7.0, name: str = "trending-7d") -> None:
        self.name = name
        self.half_life_ms = half_life_days * 86_400_000
        self.items = _ItemRows()
        self._weights = np.zeros(0, dtype=np.float64)  # score at self._reference_ts
        self._reference_ts: float | None = None
        self._latest_ts = 0.0

    def learn_one(self, event: Interaction) -> None:
        row = self.items.add(event.item_id)
        self._weights = _grown(self._weights, row + 1)
        if self._reference_ts is None:
            self._reference_ts = self._latest_ts = float(event.ts)
        self._latest_ts = max(self._latest_ts, float(event.ts))
        exponent = (event.ts - self._reference_ts) / self.half_life_ms
        if exponent > 30:  # move the reference forward before 2^exponent gets large
            self._weights *= 2.0**-exponent
            self._reference_ts, exponent = float(event.ts), 0.0
        self._weights[row] += 2.0**exponent

    def scores(self) -> np.ndarray:
        """Decayed counts at the latest event time, by row."""
        if self._reference_ts is None:
            return self._weights[:0]
        return self._weights[: len(self.items)] * 2.0 ** ((self._reference_ts - self._latest_ts) / self.half_life_ms)

    def recommend(self, user_id: str, k: int, exclude: set[str]) -> list[str]:
        return self.items.top(self.scores(), k, exclude)

    def score(self, user_id: str, item_ids: Sequence[str]) -> np.ndarray:
        return self.items.pick(self.scores(), item_ids)


class ItemKNN:
    """Item-to-item cosine over co-occurrence in users' histories, maintained per event.

    cos(i, j) = c_ij / sqrt(n_i n_j), where c_ij counts users who interacted with both i and j
    and n_i users who interacted with i;  score(u, i) = sum_{h in last ``n_recent`` distinct
    items of u} cos(i, h). A new (user, item) pair adds 1 to c_ij and c_ji for every j the user
    had before, and 1 to n_i. Dense counts: fine up to some 20,000 items.

    >>> model = ItemKNN()
    >>> for user, item in [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y"), ("c", "z"), ("d", "x")]:
    ...     model.learn_one(Interaction(user, item, ts=0))
    >>> model.recommend("d", k=1, exclude={"x"}), round(float(model.score("d", ["y"])[0]), 4)
    (['y'], 0.8165)
    """

    def __init__(self, n_recent: int = 20, name: str = "item-knn") -> None:
        self.name = name
        self.n_recent = n_recent
        self.items = _ItemRows()
        self._cooccurrence = np.zeros((0, 0), dtype=np.float32)
        self._users_per_item = np.zeros(0, dtype=np.float32)
        self._history: dict[str, list[int]] = defaultdict(list)  # distinct rows, oldest first
        self._history_set: dict[str, set[int]] = defaultdict(set)

    def learn_one(self, event: Interaction) -> None:
        row = self.items.add(event.item_id)
        history, history_set = self._history[event.user_id], self._history_set[event.user_id]
        if row in history_set:  # a repeat only refreshes recency
            history.remove(row)
            history.append(row)
            return
        self._cooccurrence = _grown(self._cooccurrence, row + 1, square=True)
        self._users_per_item = _grown(self._users_per_item, row + 1)
        if history:
            self._cooccurrence[row, history] += 1.0
            self._cooccurrence[history, row] += 1.0
        self._users_per_item[row] += 1.0
        history.append(row)
        history_set.add(row)

    def scores(self, user_id: str) -> np.ndarray:
        """score(u, i) for every known item, by row (zeros for a user without history)."""
        n = len(self.items)
        recent = self._history.get(user_id, [])[-self.n_recent :]
        if not recent:
            return np.zeros(n, dtype=np.float32)
        counts = self._users_per_item[:n]
        norms = np.sqrt(np.maximum(counts, 1.0))
        similarity = self._cooccurrence[recent, :n] / (norms[recent, None] * norms[None, :])
        return similarity.sum(axis=0)

    def recommend(self, user_id: str, k: int, exclude: set[str]) -> list[str]:
        return self.items.top(self.scores(user_id), k, exclude)

    def score(self, user_id: str, item_ids: Sequence[str]) -> np.ndarray:
        return self.items.pick(self.scores(user_id), item_ids)


class RiverMF:
    """river's online matrix factorisation (``reco.FunkMF`` or ``reco.BiasedMF``) on implicit feedback.

    Each event (u, i) is one SGD step on (u, i, y=1) followed by ``n_negatives`` steps on
    (u, j, y=0) with j drawn uniformly, among the items u has not interacted with, from
    ``catalogue`` when given (all items known up front; drawn items become servable) or else
    from the items seen in the stream so far.
    Squared loss; FunkMF: y_hat = <p_u, q_i>; BiasedMF: y_hat = mu + b_u + b_i + <p_u, q_i>.
    The item factors are mirrored into a matrix after each step, so ``recommend`` scores every
    item with one product.

    >>> model = RiverMF("funk", n_factors=4, seed=1)
    >>> for user, item in [("a", "x"), ("b", "x"), ("b", "y")]:
    ...     model.learn_one(Interaction(user, item, ts=0))
    >>> model.recommend("a", k=5, exclude={"x"})
    ['y']
    """

    def __init__(
        self,
        flavour: Literal["funk", "biased"] = "funk",
        n_factors: int = 32,
        learning_rate: float = 0.05,
        n_negatives: int = 3,
        catalogue: Sequence[str] | None = None,
        seed: int = 0,
        name: str | None = None,
    ) -> None:
        from river import optim, reco

        self.name = name or f"river-{flavour}mf"
        self.flavour = flavour
        self.n_negatives = n_negatives
        self._rng = random.Random(seed)
        initializer = optim.initializers.Normal(mu=0.0, sigma=0.1, seed=seed)
        # FunkMF or BiasedMF: the bias attributes are read only when flavour == "biased"
        self.river_model: Any
        if flavour == "funk":
            self.river_model = reco.FunkMF(
                n_factors=n_factors, optimizer=optim.SGD(learning_rate), initializer=initializer, seed=seed
            )
        elif flavour == "biased":
            self.river_model = reco.BiasedMF(
                n_factors=n_factors,
                bias_optimizer=optim.SGD(learning_rate),
                latent_optimizer=optim.SGD(learning_rate),
                latent_initializer=initializer,
                seed=seed,
            )
        else:
            raise ValueError(f"flavour must be 'funk' or 'biased', got {flavour!r}")
        self.catalogue = list(catalogue) if catalogue is not None else None
        self.items = _ItemRows()
        self._item_factors = np.zeros((0, n_factors), dtype=np.float64)
        self._item_bias = np.zeros(0, dtype=np.float64)
        self._rows_of_user: dict[str, set[int]] = defaultdict(set)

    def learn_one(self, event: Interaction) -> None:
        user = event.user_id
        row = self._row(event.item_id)
        user_rows = self._rows_of_user[user]
        user_rows.add(row)
        self._step(user, row, 1.0)
        for _ in range(self.n_negatives):
            negative = self._draw_negative(user_rows)
            if negative is not None:
                self._step(user, negative, 0.0)

    def _row(self, item_id: str) -> int:
        row = self.items.add(item_id)
        self._item_factors = _grown(self._item_factors, row + 1)
        self._item_bias = _grown(self._item_bias, row + 1)
        return row

    def _draw_negative(self, user_rows: set[int]) -> int | None:
        """A uniformly drawn row the user has not interacted with (None after 10 misses)."""
        for _attempt in range(10):
            if self.catalogue:
                row = self._row(self._rng.choice(self.catalogue))
            else:
                row = self._rng.randrange(len(self.items))
            if row not in user_rows:
                return row
        return None

    def _step(self, user: str, row: int, y: float) -> None:
        item = self.items.ids[row]
        self.river_model.learn_one(user, item, y)
        self._item_factors[row] = self.river_model.i_latents[item]
        if self.flavour == "biased":
            self._item_bias[row] = self.river_model.i_biases[item]

    def scores(self, user_id: str) -> np.ndarray:
        """y_hat(u, i) for every known item, by row (item terms only for an unknown user)."""
        n = len(self.items)
        model = self.river_model
        if user_id in model.u_latents:
            scores = self._item_factors[:n] @ model.u_latents[user_id]
        else:
            scores = np.zeros(n)
        if self.flavour == "biased":
            scores = scores + self._item_bias[:n] + model.global_mean.get() + model.u_biases.get(user_id, 0.0)
        return scores

    def recommend(self, user_id: str, k: int, exclude: set[str]) -> list[str]:
        return self.items.top(self.scores(user_id), k, exclude)

    def score(self, user_id: str, item_ids: Sequence[str]) -> np.ndarray:
        return self.items.pick(self.scores(user_id), item_ids)


class ScoredOrPopular:
    """``recommend`` / ``score`` of a periodically fit model from its ``scores(user_id)`` by item
    row (-inf: never served, e.g. items newer than the fit), all-time popularity for a user it
    has no scores for. Subclasses hold ``items`` (their rows) and ``popularity``."""

    items: _ItemRows
    popularity: Popularity

    def scores(self, user_id: str) -> np.ndarray | None:
        raise NotImplementedError

    def recommend(self, user_id: str, k: int, exclude: set[str]) -> list[str]:
        scores = self.scores(user_id)
        if scores is None:
            return self.popularity.recommend(user_id, k, exclude)
        return self.items.top(scores, k, exclude)

    def score(self, user_id: str, item_ids: Sequence[str]) -> np.ndarray:
        scores = self.scores(user_id)
        if scores is None:
            return self.popularity.score(user_id, item_ids)
        rows = self.items.rows_of(item_ids)
        out = np.full(len(rows), -np.inf)  # unknown items and items newer than the fit rank last
        known = rows >= 0
        out[known] = scores[rows[known]]
        return out


class PeriodicALS(ScoredOrPopular):
    """A batch model from ``implicit`` (ALS or BPR), refit every ``retrain_every`` events on all
    events so far, served unchanged in between.

    ALS minimises sum_{u,i} c_ui (p_ui - x_u.y_i)^2 + lambda (||X||^2 + ||Y||^2) over the binary
    user-item matrix p, with confidence c_ui = alpha where p_ui = 1 and 1 elsewhere (implicit's
    convention); BPR maximises sum ln sigma(x_u.y_i - x_u.y_j). score(u, i) = x_u . y_i for items
    of the last fit; items that arrived after it are not served. x_u is the user's factor of the
    last fit, or with ``fold_in_users`` (ALS only) it is re-solved from the user's current history
    at serving time, x_u = (Y'Y + lambda I + (alpha - 1) Y_u'Y_u)^-1 alpha Y_u'1, as ALS itself
    would. Users without factors (arrived after the fit, or before any) get all-time popularity.

    >>> model = PeriodicALS(retrain_every=4, factors=4, iterations=5)
    >>> for user, item in [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y"), ("c", "x")]:
    ...     model.learn_one(Interaction(user, item, ts=0))
    >>> model.n_fits, model.recommend("c", k=1, exclude={"x"}), model.recommend("new", k=1, exclude=set())
    (1, ['y'], ['x'])
    """

    def __init__(
        self,
        algorithm: Literal["als", "bpr"] = "als",
        retrain_every: int = 10_000,
        factors: int = 64,
        iterations: int = 15,
        regularization: float = 0.05,
        alpha: float = 10.0,
        learning_rate: float = 0.01,
        fold_in_users: bool = False,
        seed: int = 0,
        name: str | None = None,
    ) -> None:
        if algorithm not in ("als", "bpr"):
            raise ValueError(f"algorithm must be 'als' or 'bpr', got {algorithm!r}")
        if fold_in_users and algorithm != "als":
            raise ValueError("fold_in_users needs algorithm='als' (a closed-form user step)")
        self.name = name or f"implicit-{algorithm}" + ("-foldin" if fold_in_users else "")
        self.algorithm = algorithm
        self.retrain_every = retrain_every
        self.fold_in_users = fold_in_users
        self.params = {
            "factors": factors,
            "iterations": iterations,
            "regularization": regularization,
            "alpha": alpha,
            "learning_rate": learning_rate,
            "seed": seed,
        }
        self.items = _ItemRows()
        self.popularity = Popularity()
        self._user_row: dict[str, int] = {}
        self._rows_of_user: dict[str, list[int]] = defaultdict(list)
        self._event_users: list[int] = []
        self._event_items: list[int] = []
        self._user_factors = np.zeros((0, factors))
        self._item_factors = np.zeros((0, factors))
        self._fold_in_base = np.zeros((factors, factors))  # Y'Y + lambda I of the last fit
        self.n_fits = 0

    def learn_one(self, event: Interaction) -> None:
        user_row = self._user_row.setdefault(event.user_id, len(self._user_row))
        item_row = self.items.add(event.item_id)
        self._event_users.append(user_row)
        self._event_items.append(item_row)
        self._rows_of_user[event.user_id].append(item_row)
        self.popularity.learn_one(event)
        if len(self._event_users) % self.retrain_every == 0:
            self.fit()

    def fit(self) -> None:
        """Refit on every event learned so far (binary user-item matrix)."""
        import scipy.sparse as sparse
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.cpu.bpr import BayesianPersonalizedRanking
        from threadpoolctl import threadpool_limits  # after implicit, so its BLAS is loaded and limited

        p = self.params
        ones = np.ones(len(self._event_users), dtype=np.float32)
        user_items = sparse.csr_matrix(
            (ones, (self._event_users, self._event_items)), shape=(len(self._user_row), len(self.items))
        )
        user_items.data[:] = 1.0  # repeats count once
        with threadpool_limits(1, "blas"):
            if self.algorithm == "als":
                model = AlternatingLeastSquares(
                    factors=p["factors"],
                    regularization=p["regularization"],
                    alpha=p["alpha"],
                    iterations=p["iterations"],
                    num_threads=1,
                    random_state=p["seed"],
                )
            else:
                model = BayesianPersonalizedRanking(
                    factors=p["factors"],
                    learning_rate=p["learning_rate"],
                    regularization=p["regularization"],
                    iterations=p["iterations"],
                    num_threads=1,
                    random_state=p["seed"],
                )
            model.fit(user_items, show_progress=False)
        self._user_factors = np.asarray(model.user_factors, dtype=np.float64)
        self._item_factors = np.asarray(model.item_factors, dtype=np.float64)
        f = self._item_factors
        self._fold_in_base = f.T @ f + p["regularization"] * np.eye(f.shape[1])
        self.n_fits += 1

    def user_factor(self, user_id: str) -> np.ndarray | None:
        """x_u: of the last fit, or folded in from the user's current history; None if neither."""
        if self.fold_in_users and self.n_fits:
            rows = [r for r in self._rows_of_user.get(user_id, ()) if r < len(self._item_factors)]
            if not rows:
                return None
            y_u = self._item_factors[np.unique(rows)]
            alpha = self.params["alpha"]
            return np.linalg.solve(self._fold_in_base + (alpha - 1.0) * (y_u.T @ y_u), alpha * y_u.sum(axis=0))
        row = self._user_row.get(user_id)
        if row is None or row >= len(self._user_factors):
            return None
        return self._user_factors[row]

    def scores(self, user_id: str) -> np.ndarray | None:
        """x_u . y_i by row (-inf for items newer than the fit); None for a user without x_u."""
        x_u = self.user_factor(user_id)
        if x_u is None:
            return None
        scores = np.full(len(self.items), -np.inf)
        scores[: len(self._item_factors)] = self._item_factors @ x_u
        return scores


class PeriodicEASE(ScoredOrPopular):
    """EASE (Steck, 2019), refit every ``retrain_every`` events, new events folded in at serving.

        B = argmin ||X - X B||^2 + lambda ||B||^2  s.t. diag(B) = 0
          =>  P = (X'X + lambda I)^-1,  B_ij = -P_ij / P_jj,  B_ii = 0

    over the ``max_items`` most frequent items of the fit. X_ui = 1 where u took i, or with
    ``half_life_days`` X_ui = 0.5^(age / half_life), the age of u's latest event on i (recency
    weighting). score(u, .) = x_u B with x_u the user's *current* row, events after the fit
    included, weighted as of the latest event: fold-in. Items outside the fit score -inf; users
    with no item of the fit get all-time popularity.

    >>> model = PeriodicEASE(retrain_every=5, regularization=0.1)
    >>> for user, item in [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y"), ("c", "x")]:
    ...     model.learn_one(Interaction(user, item, ts=0))
    >>> model.n_fits, model.recommend("c", k=1, exclude={"x"}), model.recommend("new", k=1, exclude=set())
    (1, ['y'], ['x'])
    """

    def __init__(
        self,
        retrain_every: int = 5_000,
        regularization: float = 500.0,
        half_life_days: float | None = None,
        max_items: int = 5_000,
        name: str | None = None,
    ) -> None:
        self.name = name or ("ease" if half_life_days is None else "ease-recency")
        self.retrain_every = retrain_every
        self.regularization = regularization
        self.half_life_ms = None if half_life_days is None else half_life_days * 86_400_000
        self.max_items = max_items
        self.popularity = Popularity()
        self.items = self.popularity.items  # the same rows
        self._latest: dict[str, dict[int, int]] = defaultdict(dict)  # user -> row -> ts of their latest event
        self._events = 0
        self._now = 0
        self._column = np.zeros(0, dtype=np.int64)  # item row -> column of B, -1 outside the fit
        self._fitted = np.zeros(0, dtype=np.int64)  # column -> item row
        self._b = np.zeros((0, 0), dtype=np.float32)
        self.n_fits = 0

    def learn_one(self, event: Interaction) -> None:
        self.popularity.learn_one(event)
        self._latest[event.user_id][self.items.row_of[event.item_id]] = event.ts
        self._now = max(self._now, event.ts)
        self._events += 1
        if self._events % self.retrain_every == 0:
            self.fit()

    def _weights(self, ts: np.ndarray) -> np.ndarray:
        if self.half_life_ms is None:
            return np.ones(len(ts))
        return 0.5 ** ((self._now - ts) / self.half_life_ms)

    def fit(self) -> None:
        """Refit B on every user's items so far (the most frequent ``max_items``)."""
        import scipy.sparse as sparse
        from threadpoolctl import threadpool_limits

        counts = self.popularity.scores()
        fitted = np.sort(np.argsort(-counts, kind="stable")[: self.max_items])
        column = np.full(len(counts), -1, dtype=np.int64)
        column[fitted] = np.arange(len(fitted))
        users, cols, ts = [], [], []
        for u, latest in enumerate(self._latest.values()):
            rows = np.fromiter(latest.keys(), dtype=np.int64, count=len(latest))
            keep = column[rows] >= 0
            users.append(np.full(int(keep.sum()), u))
            cols.append(column[rows[keep]])
            ts.append(np.fromiter(latest.values(), dtype=np.float64, count=len(latest))[keep])
        x = sparse.csr_matrix(
            (self._weights(np.concatenate(ts)), (np.concatenate(users), np.concatenate(cols))),
            shape=(len(self._latest), len(fitted)),
        )
        with threadpool_limits(1, "blas"):
            gram = (x.T @ x).toarray() + self.regularization * np.eye(len(fitted))
            p = np.linalg.inv(gram)
        b = -p / np.diag(p)[None, :]
        np.fill_diagonal(b, 0.0)
        self._column, self._fitted, self._b = column, fitted, b.astype(np.float32)
        self.n_fits += 1

    def scores(self, user_id: str) -> np.ndarray | None:
        """x_u B by item row (-inf outside the fit); None for a user with no item of the fit."""
        latest = self._latest.get(user_id)
        if not self.n_fits or not latest:
            return None
        rows = np.fromiter(latest.keys(), dtype=np.int64, count=len(latest))
        inside = rows < len(self._column)
        cols = self._column[rows[inside]]
        keep = cols >= 0
        if not keep.any():
            return None
        ts = np.fromiter(latest.values(), dtype=np.float64, count=len(latest))[inside][keep]
        out = np.full(len(self.items), -np.inf)
        out[self._fitted] = self._weights(ts).astype(np.float32) @ self._b[cols[keep]]
        return out
