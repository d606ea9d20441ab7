"""Unit tests of the ranking metrics, the prequential harness and the baselines (tiny synthetic logs)."""

from __future__ import annotations

import importlib.util
import math
import random
from collections.abc import Sequence

import numpy as np
import pytest

from model.evaluation.baselines import (
    FrequentPurchases,
    ItemKNN,
    PeriodicALS,
    PeriodicEASE,
    Popularity,
    RecentPopularity,
    RiverMF,
)
from model.evaluation.metrics import (
    auc,
    catalogue_coverage,
    hr_at_k,
    intra_list_diversity,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
)
from model.evaluation.prequential import prequential
from model.evaluation.protocol import Interaction, Recommender
from model.evaluation.sasrec import PeriodicSASRec

DAY_MS = 86_400_000
needs_implicit = pytest.mark.skipif(importlib.util.find_spec("implicit") is None, reason="implicit not installed")


def log_of(pairs: Sequence[tuple[str, str]], step_ms: int = 1000) -> list[Interaction]:
    return [Interaction(user, item, ts=n * step_ms) for n, (user, item) in enumerate(pairs)]


def two_taste_log(n_users: int = 12, passes: int = 1, seed: int = 0) -> list[Interaction]:
    """Users u* pick items a0..a5, users v* pick b0..b5 (each user 4 of the 6), interleaved."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(passes):
        for n in range(n_users):
            for group, items in (("u", "a"), ("v", "b")):
                for item in rng.sample(range(6), 4):
                    pairs.append((f"{group}{n}", f"{items}{item}"))
    return log_of(pairs)


# --- metrics --------------------------------------------------------------------------------------


def test_list_metrics_on_a_hand_computed_list():
    ranked = ["a", "b", "c", "d"]
    assert hr_at_k(ranked, {"c"}, 3) == 1.0 and hr_at_k(ranked, {"d"}, 3) == 0.0
    assert ndcg_at_k(ranked, {"a"}, 4) == 1.0
    assert ndcg_at_k(ranked, {"c"}, 4) == pytest.approx(1 / math.log2(4))
    assert ndcg_at_k(ranked, {"a", "b"}, 4) == pytest.approx(1.0)
    assert ndcg_at_k(ranked, {"b", "z"}, 4) == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert recall_at_k(ranked, {"a", "d", "z", "y"}, 2) == 0.25
    assert precision_at_k(ranked, {"a", "d"}, 4) == 0.5
    assert precision_at_k(["a"], {"a"}, 10) == 0.1  # a short list still has K slots
    assert reciprocal_rank(ranked, {"b", "d"}) == 0.5 and reciprocal_rank(ranked, {"z"}) == 0.0


def test_auc_counts_wins_and_half_ties():
    assert auc(1.0, [0.0, 0.5]) == 1.0
    assert auc(0.0, [0.5, 1.0]) == 0.0
    assert auc(0.5, [0.5, 0.5]) == 0.5
    assert auc([0.9, 0.2], np.array([0.1, 0.5])) == 0.75
    assert math.isnan(auc(0.5, []))


def test_coverage_and_intra_list_diversity():
    assert catalogue_coverage([["a", "b"], ["a"]], 4) == 0.5
    assert catalogue_coverage([], 0) == 0.0
    vectors = {"a": np.array([1.0, 0.0]), "b": np.array([1.0, 0.0]), "c": np.array([0.0, 2.0])}
    assert intra_list_diversity(["a", "b"], vectors) == pytest.approx(0.0)
    assert intra_list_diversity(["a", "c"], vectors) == pytest.approx(1.0)
    assert intra_list_diversity(["a", "unknown"], vectors) is None
    assert intra_list_diversity(["a", "c"], None) is None


# --- the harness ----------------------------------------------------------------------------------


class LastLearnedItem:
    """Cheats if it can: recommends the item of the last event it learned (shared between instances)."""

    def __init__(self, name: str, shared: list[str] | None = None, learns: bool = True) -> None:
        self.name, self.learns = name, learns
        self.shared = shared if shared is not None else []

    def learn_one(self, event: Interaction) -> None:
        if self.learns:
            self.shared.append(event.item_id)

    def recommend(self, user_id: str, k: int, exclude: set[str]) -> list[str]:
        return [i for i in reversed(self.shared[-1:]) if i not in exclude][:k]

    def score(self, user_id: str, item_ids: Sequence[str]) -> np.ndarray:
        last = self.shared[-1] if self.shared else None
        return np.array([1.0 if i == last else 0.0 for i in item_ids])


def distinct_item_log(n: int = 60) -> list[Interaction]:
    """Every event names a new item, users take turns, so each one has prior history soon."""
    return log_of([(f"user{n_ % 3}", f"item{n_}") for n_ in range(n)])


def test_a_model_never_sees_the_event_it_is_scored_on():
    log = distinct_item_log()
    cheat = LastLearnedItem("cheat")
    result = prequential(log, [cheat], k=10)
    assert result.n_scored == len(log) - 3
    assert result.metrics["cheat"]["hr"] == 0.0
    # the same model, asked after learning, would have been perfect on every scored event
    after = LastLearnedItem("after")
    hits = []
    for event in log:
        after.learn_one(event)
        hits.append(event.item_id in after.recommend(event.user_id, 10, set()))
    assert all(hits)


def test_every_model_is_scored_before_any_model_learns():
    shared: list[str] = []
    learner = LastLearnedItem("learner", shared)
    peeker = LastLearnedItem("peeker", shared, learns=False)  # reads what the first model learned
    result = prequential(distinct_item_log(), [learner, peeker], k=10)
    assert result.metrics["peeker"]["hr"] == 0.0
    assert result.metrics["peeker"]["auc"] < 0.5  # the answer never outscores a negative


class Recorder:
    """Logs the order of calls and what it was asked to exclude."""

    name = "recorder"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, frozenset[str] | int]] = []
        self.n_learned = 0

    def learn_one(self, event: Interaction) -> None:
        self.calls.append(("learn", event.user_id, self.n_learned))
        self.n_learned += 1

    def recommend(self, user_id: str, k: int, exclude: set[str]) -> list[str]:
        self.calls.append(("recommend", user_id, frozenset(exclude)))
        return []

    def score(self, user_id: str, item_ids: Sequence[str]) -> np.ndarray:
        return np.zeros(len(item_ids))


def test_scoring_schedule_exclusions_and_order():
    pairs = [("a", "x"), ("a", "y"), ("b", "x"), ("a", "z"), ("b", "y"), ("c", "z"), ("b", "z"), ("a", "w")]
    recorder = Recorder()
    result = prequential(log_of(pairs), [recorder], k=5, eval_every=2)
    # even indices 0, 2, 4, 6 are candidates; 0 (a) and 2 (b) have no prior history
    assert result.n_scored == 2 and result.n_events == 8
    asked = [(c[1], c[2]) for c in recorder.calls if c[0] == "recommend"]
    assert asked == [("b", frozenset({"x"})), ("b", frozenset({"x", "y"}))]
    # each scored event is served right before it is learned
    order = [c[0] for c in recorder.calls]
    assert order[4:6] == ["recommend", "learn"] and order[7:9] == ["recommend", "learn"]
    assert order.count("learn") == 8
    assert result.timings["recorder"].n_learned == 8 and result.timings["recorder"].n_recommended == 2


def test_repeat_interactions_are_learned_but_not_scored():
    log = log_of([("a", "x"), ("a", "x"), ("a", "y")])
    result = prequential(log, [Popularity()], k=5)
    assert result.n_scored == 1 and result.n_skipped_repeats == 1


def test_windows_cold_start_and_timings():
    log = log_of([(f"user{n % 3}", f"item{n}") for n in range(60)] + [("user0", "item10"), ("user1", "late")])
    model = Popularity()
    result = prequential(log, [model], k=3, windows=4, new_item_after=30, cold_max_prior=5)
    assert len(result.windows) == 4
    assert sum(w.n_scored for w in result.windows) == result.n_scored
    assert result.windows[0].first_ts <= result.windows[-1].last_ts
    overall = result.metrics["popularity"]["hr"]
    weighted = sum(w.metrics["popularity"]["hr"] * w.n_scored for w in result.windows) / result.n_scored
    assert weighted == pytest.approx(overall)
    # items 30..59 are new (first seen after event 30) and every scored one of them has 0 prior
    # events; item10 is old; "late" is new and unseen
    cold = result.cold_start
    assert cold.n_scored == 31 and cold.n_unseen == 31 and cold.hr["popularity"] == 0.0
    timing = result.timings["popularity"]
    assert timing.n_learned == len(log) and timing.total_s > 0 and timing.events_per_s > 0


def test_sampled_auc_and_diversity_and_names():
    log = two_taste_log()
    vectors = {f"{g}{i}": np.eye(2)[int(g == "b")] for g in "ab" for i in range(6)}
    result = prequential(log, [ItemKNN(), Popularity()], k=3, auc_negatives=3, item_vectors=vectors)
    assert 0.0 <= result.metrics["popularity"]["auc"] <= 1.0
    assert result.metrics["item-knn"]["auc"] > result.metrics["popularity"]["auc"]
    assert result.metrics["item-knn"]["diversity"] < result.metrics["popularity"]["diversity"]
    assert "| item-knn |" in result.as_markdown() and "| 1 |" in result.windows_markdown()
    # every model but the first is compared with it on the same events
    assert list(result.paired) == ["popularity"]
    for metric in ("hr", "ndcg"):
        diff = result.paired["popularity"][metric]
        m = result.metrics
        assert diff.reference == "item-knn" and diff.n == result.n_scored
        assert diff.mean == pytest.approx(m["popularity"][metric] - m["item-knn"][metric])
        assert diff.standard_error > 0
    assert "| popularity |" in result.paired_markdown()
    with pytest.raises(ValueError):
        prequential(log, [Popularity(), Popularity()])


# --- baselines ------------------------------------------------------------------------------------

ALL_BASELINES = [
    Popularity,
    FrequentPurchases,
    RecentPopularity,
    ItemKNN,
    RiverMF,
    lambda: PeriodicEASE(retrain_every=50, regularization=1.0),
    lambda: PeriodicSASRec(retrain_every=50, dim=8, epochs=3),
    pytest.param(PeriodicALS, marks=needs_implicit),
]


@pytest.mark.parametrize("make", ALL_BASELINES)
def test_baselines_speak_the_protocol_and_never_serve_excluded_items(make):
    model = make()
    assert isinstance(model, Recommender)
    for event in two_taste_log():
        model.learn_one(event)
    ranked = model.recommend("u0", k=5, exclude={"a0", "a1", "b0"})
    assert len(ranked) == 5 and len(set(ranked)) == 5 and not {"a0", "a1", "b0"} & set(ranked)
    assert model.score("u0", ["a2", "never-seen"]).shape == (2,)


def test_popularity_counts_every_event():
    model = Popularity()
    for event in log_of([("a", "x"), ("b", "y"), ("c", "y"), ("a", "z"), ("b", "z"), ("c", "z")]):
        model.learn_one(event)
    assert model.recommend("d", 3, set()) == ["z", "y", "x"]
    assert model.score("d", ["x", "z", "nope"]).tolist() == [1.0, 3.0, 0.0]


def test_recent_popularity_halves_per_half_life():
    model = RecentPopularity(half_life_days=7)
    for item, ts in [("old", 0)] * 4 + [("new", 14 * DAY_MS)] * 2:
        model.learn_one(Interaction("u", item, ts))
    assert model.score("v", ["old", "new"]).tolist() == pytest.approx([1.0, 2.0])
    assert model.recommend("v", 2, set()) == ["new", "old"]
    for day in range(400):  # a long stream: the reference time moves, scores stay finite
        model.learn_one(Interaction("u", "daily", (20 + day) * DAY_MS))
    assert np.isfinite(model.scores()).all()
    assert model.score("v", ["daily"])[0] == pytest.approx(1 / (1 - 2 ** (-1 / 7)), rel=1e-6)


def test_item_knn_incremental_cosine_equals_batch_cosine():
    rng = random.Random(3)
    pairs = [(f"u{rng.randrange(15)}", f"i{rng.randrange(25)}") for _ in range(300)]
    model = ItemKNN(n_recent=20)
    for event in log_of(pairs):
        model.learn_one(event)
    users = sorted({u for u, _ in pairs})
    items = sorted({i for _, i in pairs})
    binary = np.zeros((len(users), len(items)))
    for u, i in pairs:
        binary[users.index(u), items.index(i)] = 1.0
    norms = np.sqrt(binary.sum(axis=0))
    cosine = (binary.T @ binary) / np.outer(norms, norms)
    np.fill_diagonal(cosine, 0.0)
    user = "u4"
    recent = list(dict.fromkeys(i for u, i in pairs if u == user))[-20:]
    expected = cosine[[items.index(i) for i in recent]].sum(axis=0)
    np.testing.assert_allclose(model.score(user, items), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("flavour", ["funk", "biased"])
def test_river_mf_learns_the_two_tastes(flavour):
    model = RiverMF(flavour, n_factors=8, learning_rate=0.05, seed=1)
    for event in two_taste_log(passes=25):
        model.learn_one(event)
    seen = {e.item_id for e in two_taste_log() if e.user_id == "u1"}
    assert all(i.startswith("a") for i in model.recommend("u1", 2, seen))
    assert model.score("u1", ["a0"])[0] > model.score("u1", ["b0"])[0]


def test_river_mf_draws_negatives_from_a_given_catalogue():
    model = RiverMF("funk", n_factors=4, catalogue=["x", "y", "z", "w"], seed=0)
    model.learn_one(Interaction("a", "x", 0))
    assert set(model.items.ids) > {"x"}  # negatives came from the catalogue and became servable


@needs_implicit
def test_periodic_als_refits_on_schedule_and_falls_back_to_popularity():
    log = two_taste_log()
    model = PeriodicALS("als", retrain_every=40, factors=8, iterations=10)
    for event in log[:40]:
        model.learn_one(event)
    assert model.n_fits == 1
    fitted_items = set(model.items.ids)
    ranked = model.recommend("u0", 3, {e.item_id for e in log[:40] if e.user_id == "u0"})
    assert set(ranked) <= fitted_items
    for event in log[40:79]:
        model.learn_one(event)
    assert model.n_fits == 1  # served unchanged between fits
    late_user = next(e.user_id for e in log[40:79] if e.user_id not in {x.user_id for x in log[:40]})
    assert model.recommend(late_user, 3, set()) == model.popularity.recommend(late_user, 3, set())
    model.learn_one(log[79])
    assert model.n_fits == 2


@needs_implicit
def test_periodic_als_fold_in_matches_the_fitted_user_factor():
    log = two_taste_log(passes=1)
    model = PeriodicALS("als", retrain_every=len(log), factors=8, iterations=30, fold_in_users=True)
    for event in log:
        model.learn_one(event)
    folded = model.user_factor("u3")
    model.fold_in_users = False
    fitted = model.user_factor("u3")
    cosine = folded @ fitted / np.linalg.norm(folded) / np.linalg.norm(fitted)
    assert cosine > 0.99
    with pytest.raises(ValueError):
        PeriodicALS("bpr", fold_in_users=True)


@needs_implicit
def test_periodic_bpr_fits():
    model = PeriodicALS("bpr", retrain_every=50, factors=8, iterations=20, learning_rate=0.05)
    for event in two_taste_log():
        model.learn_one(event)
    assert model.n_fits == 1 and len(model.recommend("u0", 3, set())) == 3


def test_frequent_purchases_serves_the_user_s_own_staples_first_most_frequent_first():
    model = FrequentPurchases()
    for n, (user, item) in enumerate([("a", "milk"), ("a", "tea"), ("a", "milk"), ("b", "beer"), ("b", "beer")] * 2):
        model.learn_one(Interaction(user, item, ts=n))
    assert model.recommend("a", k=3, exclude=set()) == ["milk", "tea", "beer"]
    assert model.recommend("a", k=1, exclude={"milk"}) == ["tea"]
    assert model.recommend("new", k=2, exclude=set()) == ["milk", "beer"]  # no history: the most popular


def test_ease_equals_the_closed_form_and_folds_new_events_in_at_serving():
    rng = random.Random(5)
    pairs = [(f"u{rng.randrange(12)}", f"i{rng.randrange(15)}") for _ in range(150)]
    model = PeriodicEASE(retrain_every=len(pairs), regularization=2.0)
    for event in log_of(pairs):
        model.learn_one(event)
    assert model.n_fits == 1
    users, items = sorted({u for u, _ in pairs}), model.items.ids
    x = np.zeros((len(users), len(items)))
    for u, i in pairs:
        x[users.index(u), items.index(i)] = 1.0
    p = np.linalg.inv(x.T @ x + 2.0 * np.eye(len(items)))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    np.testing.assert_allclose(model.score("u3", items), x[users.index("u3")] @ b, rtol=1e-4, atol=1e-5)
    # an event after the fit changes the user's list at once, through the same B
    before = model.score("u3", items)
    newcomer = next(i for i in items if x[users.index("u3"), items.index(i)] == 0)
    model.learn_one(Interaction("u3", newcomer, ts=10**6))
    assert model.n_fits == 1
    np.testing.assert_allclose(model.score("u3", items) - before, b[items.index(newcomer)], rtol=1e-4, atol=1e-5)


def test_ease_with_recency_weighting_follows_the_user_s_latest_taste():
    # two tastes learned from other users; u changed from taste a to taste b a year ago
    pairs = [(f"a{n}", f"a-item{j}") for n in range(10) for j in range(3)]
    pairs += [(f"b{n}", f"b-item{j}") for n in range(10) for j in range(3)]
    log = log_of(pairs)
    log += [Interaction("u", "a-item0", ts=0), Interaction("u", "a-item1", ts=0)]
    log += [Interaction("u", "b-item0", ts=400 * DAY_MS)]
    plain = PeriodicEASE(retrain_every=len(log), regularization=1.0)
    recent = PeriodicEASE(retrain_every=len(log), regularization=1.0, half_life_days=30)
    for event in log:
        plain.learn_one(event)
        recent.learn_one(event)
    seen = {"a-item0", "a-item1", "b-item0"}
    assert plain.recommend("u", 1, seen) == ["a-item2"]  # two old items outvote one new
    assert recent.recommend("u", 1, seen)[0] in {"b-item1", "b-item2"}


def test_ease_fits_only_the_most_frequent_items():
    model = PeriodicEASE(retrain_every=6, regularization=1.0, max_items=2)
    for event in log_of([("a", "x"), ("b", "x"), ("a", "y"), ("b", "y"), ("c", "z"), ("c", "x")]):
        model.learn_one(event)
    assert sorted(model.items.ids[r] for r in model._fitted) == ["x", "y"]
    assert model.score("c", ["z"])[0] == -np.inf  # outside the fit: never served


def test_sasrec_learns_what_comes_next_and_serves_from_the_current_sequence():
    # every user walks a0 -> a1 -> ... -> a5 (shifted start): the next item is the one after the last
    log = [Interaction(f"u{u}", f"a{(u + n) % 6}", ts=u * 100 + n) for u in range(40) for n in range(6)]
    model = PeriodicSASRec(retrain_every=len(log), dim=16, max_len=8, epochs=60, learning_rate=0.01, seed=1)
    for event in log:
        model.learn_one(event)
    assert model.n_fits == 1
    model.learn_one(Interaction("late", "a2", ts=10**6))  # after the fit: served from its sequence
    assert model.n_fits == 1 and model.recommend("late", 1, {"a2"}) == ["a3"]
    model.learn_one(Interaction("late", "a3", ts=10**6 + 1))
    assert model.recommend("late", 1, {"a2", "a3"}) == ["a4"]
    model.learn_one(Interaction("late", "brand-new", ts=10**6 + 2))
    assert model.score("late", ["brand-new"])[0] == -np.inf  # newer than the fit
    weights = model._net.items.weight.detach().clone()
    model.fit()  # warm start: training goes on from the last weights
    assert model.n_fits == 2 and model._net.items.weight.shape[0] >= weights.shape[0]
