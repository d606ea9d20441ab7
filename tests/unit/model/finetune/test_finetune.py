"""Micro-fine-tuning: a real LoRA adapter on the real MiniLM, on CPU, with tiny batches."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from model.embedding.encoder import TextEncoder
from model.finetune.adapter import AdaptedEncoder, LoraSettings
from model.finetune.examples import TrainingBuffer
from model.finetune.guard import holdout_metrics
from model.finetune.objective import infonce_loss, residual_loss, user_directions
from model.finetune.training import micro_finetune
from model.user.preference import PreferenceVector

HOUR_MS = 3_600_000
TEXTS = {
    "toy": "Toy Story (1995). Animation. Children's, Comedy",
    "lion": "Lion King, The (1994). Animation. Children's, Musical",
    "heat": "Heat (1995). Action. Crime, Thriller",
    "goldeneye": "GoldenEye (1995). Action. Adventure, Thriller",
    "sense": "Sense and Sensibility (1995). Drama. Romance",
    "emma": "Emma (1996). Comedy. Drama, Romance",
    "alien": "Alien (1979). Action. Horror, Sci-Fi, Thriller",
    "scream": "Scream (1996). Horror. Thriller",
}
# Each user likes two items of one kind (one disliked item elsewhere) and picks a third next.
EXAMPLES = [
    ([("toy", 2.5, 0), ("heat", -1.5, HOUR_MS)], "lion"),
    ([("heat", 2.5, 0), ("sense", -1.5, HOUR_MS)], "goldeneye"),
    ([("sense", 2.5, 0), ("alien", -1.5, HOUR_MS)], "emma"),
    ([("alien", 2.5, 0), ("toy", -1.5, HOUR_MS)], "scream"),
]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(max_length=32, device="cpu")


@pytest.fixture
def buffer() -> TrainingBuffer:
    buf = TrainingBuffer(max_examples=16)
    for history, next_item in EXAMPLES:
        buf.add(history, next_item, ts=2 * HOUR_MS)
    return buf


def test_lora_steps_lower_the_loss_on_the_batch(encoder, buffer):
    torch.manual_seed(0)
    adapted = AdaptedEncoder(encoder)
    batch = list(buffer)
    with torch.no_grad():
        before = float(infonce_loss(adapted, batch, TEXTS.get))
    report = micro_finetune(adapted, buffer, TEXTS.get, budget_s=60, batch_size=len(batch), lr=2e-3, max_steps=4, rng=0)
    with torch.no_grad():
        after = float(infonce_loss(adapted, batch, TEXTS.get))
    assert report.steps == 4 and report.examples_seen == 4 * len(batch) and report.device == "cpu"
    assert after < before, (before, after)


@pytest.mark.parametrize(
    "lora, trainable",
    [
        (LoraSettings(), 2 * 32 * 384),  # the default: rank 32 on the 384 x 384 projection
        (LoraSettings(r=8, alpha=16, target_modules=("query", "value")), 6 * 2 * (8 * 384 + 384 * 8)),  # 6 layers
    ],
)
def test_only_lora_parameters_change(encoder, buffer, lora, trainable):
    adapted = AdaptedEncoder(encoder, lora)
    before = {n: p.detach().clone() for n, p in adapted.model.named_parameters()}
    micro_finetune(adapted, buffer, TEXTS.get, batch_size=4, lr=2e-3, max_steps=2, rng=0)
    after = dict(adapted.model.named_parameters())
    lora = {n for n in before if "lora_" in n}
    assert lora and {n for n, p in after.items() if p.requires_grad} == lora
    assert all(torch.equal(before[n], after[n]) for n in before if n not in lora)  # frozen base, bit for bit
    assert any(not torch.equal(before[n], after[n]) for n in lora if "lora_B" in n)
    # the live encoder's model was copied, not modified
    assert not any("lora_" in n for n, _ in encoder.model.named_parameters())
    share = adapted.trainable_parameters() / adapted.total_parameters()
    print(f"trainable {adapted.trainable_parameters():,} of {adapted.total_parameters():,} ({share:.2%})")
    assert adapted.trainable_parameters() == trainable
    assert share < 0.005


def test_user_side_is_the_workers_preference_vector(encoder):
    items = list(TEXTS)
    frozen = encoder.encode([TEXTS[i] for i in items])
    row = {item: r for r, item in enumerate(items)}
    half_life_s = 3600.0
    histories = [
        [("toy", 2.5, 0), ("heat", -1.5, HOUR_MS), ("emma", 1.0, 3 * HOUR_MS)],
        [("alien", 2.0, 5 * HOUR_MS), ("scream", 1.0, 2 * HOUR_MS), ("alien", 3.0, 6 * HOUR_MS)],  # late, repeat
        [("sense", 5.0, 10 * HOUR_MS)],
    ]
    directions, valid = user_directions(histories, row, torch.from_numpy(frozen), half_life_s)
    assert bool(valid.all())
    for history, got in zip(histories, directions, strict=True):
        pv = PreferenceVector(dim=frozen.shape[1], half_life_s=half_life_s)
        for item, weight, ts in history:
            pv.learn_one(frozen[row[item]], weight, ts)
        np.testing.assert_allclose(got.numpy(), pv.direction(), atol=1e-5)
    # an untrained adapter (B = 0) embeds exactly like the base encoder
    np.testing.assert_allclose(
        AdaptedEncoder(encoder).encode(list(TEXTS.values())), encoder.encode(list(TEXTS.values())), atol=1e-5
    )


def test_adapter_round_trip(encoder, buffer, tmp_path):
    adapted = AdaptedEncoder(encoder)
    micro_finetune(adapted, buffer, TEXTS.get, batch_size=4, lr=2e-3, max_steps=1, rng=0)
    saved = adapted.save_adapter(tmp_path / "adapter")
    assert (saved / "adapter_config.json").is_file()
    loaded = AdaptedEncoder.load_adapter(saved, encoder)
    texts = list(TEXTS.values())
    np.testing.assert_allclose(loaded.encode(texts), adapted.encode(texts), rtol=0, atol=1e-6)
    assert not np.allclose(adapted.encode(texts), encoder.encode(texts), atol=1e-6)  # training did something
    ids = list(TEXTS)
    holdout = list(buffer)
    assert holdout_metrics(loaded.encode, holdout, ids, TEXTS.get) == holdout_metrics(
        adapted.encode, holdout, ids, TEXTS.get
    )


def test_buffer_is_bounded_recency_weighted_and_holds_out_the_newest():
    buf = TrainingBuffer(max_examples=100, recency_half_life=10)
    for t in range(250):
        buf.add([("a", 1.0, t)], next_item=str(t), ts=t)
    assert len(buf) == 100 and next(iter(buf)).next_item == "150"
    p = buf.sampling_probabilities()
    assert p[-1] == pytest.approx(2 * p[-11]) and p.sum() == pytest.approx(1.0)
    drawn = [int(ex.next_item) for ex in buf.sample(20, np.random.default_rng(0))]
    assert len(set(drawn)) == 20 and np.median(drawn) > 225
    split = buf.holdout(0.2)
    assert [ex.next_item for ex in split.holdout] == [str(t) for t in range(230, 250)]
    assert len(split.train) == 80 and max(int(ex.next_item) for ex in split.train) == 229


def _with_prior(target_boost: float) -> tuple[TrainingBuffer, list[str]]:
    """The examples with a prior (CF + trending as the hybrid scored them) over the catalogue:
    flat, except ``target_boost`` on each example's next item."""
    catalogue = tuple(TEXTS)
    buf = TrainingBuffer(max_examples=16)
    for history, next_item in EXAMPLES:
        prior = np.zeros(len(catalogue), dtype=np.float32)
        prior[catalogue.index(next_item)] = target_boost
        buf.add(history, next_item, ts=2 * HOUR_MS, prior=prior, prior_items=catalogue)
    return buf, list(catalogue)


def test_residual_steps_lower_the_hybrid_loss(encoder):
    buf, catalogue = _with_prior(0.0)
    adapted = AdaptedEncoder(encoder)
    batch = list(buf)
    with torch.no_grad():
        before = float(residual_loss(adapted, batch, catalogue, TEXTS.get))
    report = micro_finetune(
        adapted,
        buf,
        TEXTS.get,
        batch_size=len(batch),
        lr=1e-2,
        max_steps=4,
        rng=0,
        temperature=1.0,
        catalogue=catalogue,
    )
    with torch.no_grad():
        after = float(residual_loss(adapted, batch, catalogue, TEXTS.get))
    assert report.steps == 4 and after < before, (before, after)


def test_residual_loss_learns_only_what_the_prior_misses(encoder):
    """Where CF + trending already put the next item far on top, the content term gets no
    gradient; where they do not, it does."""
    norms = {}
    for boost in (0.0, 30.0):
        buf, catalogue = _with_prior(boost)
        adapted = AdaptedEncoder(encoder)
        adapted.model.train()
        # move B off zero, so that A gets a gradient too
        torch.nn.init.normal_(adapted.model.get_base_model().projection.lora_B["default"].weight, std=0.01)
        residual_loss(adapted, list(buf), catalogue, TEXTS.get).backward()
        norms[boost] = sum(float(p.grad.norm()) for p in adapted.model.parameters() if p.grad is not None)
    assert norms[0.0] > 1e-3 and norms[30.0] < 1e-6 * norms[0.0], norms


def test_holdout_ranks_by_the_hybrid_score_when_asked(encoder):
    buf, catalogue = _with_prior(30.0)  # the prior alone ranks every next item first
    figures = holdout_metrics(encoder.encode, list(buf), catalogue, TEXTS.get, k=1, content_weight=0.3)
    assert figures == {"hr": 1.0, "ndcg": 1.0, "n": 4}
    content_only = holdout_metrics(encoder.encode, list(buf), catalogue, TEXTS.get, k=1)
    assert content_only["hr"] < 1.0


def test_an_adapter_for_another_layout_is_refused(encoder, tmp_path):
    """Weights whose names do not fit the wrapped encoder (an adapter of an older layout) would
    load as a fresh adapter and silently embed like the base: refused instead."""
    from peft import get_peft_model

    old_layout = get_peft_model(
        copy.deepcopy(encoder.model), LoraSettings(r=8, alpha=16, target_modules=("query", "value")).to_peft()
    )
    old_layout.save_pretrained(str(tmp_path / "old"))
    with pytest.raises(ValueError, match="does not fit"):
        AdaptedEncoder.load_adapter(tmp_path / "old", encoder)
