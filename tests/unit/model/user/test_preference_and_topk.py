"""Unit tests of model/: preference vectors, top-K, item index, user state."""

import numpy as np
import pytest

from model.embedding.item_index import ItemIndex, ItemInfo
from model.scoring.hybrid import HybridScorer, HybridWeights
from model.scoring.topk import top_k
from model.user.preference import PreferenceVector, decay_factor, event_weight
from model.user.state import UserState


def unit(*xs):
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_recent_events_outweigh_old_ones_by_half_life():
    pv = PreferenceVector(dim=2, half_life_s=3600)
    pv.learn_one(unit(1, 0), weight=1.0, ts=0)
    pv.learn_one(unit(0, 1), weight=1.0, ts=2 * 3600 * 1000)  # two half-lives later
    np.testing.assert_allclose(pv.vector, [0.25, 1.0], rtol=1e-6)
    assert pv.direction()[1] > pv.direction()[0]
    assert np.isclose(np.linalg.norm(pv.direction()), 1.0)


def test_negative_events_push_the_user_away():
    pv = PreferenceVector(dim=2)
    pv.learn_one(unit(1, 1), weight=event_weight("click"), ts=0)
    pv.learn_one(unit(1, 0), weight=event_weight("dislike"), ts=0)
    assert pv.direction() @ unit(1, 0) < 0 < pv.direction() @ unit(0, 1)
    assert event_weight("remove_from_cart") < 0


def test_late_events_are_not_amplified():
    assert decay_factor(-5_000, 60) == 1.0
    pv = PreferenceVector(dim=2, half_life_s=60)
    pv.learn_one(unit(1, 0), 1.0, ts=120_000)
    pv.learn_one(unit(0, 1), 1.0, ts=0)  # arrives late: no growth of the older mass
    np.testing.assert_allclose(pv.vector, [1.0, 1.0])
    assert pv.last_ts == 120_000


def test_rating_weight_follows_the_stars():
    assert event_weight("rating", 5) > event_weight("rating", 4) > 0 > event_weight("rating", 2)


def test_top_k_orders_by_score_and_skips_excluded():
    scores = np.array([0.2, 0.9, 0.5, 0.9, -1.0])
    assert top_k(scores, 3).tolist() == [1, 3, 2]  # ties: lower index first
    excluded = np.array([False, True, False, False, False])
    assert top_k(scores, 10, excluded).tolist() == [3, 2, 0, 4]
    assert top_k(scores, 0).tolist() == []


def test_item_index_grows_updates_and_masks_removed_items():
    index = ItemIndex(dim=2, capacity=1)
    index.upsert([ItemInfo("a", "A"), ItemInfo("b", "B")], np.stack([unit(1, 0), unit(0, 1)]))
    index.upsert([ItemInfo("a", "A2")], np.stack([unit(1, 1)]))
    index.remove("b")
    assert len(index) == 2 and index.infos[0].title == "A2"
    np.testing.assert_allclose(index.vector_of("a"), unit(1, 1))
    assert index.available.tolist() == [True, False] and index.n_available == 1


def test_user_state_dedupes_and_round_trips_through_bytes():
    state = UserState.new(dim=2, half_life_s=60)
    assert state.learn("e1", "a", "purchase", None, 1_000, unit(1, 0))
    assert not state.learn("e1", "a", "purchase", None, 1_000, unit(1, 0))  # replay: no effect
    assert state.learn("e2", "b", "click", None, 2_000, unit(0, 1))
    state.last_recommended = ["c"]
    state.park({"event_id": "e3", "item_id": "zz", "user_id": "u", "type": "view", "ts": 3})
    copy = UserState.from_bytes(state.to_bytes())
    np.testing.assert_array_equal(copy.preference.vector, state.preference.vector)
    assert copy.preference.last_ts == 2_000 and copy.consumed == ["a"] and copy.last_recommended == ["c"]
    assert [h.item_id for h in copy.history] == ["a", "b"] and copy.has_seen("e1")
    assert copy.pending[0]["event_id"] == "e3"


def test_history_and_dedupe_window_are_bounded():
    state = UserState.new(dim=2, history_size=3)
    for i in range(300):
        state.learn(f"e{i}", f"i{i}", "view", None, i, unit(1, 0))
    assert len(state.history) == 3 and len(state.seen_event_ids) == state.dedupe_window


@pytest.fixture
def two_taste_index():
    index = ItemIndex(dim=2)
    infos = [ItemInfo(f"s{i}", f"Shoe {i}") for i in range(3)] + [ItemInfo(f"k{i}", f"Kitchen {i}") for i in range(3)]
    vectors = np.stack([unit(1, 0.1 * i) for i in range(3)] + [unit(0.1 * i, 1) for i in range(3)])
    index.upsert(infos, vectors)
    return index


def test_hybrid_content_part_serves_the_users_taste_without_consumed_or_just_seen_items(two_taste_index):
    state = UserState.new(dim=2)
    state.learn("e1", "s0", "purchase", None, 0, two_taste_index.vector_of("s0"))
    state.learn("e2", "s1", "click", None, 0, two_taste_index.vector_of("s1"))
    [scored] = HybridScorer(two_taste_index).recommend([state], k=3)
    ids = [s.item_id for s in scored]
    assert ids[0] == "s2" and "s0" not in ids and "s1" not in ids  # bought, and just clicked
    assert all(s.reasons and s.reasons[0].startswith("similar to Shoe") for s in scored)
    assert scored[0].score >= scored[1].score >= scored[2].score


def test_hybrid_content_part_never_serves_unavailable_items(two_taste_index):
    state = UserState.new(dim=2)
    state.learn("e1", "s0", "click", None, 0, two_taste_index.vector_of("s0"))
    two_taste_index.remove("s1")
    [scored] = HybridScorer(two_taste_index).recommend([state], k=10)
    assert "s1" not in [s.item_id for s in scored] and len(scored) == 4  # nor s0, just clicked


def test_batch_scoring_matches_one_at_a_time(two_taste_index):
    rng = np.random.default_rng(0)
    states = []
    for u in range(5):
        s = UserState.new(dim=2)
        for j, item in enumerate(rng.choice([i.item_id for i in two_taste_index.infos], 3, replace=False)):
            s.learn(f"{u}-{j}", item, "click", None, j, two_taste_index.vector_of(item))
        states.append(s)
    rec = HybridScorer(two_taste_index)
    together = rec.recommend(states, k=4)
    alone = [rec.recommend([s], k=4)[0] for s in states]
    assert [[x.item_id for x in lst] for lst in together] == [[x.item_id for x in lst] for lst in alone]


def test_hybrid_cold_start_user_gets_trending_items_with_a_reason(two_taste_index):
    from model.scoring.cooccurrence import ItemCooccurrence
    from model.scoring.trending import TrendingPopularity

    trending = TrendingPopularity()
    for _ in range(3):
        trending.learn_one(two_taste_index.row_of("k2"), ts=0)
    trending.learn_one(two_taste_index.row_of("s1"), ts=0)
    recommender = HybridScorer(two_taste_index, ItemCooccurrence(), trending)
    [scored] = recommender.recommend([UserState.new(dim=2)], k=2)
    assert [s.item_id for s in scored] == ["k2", "s1"]
    assert scored[0].reasons == ("trending now",)


def test_hybrid_cf_lifts_items_bought_together(two_taste_index):
    from model.scoring.cooccurrence import ItemCooccurrence

    cf = ItemCooccurrence()
    rows = two_taste_index.row_of
    for u in range(5):  # shoe s0 is bought with kitchen item k2
        cf.learn_one(f"b{u}", rows("s0"), ts=0)
        cf.learn_one(f"b{u}", rows("k2"), ts=0)
    state = UserState.new(dim=2)
    state.learn("e1", "s0", "purchase", None, 0, two_taste_index.vector_of("s0"))
    content_only = HybridScorer(two_taste_index, cf, weights=HybridWeights(1.0, 0.0, 0.0))
    hybrid = HybridScorer(two_taste_index, cf, weights=HybridWeights(0.3, 1.0, 0.0))
    assert content_only.recommend([state], k=1)[0][0].item_id == "s1"
    [top] = hybrid.recommend([state], k=1)[0]
    assert top.item_id == "k2" and top.reasons[0] == "often bought with Shoe 0"
