"""A synthetic shopping workload with a known, abrupt taste shift, and a replay that serves lists.

Catalogue: ``n_categories`` random unit centroids c_k in R^dim; item j of category k has the
vector e_j = (c_k + s * g_j) / ||c_k + s * g_j|| with g_j ~ N(0, I / dim) and ``spread`` s, and
a within-category popularity p(j | k) proportional to 1 / rank_j (Zipf).

Users: user u is picked with probability proportional to 1 / (rank_u + 10) (a few heavy
shoppers). Their taste over categories is theta_u ~ Dirichlet(concentration * n_categories * b),
where the base b is a Zipf over the categories in a random order: the shop's fashion. At event
``shift_at`` every user's taste is replaced by a fresh draw around a new base (the category
order reversed: what was popular is now rare). Each event: u ~ activity, k ~ theta_u,
item ~ p(. | k), type ~ {view 0.6, click 0.25, add_to_cart 0.1, purchase 0.05}, one second apart.
A user does not come back to an item they bought: items are drawn from p(. | k) without them
(a recommender that never re-serves bought items could not hit those events).

The random numbers drawn do not depend on ``shift_at``, so a shifted and a stationary workload
of the same seed share the catalogue and every event before the shift.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import numpy as np

from model.embedding.item_index import ItemIndex, ItemInfo
from model.evaluation.online_hybrid import OnlineHybrid
from model.evaluation.protocol import Interaction
from model.scoring.topk import top_k
from model.user.state import UserState

CATEGORY_NAMES = (
    "shoes",
    "books",
    "kitchen",
    "garden",
    "toys",
    "electronics",
    "sports",
    "beauty",
    "music",
    "office",
    "pets",
    "travel",
)
EVENT_TYPES = ("view", "click", "add_to_cart", "purchase")
EVENT_TYPE_P = (0.6, 0.25, 0.1, 0.05)


@dataclass(frozen=True, eq=False)
class ShoppingWorkload:
    """Catalogue (``items`` with unit ``vectors``, row j of ``vectors`` is ``items[j]``) and a
    time-ordered event log; ``shift_at`` is the index of the first event drawn from the new
    tastes (None: stationary)."""

    items: list[ItemInfo]
    vectors: np.ndarray
    events: list[Interaction]
    shift_at: int | None

    def index(self) -> ItemIndex:
        """A fresh :class:`ItemIndex` holding the catalogue."""
        index = ItemIndex(self.vectors.shape[1], capacity=len(self.items))
        index.upsert(self.items, self.vectors)
        return index


def shopping_workload(
    n_events: int = 20_000,
    shift_at: int | None = 10_000,
    *,
    n_users: int = 300,
    n_items: int = 400,
    n_categories: int = 8,
    dim: int = 32,
    spread: float = 0.6,
    concentration: float = 0.3,
    seed: int = 0,
    start_ts: int = 1_700_000_000_000,
    interval_ms: int = 1000,
) -> ShoppingWorkload:
    """The workload of the module docstring; deterministic given ``seed``.

    >>> shifted = shopping_workload(n_events=500, shift_at=250, seed=1)
    >>> stationary = shopping_workload(n_events=500, shift_at=None, seed=1)
    >>> shifted.events[:250] == stationary.events[:250], shifted.events[250:] == stationary.events[250:]
    (True, False)
    >>> len(shifted.items), shifted.vectors.shape, shifted.events[0].type in EVENT_TYPES
    (400, (400, 32), True)
    """
    if shift_at is not None and not 0 < shift_at < n_events:
        raise ValueError(f"shift_at must lie inside the log (0 < shift_at < {n_events}), got {shift_at}")
    if n_items < n_categories or n_categories < 2:
        raise ValueError("need at least 2 categories and one item per category")
    rng = np.random.default_rng(seed)

    centroids = _unit(rng.standard_normal((n_categories, dim)))
    category_of = np.arange(n_items) % n_categories
    vectors = _unit(centroids[category_of] + spread * rng.standard_normal((n_items, dim)) / np.sqrt(dim))
    rank_in_category = np.arange(n_items) // n_categories
    item_p = 1.0 / (rank_in_category + 1.0)
    items_of = [np.flatnonzero(category_of == k) for k in range(n_categories)]

    order = rng.permutation(n_categories)
    zipf = 1.0 / (np.arange(n_categories) + 1.0)
    base_before, base_after = np.empty(n_categories), np.empty(n_categories)
    base_before[order] = zipf / zipf.sum()
    base_after[order[::-1]] = zipf / zipf.sum()
    tastes_before = rng.dirichlet(concentration * n_categories * base_before, size=n_users)
    tastes_after = rng.dirichlet(concentration * n_categories * base_after, size=n_users)

    activity = 1.0 / (np.arange(n_users) + 10.0)
    users = rng.choice(n_users, size=n_events, p=activity / activity.sum())
    u_category, u_item = rng.random(n_events), rng.random(n_events)
    types = rng.choice(len(EVENT_TYPES), size=n_events, p=EVENT_TYPE_P)

    shifted = np.zeros(n_events, dtype=bool) if shift_at is None else np.arange(n_events) >= shift_at
    tastes = np.where(shifted[:, None], tastes_after[users], tastes_before[users])
    categories = np.minimum((np.cumsum(tastes, axis=1) < u_category[:, None]).sum(axis=1), n_categories - 1)
    names = [CATEGORY_NAMES[k] if k < len(CATEGORY_NAMES) else f"category-{k}" for k in range(n_categories)]
    items = [
        ItemInfo(
            f"sku-{j}", f"{names[category_of[j]].capitalize()} item {rank_in_category[j] + 1}", names[category_of[j]]
        )
        for j in range(n_items)
    ]
    bought: list[set[int]] = [set() for _ in range(n_users)]
    events = []
    for i in range(n_events):
        rows, u = items_of[categories[i]], users[i]
        if bought[u].intersection(rows):  # draw from p(. | k) without the items u bought
            rows = np.array([r for r in rows if r not in bought[u]] or rows)
        cdf = np.cumsum(item_p[rows])
        j = int(rows[min(int(np.searchsorted(cdf, u_item[i] * cdf[-1])), len(rows) - 1)])
        if EVENT_TYPES[types[i]] == "purchase":
            bought[u].add(j)
        events.append(Interaction(f"user-{u}", items[j].item_id, start_ts + i * interval_ms, EVENT_TYPES[types[i]]))
    return ShoppingWorkload(items, vectors.astype(np.float32), events, shift_at)


@dataclass(frozen=True, eq=False)
class ServedEvent:
    """One replayed event, as a drift monitor sees it: ``hit`` says whether its item was in the
    list last served to its user (None when that user had no list yet); ``scores`` are the
    scores of the list served to the user right after learning the event, best first;
    ``item_vector`` is the vector of the event's item."""

    index: int
    hit: bool | None
    scores: np.ndarray
    item_vector: np.ndarray


def served_replay(
    workload: ShoppingWorkload, k: int = 10, model: OnlineHybrid | None = None, half_life_s: float = 3600.0
) -> Iterator[ServedEvent]:
    """Play ``workload`` as a worker would: check the event against the user's last list, learn
    it, serve the user a fresh top-``k`` list.

    Without ``model`` the lists come from the user's :class:`UserState` alone: preference vector
    (``half_life_s``), top-``k`` items by cosine, consumed items left out (the worker's
    content-only path, without reasons; scores are cosines). With an :class:`OnlineHybrid`, its
    hybrid scorer serves (slower).

    >>> w = shopping_workload(n_events=300, shift_at=None, n_users=20, seed=0)
    >>> steps = list(served_replay(w, k=5))
    >>> steps[0].hit is None, len(steps[0].scores), sum(s.hit is not None for s in steps) > 250
    (True, 5, True)
    """
    index = workload.index() if model is None else model.index
    states: dict[str, UserState] = {}
    last: dict[str, set[str]] = {}
    for i, event in enumerate(workload.events):
        served = last.get(event.user_id)
        if model is None:
            state = states.setdefault(event.user_id, UserState.new(index.dim, half_life_s))
            # the workload's events are on items of its catalogue, all in the index (also below)
            vector = cast(np.ndarray, index.vector_of(event.item_id))
            state.learn(f"#{i}", event.item_id, event.type, event.value, event.ts, vector)
            ids, scores = _top_by_cosine(index, state, k)
        else:
            model.learn_one(event)
            [scored] = model.scorer.recommend([model.states[event.user_id]], k)
            ids, scores = [s.item_id for s in scored], np.array([s.score for s in scored], dtype=np.float32)
        last[event.user_id] = set(ids)
        yield ServedEvent(
            i,
            None if served is None else event.item_id in served,
            scores,
            cast(np.ndarray, index.vector_of(event.item_id)),
        )


def _top_by_cosine(index: ItemIndex, state: UserState, k: int) -> tuple[list[str], np.ndarray]:
    scores = index.vectors @ state.preference.direction()
    excluded = ~index.available
    excluded[cast(list[int], [index.row_of(i) for i in state.consumed])] = True  # consumed items are indexed
    rows = top_k(scores, k, excluded)
    return [index.infos[r].item_id for r in rows], scores[rows]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)
