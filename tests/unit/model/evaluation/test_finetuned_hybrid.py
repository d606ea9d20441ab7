"""The fine-tuned hybrid in a prequential replay: real MiniLM, real LoRA cycles on CPU, tiny log."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from model.embedding.encoder import TextEncoder
from model.embedding.item_index import ItemIndex, ItemInfo
from model.evaluation.finetuned_hybrid import FinetunedHybrid
from model.evaluation.online_hybrid import OnlineHybrid
from model.evaluation.prequential import prequential
from model.evaluation.protocol import Interaction
from model.finetune.cycle import FinetuneSchedule, cycles_markdown
from model.scoring.hybrid import HybridWeights
from model.user.preference import PreferenceVector
from serving.cli import app
from tests.unit.model.finetune.test_finetune import TEXTS

ITEMS = list(TEXTS)
# What users pick after a movie: text similarity does not know it (the base encoder puts Toy Story
# next to Lion King), behaviour does: a fine-tuned adapter must learn it.
ACROSS = {
    "toy": "alien",
    "alien": "toy",
    "lion": "scream",
    "scream": "lion",
    "heat": "sense",
    "sense": "heat",
    "goldeneye": "emma",
    "emma": "goldeneye",
}
# What text similarity already knows: each movie's nearest neighbour under the base encoder.
ALIKE = {
    "toy": "lion",
    "lion": "toy",
    "heat": "goldeneye",
    "goldeneye": "heat",
    "sense": "emma",
    "emma": "sense",
    "alien": "scream",
    "scream": "heat",
}
CONTENT_ONLY = HybridWeights(content=1.0, cf=0.0, trending=0.0)
# One cycle after the 80 events of 40 users; the newest 10 examples are the holdout, k = 1.
SCHEDULE = FinetuneSchedule(every_events=80, max_steps=8, batch_size=8, lr=5e-3, holdout=0.25, min_examples=8, k=1)


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(max_length=32, device="cpu")


@pytest.fixture(scope="module")
def base_vectors(encoder) -> np.ndarray:
    return encoder.encode([TEXTS[i] for i in ITEMS])


def index_of(vectors: np.ndarray) -> ItemIndex:
    index = ItemIndex(vectors.shape[1])
    index.upsert([ItemInfo(i, i) for i in ITEMS], vectors)
    return index


def log_of(patterns: list[dict[str, str]]) -> list[Interaction]:
    """User n rates movie n % 8 five stars, then the movie its pattern says comes next."""
    events, ts = [], 0
    for n, pattern in enumerate(patterns):
        first = ITEMS[n % len(ITEMS)]
        for item in (first, pattern[first]):
            events.append(Interaction(f"u{n}", item, ts, "rating", 5.0))
            ts += 60_000
    return events


def replay(model, events):
    return prequential(events, [model], k=1, new_item_after=0)


def test_a_promotion_moves_items_and_users_into_the_new_space(encoder, base_vectors):
    model = FinetunedHybrid(index_of(base_vectors), TEXTS, encoder, CONTENT_ONLY, SCHEDULE, seed=0)
    replay(model, log_of([ACROSS] * 40))

    [cycle] = model.cycles  # it ran inside the replay, after the 80th event
    assert (cycle.at_event, cycle.outcome, cycle.train_examples, cycle.holdout_examples) == (80, "promoted", 30, 10)
    assert cycle.candidate["hr"] > cycle.current["hr"] and cycle.loss_last < cycle.loss_first
    assert model.space == "adapter-1" and "| 1 | 80 | promoted | 30 / 10 |" in cycles_markdown(model.cycles, k=1)

    # every item is re-embedded by the promoted adapter ...
    vectors = model.index.vectors
    np.testing.assert_allclose(vectors, model.adapter.encode([TEXTS[i] for i in ITEMS]), atol=1e-6)
    assert not np.allclose(vectors, base_vectors, atol=1e-3)
    # ... and every user's vector is the one their stored history gives in the new space
    assert len(model.states) == 40
    for state in model.states.values():
        assert state.space == "adapter-1"
        expected = PreferenceVector(dim=vectors.shape[1], half_life_s=state.preference.half_life_s)
        for entry in state.history:
            expected.learn_one(model.index.vector_of(entry.item_id), entry.weight, entry.ts)
        np.testing.assert_allclose(state.preference.vector, expected.vector, atol=1e-6)
        assert state.preference.last_ts == expected.last_ts

    # a new fan of Toy Story is now served what such fans pick next, not the look-alike
    model.learn_one(Interaction("fan", "toy", 10**9, "rating", 5.0))
    assert model.recommend("fan", 1) == ["alien"]
    frozen = OnlineHybrid(index_of(base_vectors), CONTENT_ONLY)
    frozen.learn_one(Interaction("fan", "toy", 10**9, "rating", 5.0))
    assert frozen.recommend("fan", 1) == ["lion"]


def test_a_rejected_candidate_changes_nothing(encoder, base_vectors):
    # 30 users teach the cross-genre pattern, the 10 newest (the holdout) went back to look-alikes
    events = log_of([ACROSS] * 30 + [ALIKE] * 10)
    model = FinetunedHybrid(index_of(base_vectors), TEXTS, encoder, CONTENT_ONLY, SCHEDULE, seed=0)
    adapter = model.adapter
    replay(model, events)
    frozen = OnlineHybrid(index_of(base_vectors), CONTENT_ONLY)
    replay(frozen, events)

    [cycle] = model.cycles
    assert cycle.outcome == "rejected" and cycle.candidate["hr"] < cycle.current["hr"]
    assert model.adapter is adapter and model.space == "base"
    np.testing.assert_array_equal(model.index.vectors, base_vectors)
    for user, state in model.states.items():
        assert state.space == "base"
        np.testing.assert_array_equal(state.preference.vector, frozen.states[user].preference.vector)
    assert [model.recommend(u, 3) for u in ("u0", "u35")] == [frozen.recommend(u, 3) for u in ("u0", "u35")]

    again = FinetunedHybrid(index_of(base_vectors), TEXTS, encoder, CONTENT_ONLY, SCHEDULE, seed=0)
    replay(again, events)
    assert (again.cycles[0].loss_last, again.cycles[0].candidate) == (cycle.loss_last, cycle.candidate)  # seeded


def test_too_few_examples_skip_the_cycle(encoder, base_vectors):
    schedule = FinetuneSchedule(every_events=4, min_examples=8)
    model = FinetunedHybrid(index_of(base_vectors), TEXTS, encoder, CONTENT_ONLY, schedule)
    replay(model, log_of([ACROSS] * 2))
    assert [(c.outcome, c.steps, c.version) for c in model.cycles] == [("skipped", 0, None)] and model.space == "base"
    with pytest.raises(ValueError, match="no text"):
        FinetunedHybrid(index_of(base_vectors), {"toy": TEXTS["toy"]}, encoder)


def test_evaluate_runs_the_finetuned_hybrid_when_named_and_reports_its_cycles(tmp_path):
    events, items = tmp_path / "events.csv", tmp_path / "items.csv"
    items.write_text("item_id,title\n" + "".join(f"{i},{TEXTS[i]}\n" for i in ITEMS))
    events.write_text(
        "user_id,item_id,ts,type,value\n"
        + "".join(f"{e.user_id},{e.item_id},{e.ts},{e.type},{e.value}\n" for e in log_of([ACROSS] * 6))
    )
    out = tmp_path / "result.json"
    common = [
        "evaluate",
        "--events-file",
        str(events),
        "--items-file",
        str(items),
        "--k",
        "2",
        "--reports-dir",
        str(tmp_path / "reports"),
        "--json",
        str(out),
    ]
    result = CliRunner().invoke(app, [*common, "--models", "hybrid,hybrid-finetuned", "--finetune-every", "6"])
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert set(payload["models"]) == {"hybrid", "hybrid-finetuned"}
    # 12 events, a cycle after every 6; 6 examples are fewer than a cycle needs (200 by default)
    cycles = payload["finetune_cycles"]["hybrid-finetuned"]
    assert [(c["at_event"], c["outcome"]) for c in cycles] == [(6, "skipped"), (12, "skipped")]
    report = (tmp_path / "reports" / "evaluation.md").read_text()
    assert "## Fine-tune cycles of hybrid-finetuned" in report and "2 fine-tune cycles: 0 promoted" in report

    result = CliRunner().invoke(app, common)  # not named: not run
    assert result.exit_code == 0, result.output
    assert "hybrid-finetuned" not in json.loads(out.read_text())["models"]
