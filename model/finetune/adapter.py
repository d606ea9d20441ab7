"""The LoRA adapter on the item encoder: :class:`AdaptedEncoder` (a frozen transformer, an
identity projection after it, and a peft LoRA adapter on that projection by default) and its
:class:`LoraSettings`.

The base stays frozen, so an untrained adapter (B = 0) embeds exactly like
:class:`model.embedding.encoder.TextEncoder`.
"""

from __future__ import annotations

import contextlib
import copy
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from model.embedding.encoder import TextEncoder, mean_pool

if TYPE_CHECKING:
    import torch
    from peft import LoraConfig

#: The module a default adapter bends: a d x d projection after the transformer (see
#: :class:`EncoderWithProjection`).
PROJECTION = "projection"


@dataclass(frozen=True)
class LoraSettings:
    """A LoRA adapter on ``target_modules``: W x + (alpha / r) * B A x, with A (r, d_in) random
    and B (d_out, r) zero at the start, so a fresh adapter changes nothing.

    The default adapts the projection after the transformer (:class:`EncoderWithProjection`,
    W = I): e_A(text) = normalise((I + (alpha / r) B A) e(text)), a rank-r bend of the item
    space (24,576 trainable parameters for MiniLM at r = 32). Names of transformer modules
    adapt those instead, e.g. ("query", "value") for every attention layer of MiniLM or
    ("q_proj", "v_proj") of SmolLM2: more capacity, and a transformer pass per item per step.

    >>> LoraSettings().to_peft().target_modules
    {'projection'}
    """

    r: int = 32
    alpha: int = 64
    dropout: float = 0.0
    target_modules: tuple[str, ...] = (PROJECTION,)

    @property
    def projection_only(self) -> bool:
        return tuple(self.target_modules) == (PROJECTION,)

    def to_peft(self):
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            bias="none",
        )


def _encoder_with_projection(transformer, dim: int):
    import torch

    class EncoderWithProjection(torch.nn.Module):
        """The transformer, then a d x d projection of every token state, fixed to the identity:
        the base embeds exactly like the transformer alone (mean pooling is linear), and a LoRA
        adapter on ``projection`` bends the whole item space at the cost of one matrix product."""

        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer
            self.projection = torch.nn.Linear(dim, dim, bias=False)
            with torch.no_grad():
                self.projection.weight.copy_(torch.eye(dim))
            self.projection.weight.requires_grad_(False)
            self.config = transformer.config  # what peft reads

        def forward(self, **tokens):
            return self.projection(self.transformer(**tokens).last_hidden_state)

    return EncoderWithProjection()


class AdaptedEncoder:
    """A :class:`TextEncoder`'s transformer plus an identity projection, behind a peft LoRA
    adapter; the base is frozen.

    ``AdaptedEncoder(encoder)`` copies the encoder's model (the live encoder is not touched)
    and adds a fresh adapter; ``AdaptedEncoder.load_adapter(dir, encoder)`` adds a saved one.
    :meth:`encode` is :meth:`TextEncoder.encode` through the adapter: mean pooling, L2 norm,
    float32 numpy. ``device`` is the encoder's (cuda when present, else cpu). With the adapter
    on the projection only (the default), the frozen transformer runs once per distinct text:
    its pooled output is cached (shared by clones), and a training step or a re-embedding is
    one small matrix product per item.
    """

    def __init__(
        self,
        encoder: TextEncoder | None = None,
        lora: LoraSettings | None = None,
        *,
        adapter_dir: str | Path | None = None,
        trainable: bool = True,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from peft import PeftModel, get_peft_model

        encoder = encoder or TextEncoder()
        self.tokenizer = encoder.tokenizer
        self.device = encoder.device
        self.dim = encoder.dim
        self.batch_size = encoder.batch_size
        self.max_length = encoder.max_length
        self.base_name = encoder.name
        base = _encoder_with_projection(copy.deepcopy(encoder.model), encoder.dim)
        if adapter_dir is not None:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self.model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=trainable)
            missing = [str(w.message) for w in caught if "missing adapter keys" in str(w.message)]
            if missing:  # else the adapter would silently embed like the base encoder
                raise ValueError(
                    f"the adapter in {adapter_dir} does not fit {encoder.name} as wrapped here "
                    f"(written for another base or layout): {missing[0][:300]}"
                )
            cfg = cast("LoraConfig", self.model.peft_config["default"])  # the config of a LoRA adapter
            modules = cast("set[str]", cfg.target_modules)  # our adapters name their modules: peft keeps a set
            self.lora = LoraSettings(cfg.r, cfg.lora_alpha, cfg.lora_dropout, tuple(sorted(modules)))
        else:
            self.lora = lora or LoraSettings()
            self.model = get_peft_model(base, self.lora.to_peft())
        self.model.to(self.device).eval()
        self._pooled: dict[str, torch.Tensor] = {}  # text -> the frozen transformer's pooled output

    @classmethod
    def load_adapter(
        cls, adapter_dir: str | Path, encoder: TextEncoder | None = None, trainable: bool = True
    ) -> AdaptedEncoder:
        """The base encoder with the adapter saved in ``adapter_dir`` (offline)."""
        return cls(encoder, adapter_dir=adapter_dir, trainable=trainable)

    def save_adapter(self, adapter_dir: str | Path) -> Path:
        """Write only the adapter (adapter_config.json + adapter_model.safetensors, ~0.3 MB)."""
        adapter_dir = Path(adapter_dir)
        self.model.save_pretrained(str(adapter_dir))
        return adapter_dir

    def clone(self) -> AdaptedEncoder:
        """An independent copy (own weights, shared tokenizer): the candidate to fine-tune."""
        other = copy.copy(self)
        other.model = copy.deepcopy(self.model)
        return other

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def total_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def _tokens(self, texts: Sequence[str]):
        return self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)

    def embed(self, texts: Sequence[str], autocast_dtype=None):
        """Unit-norm float32 embeddings (len(texts), dim) as a torch tensor, with gradients.

        ``autocast_dtype`` (cuda only) runs the transformer in mixed precision; pooling and
        normalisation stay in float32."""
        import torch

        if self.lora.projection_only:
            pooled = self._base_pooled(texts)
            base: Any = self.model.get_base_model()  # EncoderWithProjection, a class local to _encoder_with_projection
            return torch.nn.functional.normalize(base.projection(pooled), p=2, dim=1)
        tokens = self._tokens(texts)
        autocast = (
            torch.autocast(device_type="cuda", dtype=autocast_dtype)
            if autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast, _attention_without_cudnn(self.device):
            hidden = self.model(**tokens)
        return mean_pool(hidden.float(), tokens["attention_mask"])

    def _base_pooled(self, texts: Sequence[str]):
        """The frozen transformer's unit-norm pooled output of each text (computed once per text,
        without gradients); the projection is linear, so projecting it equals projecting tokens."""
        import torch

        missing = list(dict.fromkeys(t for t in texts if t not in self._pooled))
        transformer = cast("torch.nn.Module", self.model.get_base_model().transformer)
        was_training = transformer.training
        transformer.eval()  # no dropout: the cache is the frozen encoder's embedding
        try:
            with torch.inference_mode(False), torch.no_grad():  # plain tensors: training reuses them
                for start in range(0, len(missing), self.batch_size):
                    batch = missing[start : start + self.batch_size]
                    tokens = self._tokens(batch)
                    with _attention_without_cudnn(self.device):
                        hidden = transformer(**tokens).last_hidden_state
                    for text, vector in zip(batch, mean_pool(hidden.float(), tokens["attention_mask"]), strict=True):
                        self._pooled[text] = vector
        finally:
            transformer.train(was_training)
        return torch.stack([self._pooled[t] for t in texts])

    def encode(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Like :meth:`TextEncoder.encode`: float32 (len(texts), dim), rows of unit norm."""
        import torch

        was_training = self.model.training
        self.model.eval()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = list(texts[start : start + self.batch_size])
                out[start : start + len(batch)] = self.embed(batch).cpu().numpy()
                if progress:
                    progress(len(batch))
        self.model.train(was_training)
        return out


def _attention_without_cudnn(device):
    """On cuda, scaled-dot-product attention without the cuDNN backend: it builds an execution
    plan for every new (texts, tokens) shape, ~0.2 s of CPU a step when every batch differs;
    the memory-efficient / flash kernels need none."""
    if not str(device).startswith("cuda"):
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])
