"""Guarded promotion of fine-tuned adapters, on the real MiniLM encoder and a tiny catalogue."""

from __future__ import annotations

import numpy as np
import pytest

from model.embedding.encoder import TextEncoder
from model.finetune.cycle import FinetuneSchedule
from model.finetune.examples import TrainingExample
from model.scoring.decay import DEFAULT_HALF_LIFE_S
from stream.learner.adapter_training import (
    EMBEDDINGS_FILE,
    AdapterTrainer,
    embeddings_from_bytes,
    prepare_adapter_space,
)
from stream.metrics import FINETUNE_CYCLES
from stream.model_store import ModelStore, SnapshotError
from tests.integration.test_worker import KITCHEN, SHOES

CATALOGUE = {
    item: f"{title}. {'shoes' if item in SHOES else 'kitchen'}" for item, title in {**SHOES, **KITCHEN}.items()
}
HOUR_MS = 3_600_000


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()


def examples(pairs, n: int) -> list[TrainingExample]:
    return [
        TrainingExample(((pairs[i % len(pairs)][0], 1.0, i * HOUR_MS),), pairs[i % len(pairs)][1], i * HOUR_MS + 1)
        for i in range(n)
    ]


def cycles(outcome: str) -> float:
    return FINETUNE_CYCLES.labels(outcome)._value.get()


def test_a_candidate_that_loses_on_the_holdout_is_not_promoted(encoder, tmp_path):
    store = ModelStore(str(tmp_path))
    announced = []
    # The candidate learns that shoppers cross from shoes to kitchenware, but the newest
    # behaviour (the holdout) is back to similar shoes, which the plain encoder ranks well.
    crossing = [("s1", "k4"), ("s2", "k1"), ("s3", "k5"), ("s4", "k2")]
    similar = [("s1", "s2"), ("s2", "s3"), ("s3", "s4")]
    schedule = FinetuneSchedule(budget_s=8, max_steps=None, batch_size=8, holdout=0.25, min_examples=8, lr=1e-2)
    trainer = AdapterTrainer(
        store, announced.append, encoder, schedule, half_life_s=DEFAULT_HALF_LIFE_S, content_weight=0.3, seed=1
    )
    before = cycles("rejected")
    outcome = trainer.run_cycle(examples(crossing, 30) + examples(similar, 10), CATALOGUE, "test")
    assert outcome.outcome == "rejected", outcome
    assert outcome.candidate["ndcg"] < outcome.current["ndcg"] or outcome.candidate["hr"] < outcome.current["hr"]
    assert store.versions() == [] and announced == [] and trainer.current_version is None
    assert cycles("rejected") == before + 1


def test_a_promoted_adapter_is_stored_with_its_figures_and_loads_in_a_worker(encoder, tmp_path):
    store = ModelStore(str(tmp_path))
    announced = []
    pairs = [("s1", "k4"), ("s2", "k1"), ("s3", "k5"), ("s4", "k2")]  # invisible to text similarity
    schedule = FinetuneSchedule(budget_s=10, max_steps=None, batch_size=8, holdout=0.25, min_examples=8)
    trainer = AdapterTrainer(
        store, announced.append, encoder, schedule, half_life_s=DEFAULT_HALF_LIFE_S, content_weight=0.3, seed=1
    )
    outcome = trainer.run_cycle(examples(pairs, 40), CATALOGUE, "test")
    assert outcome.outcome == "promoted", outcome
    assert outcome.candidate["ndcg"] > outcome.current["ndcg"]
    assert announced == [outcome.version] == store.versions() and trainer.current_version == outcome.version
    manifest = store.manifest(outcome.version)
    assert manifest.kind == "adapter"
    assert manifest.metrics["holdout"]["candidate"] == outcome.candidate
    assert manifest.metrics["base_encoder"] == encoder.name
    files = store.load(outcome.version)
    stored = embeddings_from_bytes(files[EMBEDDINGS_FILE])
    assert sorted(stored) == sorted(CATALOGUE)

    # A worker rebuilds its index in the adapter's space; items the version lacks are embedded.
    from model.embedding.item_index import ItemIndex, ItemInfo

    index = ItemIndex(dim=encoder.dim)
    ids = [*CATALOGUE, "new"]
    texts = {**CATALOGUE, "new": "Nonstick frying pan. kitchen"}
    index.upsert([ItemInfo(i, i) for i in ids], encoder.encode([texts[i] for i in ids]))
    adapted, respaced = prepare_adapter_space(files, manifest.metrics, encoder, index, texts)
    assert [info.item_id for info in respaced.infos] == ids  # same rows: CF stays aligned
    np.testing.assert_allclose(respaced.vector_of("s1"), stored["s1"], atol=1e-6)
    np.testing.assert_allclose(respaced.vector_of("new"), adapted.encode([texts["new"]])[0], atol=1e-5)
    assert not np.allclose(respaced.vector_of("new"), index.vector_of("new"), atol=1e-3)

    with pytest.raises(SnapshotError, match="incompatible"):
        prepare_adapter_space(files, {**manifest.metrics, "base_encoder": "another-model"}, encoder, index, texts)
