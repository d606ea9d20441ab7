"""The live learner and the offline replay run one fine-tune cycle: the same function, with the
same schedule built from the same settings."""

from __future__ import annotations

import numpy as np
import pytest

import model.evaluation.finetuned_hybrid as replay_module
import stream.learner.adapter_training as learner_module
from model.embedding.encoder import TextEncoder
from model.embedding.item_index import ItemIndex, ItemInfo
from model.evaluation.protocol import Interaction
from model.finetune import cycle
from model.finetune.cycle import FinetuneSchedule
from serving.evaluate import Catalogue, model_factories
from stream.config import Settings
from stream.learner.service import adapter_trainer
from stream.model_store import ModelStore

TEXTS = {
    "a": "Red running shoes. shoes",
    "b": "Blue trail shoes. shoes",
    "c": "Cast iron pan. kitchen",
    "d": "Steel chef knife. kitchen",
}


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(max_length=32, device="cpu")


@pytest.fixture
def calls(monkeypatch) -> list[tuple[str, FinetuneSchedule]]:
    """Every guarded_cycle call, by caller, whichever module calls it."""
    seen: list[tuple[str, FinetuneSchedule]] = []
    real = cycle.guarded_cycle

    def spy(caller: str):
        def run(adapter, examples, texts, catalogue, schedule, promote, **kwargs):
            seen.append((caller, schedule))
            return real(adapter, examples, texts, catalogue, schedule, promote, **kwargs)

        return run

    monkeypatch.setattr(replay_module, "guarded_cycle", spy("replay"))
    monkeypatch.setattr(learner_module, "guarded_cycle", spy("learner"))
    return seen


def test_the_live_defaults_are_the_schedule_chosen_by_measurement():
    settings = Settings()
    assert settings.finetune_schedule() == FinetuneSchedule()  # one set of defaults
    assert (
        FinetuneSchedule().every_events,
        FinetuneSchedule().max_steps,
        FinetuneSchedule().batch_size,
        FinetuneSchedule().lr,
    ) == (2_000, 100, 128, 3e-3)  # docs/BENCHMARKS.md section 4


def test_replay_and_learner_run_the_same_cycle_with_the_same_schedule(monkeypatch, calls, encoder, tmp_path):
    for name, value in {
        "FINETUNE_EVERY_EVENTS": "8",
        "FINETUNE_MIN_EXAMPLES": "4",
        "FINETUNE_MAX_STEPS": "2",
        "FINETUNE_BATCH_SIZE": "4",
        "FINETUNE_HOLDOUT": "0.25",
        "FINETUNE_LR": "0.01",
    }.items():
        monkeypatch.setenv(f"STREAMREC_{name}", value)
    settings = Settings()
    schedule = settings.finetune_schedule()

    index = ItemIndex(encoder.dim)
    index.upsert([ItemInfo(i, i) for i in TEXTS], encoder.encode(list(TEXTS.values())))
    replay = model_factories(Catalogue(index, TEXTS, encoder))["hybrid-finetuned"]()  # `streamrec evaluate`
    pairs = [("a", "c"), ("b", "d")] * 2
    for n, (first, then) in enumerate(pairs):
        replay.learn_one(Interaction(f"u{n}", first, ts=2 * n, type="view"))
        replay.learn_one(Interaction(f"u{n}", then, ts=2 * n + 1, type="purchase"))

    trainer = adapter_trainer(settings, ModelStore(str(tmp_path)), announce=lambda version: None, base_encoder=encoder)
    outcome = trainer.run_cycle(list(replay.examples.buffer), TEXTS, "test")

    assert [caller for caller, _ in calls] == ["replay", "learner"]
    assert calls[0][1] == calls[1][1] == schedule
    assert replay.cycles[0].steps == outcome.steps == 2  # the step cap of the shared schedule
    assert outcome.train_examples == replay.cycles[0].train_examples == 3
    np.testing.assert_allclose(outcome.current["hr"], replay.cycles[0].current["hr"])  # the same space judged
