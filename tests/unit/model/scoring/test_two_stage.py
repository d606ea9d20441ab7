"""Catalogue scale: sparse CF, the two-stage hybrid and the vector search that follows the catalogue."""

from __future__ import annotations

from collections import deque
from dataclasses import replace

import numpy as np
import pytest

from model.embedding.item_index import ItemIndex, ItemInfo
from model.scoring.cooccurrence import ItemCooccurrence
from model.scoring.hybrid import CandidateSizes, HybridScorer, HybridWeights
from model.scoring.snapshot import GlobalSnapshot
from model.scoring.trending import TrendingPopularity, category_codes
from model.user.state import UserState

N_ITEMS, DIM = 300, 16


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def log() -> list[tuple[str, int]]:
    rng = np.random.default_rng(3)
    return [(f"u{rng.integers(40)}", int(min(rng.zipf(1.3), N_ITEMS) - 1)) for _ in range(4_000)]


def dense_similarity(log: list[tuple[str, int]], window: int) -> np.ndarray:
    """sim(i, j) = C_ij / sqrt(n_i n_j) with C and n counted the plain way (n x n)."""
    c, n = np.zeros((N_ITEMS, N_ITEMS)), np.zeros(N_ITEMS)
    recent: dict[str, deque] = {}
    for user, item in log:
        last = recent.setdefault(user, deque(maxlen=window))
        for j in last:
            if j != item:
                c[item, j] += 1
                c[j, item] += 1
        n[item] += 1
        if item in last:
            last.remove(item)
        last.append(item)
    norms = np.sqrt(np.maximum(n, 1e-12))
    return c / norms[:, None] / norms[None, :]


def test_sparse_cf_equals_the_dense_formula_and_its_snapshot_ships_top_neighbours(log):
    cf = ItemCooccurrence(window=5)
    for user, item in log:
        cf.learn_one(user, item, ts=0)
    sim = dense_similarity(log, window=5)
    history = [4, 0, 17, 2]
    recency = 0.9 ** np.arange(4)
    expected = recency @ sim[list(reversed(history))]  # most recent first
    np.testing.assert_allclose(cf.scores(history, N_ITEMS), expected, rtol=1e-5, atol=1e-6)
    assert cf.n_pairs < N_ITEMS**2 / 4  # only pairs that co-occurred are stored

    full = cf.neighbours(N_ITEMS, top_n=N_ITEMS, min_count=0)
    np.testing.assert_allclose(full.scores(history, N_ITEMS), expected, rtol=1e-5, atol=1e-6)
    top = cf.neighbours(N_ITEMS, top_n=5, min_count=0)
    assert max(np.diff(top.indptr)) == 5
    rows, sims = top.neighbours_of(0)
    assert set(rows.tolist()) == set(np.argsort(-sim[0])[:5].tolist())  # the five most similar
    assert list(sims) == sorted(sims, reverse=True)

    snapshot = GlobalSnapshot.capture([f"i{r}" for r in range(N_ITEMS)], cf, TrendingPopularity(), min_count=0, top_n=5)
    shipped, _ = GlobalSnapshot.from_bytes(snapshot.to_bytes()).for_items([f"i{r}" for r in range(N_ITEMS)])
    np.testing.assert_allclose(shipped.scores(history, N_ITEMS), top.scores(history, N_ITEMS))


def test_pruning_bounds_the_pairs_kept_per_item(log):
    cf = ItemCooccurrence(window=20, max_pairs=10)
    for user, item in log:
        cf.learn_one(user, item, ts=0)
    assert max(len(cf.neighbours_of(r)[0]) for r in range(N_ITEMS)) <= 2 * 10


@pytest.fixture(scope="module")
def world(log):
    rng = np.random.default_rng(5)
    index = ItemIndex(DIM, exact_below=10**9)
    index.upsert(
        [ItemInfo(f"i{r}", f"item {r}", f"c{r % 7}") for r in range(N_ITEMS)], unit(rng.standard_normal((N_ITEMS, DIM)))
    )
    cf, trending = ItemCooccurrence(), TrendingPopularity(top=100)
    trending.set_categories(category_codes([info.category for info in index.infos]))
    for t, (user, item) in enumerate(log):
        cf.learn_one(user, item, ts=t * 1000)
        trending.learn_one(item, ts=t * 1000)
    users = []
    for u in range(12):
        state = UserState.new(DIM)
        for t, r in enumerate(rng.choice(N_ITEMS, size=6, replace=False)):
            state.learn(f"u{u}e{t}", f"i{r}", "purchase" if t % 2 else "view", None, t, index.vector_of(f"i{r}"))
        users.append(state)
    return index, cf, trending, users


@pytest.mark.parametrize(
    "weights",
    [
        HybridWeights(1.0, 0.0, 0.0),
        HybridWeights(0.0, 1.0, 0.0),
        HybridWeights(0.0, 0.0, 1.0),
        HybridWeights(),
        HybridWeights(category_trending=0.5),
    ],
)
def test_the_candidates_hold_what_each_term_ranks_top(world, weights):
    index, cf, trending, users = world
    sizes = CandidateSizes(content=20, cf=20, trending=20)
    two_stage = HybridScorer(index, cf, trending, weights, sizes=sizes)
    exact = HybridScorer(index, cf, trending, weights, sizes=replace(sizes, exact=True))
    for state in users:
        got, want = two_stage.recommend([state], k=10)[0], exact.recommend([state], k=10)[0]
        if weights.content and weights.cf:  # the sum of terms: its best items are among each term's best
            assert got[0].item_id == want[0].item_id
        else:  # one term alone: the candidates hold its whole top 10
            assert [s.item_id for s in got] == [s.item_id for s in want]
        total, _ = exact.score_all([state])
        for s in got:  # the candidate stage changes which items are ranked, never their scores
            assert s.score == pytest.approx(float(total[0, index.row_of(s.item_id)]), rel=1e-4, abs=1e-5)


def test_a_deleted_item_is_never_served(world):
    index, cf, trending, users = world
    scorer = HybridScorer(index, cf, trending, HybridWeights(), sizes=CandidateSizes(content=20, cf=20, trending=20))
    state = users[0]
    served = [s.item_id for s in scorer.recommend([state], k=10)[0]]
    best_trending = f"i{trending.top_rows()[0]}"
    for item_id in (served[0], best_trending):
        index.remove(item_id)
    try:
        for s in users:
            again = [x.item_id for x in scorer.recommend([s], k=10)[0]]
            assert served[0] not in again and best_trending not in again and len(again) == 10
    finally:
        for item_id in (served[0], best_trending):
            index.upsert([index.infos[index.row_of(item_id)]], index.vector_of(item_id)[None, :])


def test_the_vector_search_follows_upserts_changes_and_removals():
    rng = np.random.default_rng(9)
    index = ItemIndex(DIM, exact_below=200)  # a graph from 200 items on
    vectors = unit(rng.standard_normal((500, DIM)))
    index.upsert([ItemInfo(f"i{r}", "") for r in range(400)], vectors[:400])
    assert index.search.approximate
    none = [np.zeros(0, dtype=np.int64)]

    def nearest(v: np.ndarray, c: int = 5) -> list[str]:
        return [index.infos[r].item_id for r in index.nearest(v[None, :], c, none)[0]]

    new = vectors[450]
    index.upsert([ItemInfo("fresh", "")], new[None, :])  # added after the graph was built
    assert "fresh" in nearest(new)
    index.upsert([ItemInfo("i7", "")], -new[None, :])  # changed: its old vector must not be found
    old = vectors[7]
    assert "i7" not in nearest(old, c=3) and "i7" in nearest(-new)
    index.remove("fresh")
    assert "fresh" not in nearest(new)
    for _ in range(3):  # enough changes for a rebuild of the graph: still right
        index.upsert([ItemInfo(f"i{r}", "") for r in range(100)], unit(rng.standard_normal((100, DIM))))
    assert "i7" in nearest(index.vector_of("i7"), c=1)
    exact = np.argsort(-(index.vectors[index.available] @ new))[:5]
    assert len(set(nearest(new, 5)) & {index.infos[np.flatnonzero(index.available)[r]].item_id for r in exact}) >= 4


def test_trending_keeps_its_top_and_moments_exactly_as_counts_grow_and_decay():
    rng = np.random.default_rng(11)
    trend = TrendingPopularity(half_life_s=3600, top=10)
    for t in range(5_000):
        trend.learn_one(int(min(rng.zipf(1.2), 2_000) - 1), ts=t * 60_000)  # 3.5 days: many rebases
    counts = trend.scores(2_000)
    expected = np.lexsort((np.arange(2_000), -counts))[:10]
    assert trend.top_rows().tolist() == expected.tolist()
    total, squares = trend.moments(2_000, left_out=np.array([expected[0]]))
    rest = np.delete(counts, expected[0])
    assert total == pytest.approx(rest.sum(), rel=1e-6) and squares == pytest.approx((rest**2).sum(), rel=1e-6)


def test_trending_within_each_category_keeps_its_top_and_moments_exactly():
    rng = np.random.default_rng(12)
    codes = rng.integers(-1, 5, size=2_000)  # -1: no category
    trend = TrendingPopularity(half_life_s=3600, top=10, category_top=8)
    trend.set_categories(codes)
    for t in range(5_000):
        trend.learn_one(int(min(rng.zipf(1.2), 2_000) - 1), ts=t * 60_000)  # many rebases
    counts = trend.scores(2_000)
    gone = np.flatnonzero(codes == 2)[:3]
    moments = trend.category_moments(np.arange(5), left_out=gone)
    for code in range(5):
        rows = np.flatnonzero((codes == code) & (counts > 0))
        expected = rows[np.lexsort((rows, -counts[rows]))][:8]
        assert trend.top_in(code).tolist() == expected.tolist()
        kept = counts[(codes == code) & ~np.isin(np.arange(2_000), gone)]
        assert moments[code] == pytest.approx([kept.sum(), (kept**2).sum()], rel=1e-6)
    # the same from shipped counts (a worker's snapshot)
    shipped = TrendingPopularity.from_counts(counts, categories=codes)
    assert shipped.top_in(3).tolist()[:5] == trend.top_in(3).tolist()[:5]


def test_a_first_click_in_a_category_brings_that_category_s_trending_items():
    rng = np.random.default_rng(4)
    infos = [ItemInfo(f"shoe{r}", f"Shoe {r}", "shoes") for r in range(30)]
    infos += [ItemInfo(f"pan{r}", f"Pan {r}", "kitchen") for r in range(30)]
    index = ItemIndex(DIM, exact_below=10**9)
    index.upsert(infos, unit(rng.standard_normal((60, DIM))))
    trending = TrendingPopularity(top=100)
    trending.set_categories(category_codes([i.category for i in infos]))
    for t in range(600):  # shoes sell far more; among pans, pan1..pan5 trend
        trending.learn_one(int(rng.integers(30)), ts=t)
        if t % 10 == 0:
            trending.learn_one(30 + 1 + (t // 10) % 5, ts=t)
    state = UserState.new(DIM)
    state.learn("e1", "pan20", "click", None, 700, index.vector_of("pan20"))
    weights = HybridWeights(content=0.0, cf=0.0, trending=0.2, repurchase=0.0, category_trending=1.0)
    [served] = HybridScorer(index, None, trending, weights).recommend([state], k=5)
    assert {s.item_id for s in served} == {f"pan{r}" for r in range(1, 6)}
    assert all(s.reasons[0] == "trending in kitchen" for s in served)
    [overall] = HybridScorer(index, None, trending, replace(weights, category_trending=0.0)).recommend([state], k=5)
    assert all(s.item_id.startswith("shoe") and s.reasons == ("trending now",) for s in overall)


@pytest.mark.parametrize("exact_below", [10**9, 200])
def test_the_vector_search_skips_each_user_s_excluded_rows_and_still_finds_c(exact_below):
    rng = np.random.default_rng(13)
    index = ItemIndex(DIM, exact_below=exact_below)
    vectors = unit(rng.standard_normal((400, DIM)))
    index.upsert([ItemInfo(f"i{r}", "") for r in range(400)], vectors)
    assert index.search.approximate == (exact_below == 200)
    users = unit(rng.standard_normal((2, DIM)))
    ranked = [np.argsort(-(vectors @ u)) for u in users]
    excluded = [np.sort(ranked[0][:30]), np.zeros(0, dtype=np.int64)]  # user 0 just saw their 30 nearest
    found = index.nearest(users, 10, excluded)
    assert len(found[0]) == 10 and not set(found[0].tolist()) & set(excluded[0].tolist())
    assert len(set(found[0].tolist()) & set(ranked[0][30:40].tolist())) >= 8  # the next ten, near enough
    assert len(set(found[1].tolist()) & set(ranked[1][:10].tolist())) >= 8
