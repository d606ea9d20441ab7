"""Buy again: a past purchase comes back when it is due, with its reason; what is never
re-bought stays out; the learner's snapshot carries the habit to the worker."""

import numpy as np
import pytest

from model.embedding.item_index import ItemIndex, ItemInfo
from model.scoring.global_learner import GlobalLearner
from model.scoring.hybrid import HybridScorer
from model.scoring.repurchase import DAY_MS, BuyAgain, RepurchaseCounts
from model.scoring.snapshot import GlobalSnapshot
from model.user.state import UserState

ITEMS = [
    ("milk", "Milk", "dairy"),
    ("cream", "Cream", "dairy"),
    ("sofa", "Sofa", "furniture"),
    ("lamp", "Lamp", "furniture"),
]


@pytest.fixture
def index():
    index = ItemIndex(dim=2)
    vectors = np.array([[1, 0], [0.9, 0.44], [0, 1], [0.44, 0.9]], dtype=np.float32)
    index.upsert([ItemInfo(i, t, c) for i, t, c in ITEMS], vectors)
    return index


def habit(weeks: int = 8) -> RepurchaseCounts:
    """20 households buy milk every 7 days; 20 buy a sofa once."""
    counts = RepurchaseCounts()
    for h in range(20):
        for week in range(weeks):
            counts.learn_one(f"milk-{h}", 0, (week * 7 + h % 2) * DAY_MS)
        counts.learn_one(f"sofa-{h}", 2, h * DAY_MS)
    return counts


def bought(index, item: str, day: float) -> UserState:
    state = UserState.new(dim=2)
    state.learn("e1", item, "purchase", None, int(day * DAY_MS), index.vector_of(item))
    return state


def test_due_grows_with_the_time_since_the_last_purchase_and_never_for_what_nobody_rebuys(index):
    model = BuyAgain(habit().rows(4), [c for _, _, c in ITEMS])
    milk = model.due(np.zeros(4, dtype=np.int64), np.array([0.5, 3.0, 7.0, 14.0]))
    assert np.all(np.diff(milk) > 0) and milk[0] < 0.05 and milk[-1] > 0.8
    assert model.due(np.array([2]), np.array([365.0]))[0] < 0.1  # a sofa, a year later
    assert model.due(np.array([1]), np.array([14.0]))[0] > model.due(np.array([3]), np.array([14.0]))[0]
    # cream was never bought, but it is dairy: it borrows the category's habit, the lamp furniture's


def test_a_past_purchase_is_served_again_when_due_with_its_reason(index):
    scorer = HybridScorer(index, buy_again=BuyAgain(habit().rows(4), [c for _, _, c in ITEMS]))
    state = bought(index, "milk", day=0)
    [soon] = scorer.recommend([state], k=4, now_ms=[1 * DAY_MS])
    [later] = scorer.recommend([state], k=4, now_ms=[10 * DAY_MS])
    assert "milk" not in [s.item_id for s in soon]  # bought yesterday: not due
    assert later[0].item_id == "milk"
    assert later[0].reasons[0] == "buy again (you last bought it 10 days ago)"


def test_a_household_s_staple_ranks_above_an_item_it_bought_once_even_when_that_one_is_more_due(index):
    """Milk and cream share the dairy habit. Bought once 14 days ago, cream is more due than milk
    bought 8 times, the last 6 days ago; the household's own habit still puts the milk first."""
    scorer = HybridScorer(index, buy_again=BuyAgain(habit().rows(4), [c for _, _, c in ITEMS]))
    state = UserState.new(dim=2)
    state.learn("c", "cream", "purchase", None, 0, index.vector_of("cream"))
    for week in range(8):
        day = 8 - 7 * (7 - week)  # ..., day 1, day 8
        state.learn(f"m{week}", "milk", "purchase", None, day * DAY_MS, index.vector_of("milk"))
    due = scorer.buy_again.due(np.array([0, 1]), np.array([6.0, 14.0]))
    assert due[1] > due[0] >= scorer.policy.due_threshold  # cream is more due; both may be served
    [served] = scorer.recommend([state], k=2, now_ms=[14 * DAY_MS])
    assert [s.item_id for s in served] == ["milk", "cream"]
    assert state.bought["milk"][0] == 8 and state.bought["milk"][2] > state.bought["cream"][2] == 1.0


def test_a_sofa_is_not_served_again_a_year_later(index):
    scorer = HybridScorer(index, buy_again=BuyAgain(habit().rows(4), [c for _, _, c in ITEMS]))
    [served] = scorer.recommend([bought(index, "sofa", day=0)], k=4, now_ms=[365 * DAY_MS])
    assert "sofa" not in [s.item_id for s in served]


def test_the_learner_snapshot_carries_the_habit_to_a_worker_s_rows(index):
    learner = GlobalLearner()
    for h in range(20):
        for week in range(6):
            learner.learn(f"m{h}-{week}", f"h{h}", "milk", "purchase", week * 7 * DAY_MS)
    snapshot = GlobalSnapshot.from_bytes(learner.snapshot().to_bytes())
    worker_ids = ["sofa", "milk", "new-item"]
    model = snapshot.buy_again_for(worker_ids, ["furniture", "dairy", None])
    assert model is not None
    due = model.due(np.array([1, 0, 2]), np.array([7.0, 7.0, 7.0]))
    assert due[0] > 0.3 and due[0] > due[1] and due[0] > due[2]
