"""The learner's training-example prior is the worker's CF + trending score of the same user."""

from __future__ import annotations

import numpy as np

from model.embedding.item_index import ItemIndex, ItemInfo
from model.evaluation.online_hybrid import OnlineHybrid
from model.evaluation.protocol import Interaction
from model.scoring.hybrid import HybridWeights
from model.scoring.trending import TrendingPopularity
from stream.learner.service import GlobalLearner

HOUR_MS = 3_600_000


def test_the_learners_prior_matches_the_workers_other_terms():
    rng = np.random.default_rng(0)
    items = [f"i{n}" for n in range(30)]
    index = ItemIndex(dim=4)
    index.upsert([ItemInfo(i, i) for i in items], rng.normal(size=(30, 4)).astype(np.float32))
    half_life_s = 3 * 24 * 3600.0
    weights = HybridWeights(content=0.3, cf=1.0, trending=0.2)
    worker = OnlineHybrid(index, weights, trending=TrendingPopularity(half_life_s))
    learner = GlobalLearner(half_life_s)
    catalogue = tuple(reversed(items))  # any order: the prior follows the catalogue it is given
    for n in range(400):
        user, item = f"u{rng.integers(12)}", items[int(rng.zipf(1.5)) % 30]
        kind = "dislike" if n % 17 == 0 else "click"
        worker.learn_one(Interaction(user, item, n * HOUR_MS, kind))
        learner.learn(f"e{n}", user, item, kind, n * HOUR_MS)
    for user in ("u1", "u5", "nobody"):
        expected = worker.scorer.other_terms([worker._state(user)])[0]
        got = learner.prior(user, catalogue, weights)
        np.testing.assert_allclose(got, expected[[index.row_of(i) for i in catalogue]], atol=1e-4)
