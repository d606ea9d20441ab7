"""Training an adapter in place: :func:`micro_finetune`, time-boxed AdamW steps on the LoRA
weights over recency-weighted batches of a :class:`~model.finetune.examples.TrainingBuffer`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from model.finetune.adapter import AdaptedEncoder
from model.finetune.examples import TrainingBuffer
from model.finetune.objective import infonce_loss, residual_loss
from model.scoring.decay import DEFAULT_HALF_LIFE_S


@dataclass(frozen=True)
class FinetuneReport:
    steps: int
    examples_seen: int
    loss_first: float
    loss_last: float
    seconds: float
    device: str
    trainable_params: int
    precision: str = "fp32"
    losses: list[float] = field(default_factory=list, repr=False)

    @property
    def examples_per_s(self) -> float:
        return self.examples_seen / self.seconds if self.seconds > 0 else 0.0


def micro_finetune(
    adapted: AdaptedEncoder,
    buffer: TrainingBuffer,
    item_text: Callable[[str], str],
    budget_s: float = 60.0,
    batch_size: int = 32,
    lr: float = 5e-4,
    max_steps: int | None = None,
    rng: np.random.Generator | int | None = None,
    temperature: float = 0.05,
    half_life_s: float = DEFAULT_HALF_LIFE_S,
    weight_decay: float = 0.01,
    max_grad_norm: float = 1.0,
    catalogue: Sequence[str] | None = None,
    content_weight: float = 0.3,
) -> FinetuneReport:
    """Train ``adapted``'s LoRA weights in place on recency-weighted batches from ``buffer``.

    The loss is :func:`infonce_loss` (in-batch negatives), or with ``catalogue`` (item ids, the
    rows the examples' priors follow) :func:`residual_loss`: the hybrid's ranking of the whole
    catalogue, content term weighted ``content_weight``, at ``temperature``.

    Stops after ``max_steps`` batches or when the next step would end past ``budget_s``
    (judged by the mean step time so far; the first step always runs). AdamW on the LoRA
    parameters only; on cuda the transformer runs under autocast (bfloat16, or float16 with a
    gradient scaler), on cpu in float32. The model is left in eval mode.
    """
    import torch

    rng = np.random.default_rng(rng)
    on_cuda = str(adapted.device).startswith("cuda")
    autocast_dtype = None
    if on_cuda:
        autocast_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if autocast_dtype == torch.float16 else None
    params = [p for p in adapted.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=on_cuda)

    losses: list[float] = []
    steps = examples_seen = 0
    start = time.perf_counter()
    adapted.model.train()
    try:
        while len(buffer) and (max_steps is None or steps < max_steps):
            elapsed = time.perf_counter() - start
            if steps and elapsed + elapsed / steps > budget_s:
                break
            batch = buffer.sample(batch_size, rng)
            steps += 1
            examples_seen += len(batch)
            if catalogue is not None:
                loss = residual_loss(
                    adapted, batch, catalogue, item_text, content_weight, temperature, half_life_s, autocast_dtype
                )
            else:
                loss = infonce_loss(adapted, batch, item_text, temperature, half_life_s, autocast_dtype)
            if loss is None:
                continue
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
                optimizer.step()
            losses.append(float(loss.detach()))
    finally:
        adapted.model.eval()
        if on_cuda:
            torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    device = torch.cuda.get_device_name(adapted.device) if on_cuda else "cpu"
    precision = {None: "fp32", torch.bfloat16: "bf16-autocast", torch.float16: "fp16-autocast"}[autocast_dtype]
    return FinetuneReport(
        steps,
        examples_seen,
        losses[0] if losses else math.nan,
        losses[-1] if losses else math.nan,
        seconds,
        device,
        adapted.trainable_parameters(),
        precision,
        losses,
    )
