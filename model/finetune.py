"""Micro-fine-tuning: a LoRA adapter on the item encoder, trained so a user's history points at
the item the user picked next, where the rest of the hybrid does not already.

One training example is (history, next item) as the worker saw it, with its prior: the CF and
trending terms of the hybrid score the user got then. The user side is exactly the worker's
preference direction, rebuilt from the history in the adapted embedding space,

    u = sum_j c_j * w_j * e(item_j),    c_j = product of the decays applied after event j
    (c_j = 0.5 ** ((t_last - t_j) / half_life) when the history is in time order),

scored as u / ||u||; the item side is the adapted embedding of every catalogue item. The loss
(:func:`residual_loss`) is the cross-entropy of the whole hybrid score at the next item,

    L = - 1/B sum_b log softmax_i( (prior_b(i) + b_content * z_i(u_b . e(i))) / T )[next_b],

with the prior held fixed: the content term learns what CF and trending miss. Without priors
and a catalogue, :func:`infonce_loss` is plain InfoNCE with in-batch negatives.

Only the LoRA matrices train (by default on an identity projection after the transformer); the
base stays frozen, so an untrained adapter (B = 0) embeds exactly like
:class:`model.encoder.TextEncoder`. :func:`micro_finetune` is time-boxed; :func:`holdout_metrics`
compares two encoders on the most recent examples, ranked by the hybrid score, so a candidate
adapter is promoted only if it does not lose.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from model.decay import DEFAULT_HALF_LIFE_S
from model.encoder import TextEncoder, mean_pool
from model.preference import decay_factor
from model.ranking_metrics import hr_at_k, ndcg_at_k

#: One history entry as the worker stores it: (item_id, weight w(type, value), ts in ms).
HistoryItem = tuple[str, float, int]



@dataclass(frozen=True)
class TrainingExample:
    """What the worker knew about a user (``history``, oldest first) and the item picked next.

    ``prior`` (optional) is what the hybrid's other terms, b_cf * z(cf) + b_trend * z(pop),
    gave every catalogue item for this user when the example was made (float16), item
    ``prior_items[j]`` getting ``prior[j]`` (one tuple shared by the examples of one catalogue):
    the content term is trained on top of it (:func:`residual_loss`), to rank what CF and
    trending miss.
    """

    history: tuple[HistoryItem, ...]
    next_item: str
    ts: int
    prior: np.ndarray | None = field(default=None, compare=False, repr=False)
    prior_items: tuple[str, ...] | None = field(default=None, compare=False, repr=False)


def history_of(state) -> list[HistoryItem]:
    """The (item_id, weight, ts) triples of a :class:`model.user_state.UserState`'s history."""
    return [(h.item_id, float(h.weight), int(h.ts)) for h in state.history]


class HoldoutSplit(NamedTuple):
    train: TrainingBuffer
    holdout: list[TrainingExample]


class TrainingBuffer:
    """The last ``max_examples`` training examples, in arrival (stream) order.

    Sampling favours recent examples: example i is drawn with probability

        p_i ∝ 0.5 ** (age_i / recency_half_life),   age_i = examples added after i,

    so the newest weighs 1, the one ``recency_half_life`` examples older 1/2 (default: a
    quarter of ``max_examples``; ``math.inf`` samples uniformly). A batch holds no example twice.

    >>> buf = TrainingBuffer(max_examples=3)
    >>> for t in range(5):
    ...     _ = buf.add([("a", 1.0, t)], next_item=f"i{t}", ts=t)
    >>> len(buf), [ex.next_item for ex in buf]
    (3, ['i2', 'i3', 'i4'])
    >>> split = buf.holdout(1 / 3)
    >>> [ex.next_item for ex in split.train], [ex.next_item for ex in split.holdout]
    (['i2', 'i3'], ['i4'])
    >>> buf.add([], next_item="x", ts=9)  # nothing to learn from an empty history
    False
    """

    def __init__(self, max_examples: int = 10_000, recency_half_life: float | None = None) -> None:
        if max_examples < 1:
            raise ValueError("max_examples must be >= 1")
        self.max_examples = max_examples
        self.recency_half_life = recency_half_life if recency_half_life is not None else max(1.0, max_examples / 4)
        self._examples: deque[TrainingExample] = deque(maxlen=max_examples)

    def add(self, history: Iterable[HistoryItem], next_item: str, ts: int, prior: np.ndarray | None = None,
            prior_items: tuple[str, ...] | None = None) -> bool:
        """Keep one example (dropping the oldest when full); False for an empty history."""
        entries = tuple((str(i), float(w), int(t)) for i, w, t in history)
        if not entries:
            return False
        if prior is not None and (prior_items is None or len(prior_items) != len(prior)):
            raise ValueError("a prior needs prior_items of the same length")
        self._examples.append(TrainingExample(entries, str(next_item), int(ts),
                                              None if prior is None else np.asarray(prior, dtype=np.float16),
                                              prior_items))
        return True

    def extend(self, examples: Iterable[TrainingExample]) -> None:
        for ex in examples:
            self.add(ex.history, ex.next_item, ex.ts, ex.prior, ex.prior_items)

    def __len__(self) -> int:
        return len(self._examples)

    def __iter__(self) -> Iterator[TrainingExample]:
        return iter(self._examples)

    def sampling_probabilities(self) -> np.ndarray:
        """p_i of every example, oldest first (sums to 1)."""
        age = np.arange(len(self._examples) - 1, -1, -1, dtype=np.float64)
        if math.isinf(self.recency_half_life):
            weights = np.ones_like(age)
        else:
            weights = 0.5 ** (age / self.recency_half_life)
        return weights / weights.sum()

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> list[TrainingExample]:
        """``min(n, len)`` distinct examples drawn with the recency weights above."""
        rng = np.random.default_rng(rng)
        size = min(n, len(self._examples))
        if size == 0:
            return []
        picked = rng.choice(len(self._examples), size=size, replace=False, p=self.sampling_probabilities())
        return [self._examples[int(i)] for i in picked]

    def holdout(self, fraction: float) -> HoldoutSplit:
        """The most recent ``round(fraction * len)`` examples as holdout, the older ones as a
        training buffer (same settings): train on the past, judge on what came after it."""
        if not 0.0 <= fraction < 1.0:
            raise ValueError("fraction must be in [0, 1)")
        n_holdout = round(fraction * len(self._examples))
        examples = list(self._examples)
        cut = len(examples) - n_holdout
        train = TrainingBuffer(self.max_examples, self.recency_half_life)
        train.extend(examples[:cut])
        return HoldoutSplit(train, examples[cut:])


def decay_coefficients(history: Sequence[HistoryItem], half_life_s: float = DEFAULT_HALF_LIFE_S) -> np.ndarray:
    """c_j * w_j of every history entry, so that u = sum_j coef_j * e_j is the worker's vector.

    Replays :meth:`model.preference.PreferenceVector.learn_one` on scalars: before each event
    every earlier coefficient is multiplied by decay_factor(ts - last_ts) (1 for a late event),
    and last_ts is the latest ts so far. Decaying further to "now" would scale u by one common
    factor that u / ||u|| removes, so, like the worker, the vector stays at its last event.

    >>> decay_coefficients([("a", 1.0, 0), ("b", 1.0, 3_600_000)], half_life_s=3600.0).tolist()
    [0.5, 1.0]
    >>> decay_coefficients([("a", 2.0, 7_200_000), ("b", -1.0, 0)], half_life_s=3600.0).tolist()  # late event
    [2.0, -1.0]
    """
    coefficients = np.zeros(len(history), dtype=np.float64)
    last_ts: int | None = None
    for j, (_, weight, ts) in enumerate(history):
        if last_ts is not None:
            coefficients[:j] *= decay_factor(ts - last_ts, half_life_s)
        coefficients[j] = weight
        last_ts = ts if last_ts is None else max(last_ts, ts)
    return coefficients


def user_directions(histories: Sequence[Sequence[HistoryItem]], item_row: Mapping[str, int], item_embeddings,
                    half_life_s: float = DEFAULT_HALF_LIFE_S):
    """Worker preference directions u_b / ||u_b|| for a batch of histories, as torch tensors.

    ``item_embeddings`` (m, d) is a torch tensor (gradients flow through it) and ``item_row``
    maps an item id to its row; history entries of unknown items are skipped, as the worker
    never learns them. Returns (U (B, d), valid (B,) bool); a user with ||u|| < 1e-12 gets the
    zero vector and valid False, like :meth:`PreferenceVector.direction`.
    """
    import torch

    coefficient_matrix = torch.zeros(len(histories), item_embeddings.shape[0], dtype=torch.float64)
    for b, history in enumerate(histories):
        known = [entry for entry in history if entry[0] in item_row]
        if not known:
            continue
        rows = torch.tensor([item_row[entry[0]] for entry in known])
        coefficient_matrix[b].index_add_(0, rows, torch.from_numpy(decay_coefficients(known, half_life_s)))
    vectors = coefficient_matrix.to(item_embeddings.device, torch.float32) @ item_embeddings.float()
    norms = vectors.norm(dim=1, keepdim=True)
    valid = norms.squeeze(1) >= 1e-12
    directions = torch.where(valid.unsqueeze(1), vectors / norms.clamp(min=1e-12), torch.zeros_like(vectors))
    return directions, valid


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

        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=list(self.target_modules), bias="none")


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

    def __init__(self, encoder: TextEncoder | None = None, lora: LoraSettings | None = None, *,
                 adapter_dir: str | Path | None = None, trainable: bool = True) -> None:
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
                raise ValueError(f"the adapter in {adapter_dir} does not fit {encoder.name} as wrapped here "
                                 f"(written for another base or layout): {missing[0][:300]}")
            cfg = self.model.peft_config["default"]
            self.lora = LoraSettings(cfg.r, cfg.lora_alpha, cfg.lora_dropout, tuple(sorted(cfg.target_modules)))
        else:
            self.lora = lora or LoraSettings()
            self.model = get_peft_model(base, self.lora.to_peft())
        self.model.to(self.device).eval()
        self._pooled: dict[str, object] = {}  # text -> the frozen transformer's pooled output

    @classmethod
    def load_adapter(cls, adapter_dir: str | Path, encoder: TextEncoder | None = None,
                     trainable: bool = True) -> AdaptedEncoder:
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
        return self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                              return_tensors="pt").to(self.device)

    def embed(self, texts: Sequence[str], autocast_dtype=None):
        """Unit-norm float32 embeddings (len(texts), dim) as a torch tensor, with gradients.

        ``autocast_dtype`` (cuda only) runs the transformer in mixed precision; pooling and
        normalisation stay in float32."""
        import torch

        if self.lora.projection_only:
            pooled = self._base_pooled(texts)
            return torch.nn.functional.normalize(self.model.get_base_model().projection(pooled), p=2, dim=1)
        tokens = self._tokens(texts)
        autocast = (torch.autocast(device_type="cuda", dtype=autocast_dtype)
                    if autocast_dtype is not None else contextlib.nullcontext())
        with autocast, _attention_without_cudnn(self.device):
            hidden = self.model(**tokens)
        return mean_pool(hidden.float(), tokens["attention_mask"])

    def _base_pooled(self, texts: Sequence[str]):
        """The frozen transformer's unit-norm pooled output of each text (computed once per text,
        without gradients); the projection is linear, so projecting it equals projecting tokens."""
        import torch

        missing = list(dict.fromkeys(t for t in texts if t not in self._pooled))
        transformer = self.model.get_base_model().transformer
        was_training = transformer.training
        transformer.eval()  # no dropout: the cache is the frozen encoder's embedding
        try:
            with torch.inference_mode(False), torch.no_grad():  # plain tensors: training reuses them
                for start in range(0, len(missing), self.batch_size):
                    batch = missing[start : start + self.batch_size]
                    tokens = self._tokens(batch)
                    with _attention_without_cudnn(self.device):
                        hidden = transformer(**tokens).last_hidden_state
                    for text, vector in zip(batch, mean_pool(hidden.float(), tokens["attention_mask"])):
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


def infonce_loss(adapted: AdaptedEncoder, examples: Sequence[TrainingExample], item_text: Callable[[str], str],
                 temperature: float = 0.05, half_life_s: float = DEFAULT_HALF_LIFE_S, autocast_dtype=None):
    """InfoNCE of a batch: cross-entropy of softmax_b'(u_b . e_b' / tau) at the true next item.

    The candidates are the batch's distinct next items (two examples with the same next item
    share one column, so it is never a negative of itself); a candidate already in a user's
    history is masked for that user (the worker never serves it again) unless it is the answer.
    Every history item and candidate is embedded once, through the adapter, in one forward pass.
    Returns a scalar tensor, or None when no example has a usable user vector.
    """
    import torch

    candidates = list(dict.fromkeys(ex.next_item for ex in examples))
    column = {item: j for j, item in enumerate(candidates)}
    items = list(dict.fromkeys([*candidates, *(i for ex in examples for i, _, _ in ex.history)]))
    row = {item: r for r, item in enumerate(items)}
    embeddings = adapted.embed([item_text(i) for i in items], autocast_dtype=autocast_dtype)
    users, valid = user_directions([ex.history for ex in examples], row, embeddings, half_life_s)
    if not bool(valid.any()):
        return None
    logits = users @ embeddings[: len(candidates)].T / temperature
    seen = torch.zeros(logits.shape, dtype=torch.bool)  # built on the cpu, moved once
    for b, ex in enumerate(examples):
        for item, _, _ in ex.history:
            if item in column and item != ex.next_item:
                seen[b, column[item]] = True
    logits = logits.masked_fill(seen.to(logits.device), float("-inf"))
    labels = torch.tensor([column[ex.next_item] for ex in examples], device=logits.device)
    return torch.nn.functional.cross_entropy(logits[valid], labels[valid])


def priors_matrix(examples: Sequence[TrainingExample], catalogue: Sequence[str]) -> np.ndarray:
    """The examples' priors over ``catalogue`` as one float32 (len(examples), len(catalogue))
    matrix. A missing prior is 0 (the mean of a z-scored term); an item the example's catalogue
    lacked (it came later) gets that example's lowest prior, like an item without events.

    >>> ex = TrainingExample((("a", 1.0, 0),), "b", 1, np.array([2.0, -1.0], np.float16), ("b", "a"))
    >>> empty = TrainingExample((("a", 1.0, 0),), "b", 3, np.array([], np.float16), ())
    >>> priors_matrix([ex, TrainingExample((("a", 1.0, 0),), "b", 2), empty], ["a", "b", "new"]).tolist()
    [[-1.0, 2.0, -1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """
    out = np.zeros((len(examples), len(catalogue)), dtype=np.float32)
    columns: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # id(prior_items) -> (positions, found)
    for b, ex in enumerate(examples):
        if ex.prior is None or not len(ex.prior):  # none, or made before any item was known
            continue
        key = id(ex.prior_items)
        if key not in columns:
            where = {item: j for j, item in enumerate(ex.prior_items)}
            positions = np.array([where.get(item, -1) for item in catalogue], dtype=np.int64)
            columns[key] = (positions, positions >= 0)
        positions, found = columns[key]
        out[b] = np.where(found, ex.prior[positions].astype(np.float32), float(ex.prior.min()))
    return out


def _zscore(x):
    """(x - mean) / std of each row of a torch matrix (0 for a constant row), as the hybrid does."""
    import torch

    mean = x.mean(dim=1, keepdim=True)
    std = x.std(dim=1, keepdim=True, unbiased=False)
    return torch.where(std > 1e-9, (x - mean) / std.clamp(min=1e-9), torch.zeros_like(x))


def residual_loss(adapted: AdaptedEncoder, examples: Sequence[TrainingExample], catalogue: Sequence[str],
                  item_text: Callable[[str], str], content_weight: float = 0.3, temperature: float = 1.0,
                  half_life_s: float = DEFAULT_HALF_LIFE_S, autocast_dtype=None):
    """Cross-entropy of the hybrid's own ranking of the whole catalogue at the true next item:

        s_b(i) = prior_b(i) + b_content * z_i(u_b . e(i)),   L = -1/B sum_b log softmax_i(s_b / T)[next_b],

    where prior_b is the other terms' score when the example was made (``TrainingExample.prior``,
    over ``catalogue`` by :func:`priors_matrix`) and z standardises over the catalogue as the
    hybrid does. The prior is a constant: the gradient reaches the content term only where CF
    and trending do not already rank the next item on top, so the adapter learns what they miss
    instead of what they know. Items in a user's history are masked unless they are the answer;
    examples whose next item is not in ``catalogue`` are left out. Every catalogue item is
    embedded through the adapter, with gradients. Returns None when no example is usable.
    """
    import torch

    row = {item: r for r, item in enumerate(catalogue)}
    examples = [ex for ex in examples if ex.next_item in row]
    if not examples:
        return None
    embeddings = adapted.embed([item_text(i) for i in catalogue], autocast_dtype=autocast_dtype)
    users, valid = user_directions([ex.history for ex in examples], row, embeddings, half_life_s)
    if not bool(valid.any()):
        return None
    prior = torch.from_numpy(priors_matrix(examples, catalogue)).to(embeddings.device)
    logits = (prior + content_weight * _zscore(users @ embeddings.T)) / temperature
    seen = torch.zeros(logits.shape, dtype=torch.bool)
    for b, ex in enumerate(examples):
        rows = [row[i] for i, _, _ in ex.history if i in row and i != ex.next_item]
        seen[b, rows] = True
    logits = logits.masked_fill(seen.to(logits.device), float("-inf"))
    labels = torch.tensor([row[ex.next_item] for ex in examples], device=logits.device)
    return torch.nn.functional.cross_entropy(logits[valid], labels[valid])


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


def micro_finetune(adapted: AdaptedEncoder, buffer: TrainingBuffer, item_text: Callable[[str], str],
                   budget_s: float = 60.0, batch_size: int = 32, lr: float = 5e-4, max_steps: int | None = None,
                   rng: np.random.Generator | int | None = None, temperature: float = 0.05,
                   half_life_s: float = DEFAULT_HALF_LIFE_S, weight_decay: float = 0.01,
                   max_grad_norm: float = 1.0, catalogue: Sequence[str] | None = None,
                   content_weight: float = 0.3) -> FinetuneReport:
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
                loss = residual_loss(adapted, batch, catalogue, item_text, content_weight, temperature, half_life_s,
                                     autocast_dtype)
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
    return FinetuneReport(steps, examples_seen, losses[0] if losses else math.nan, losses[-1] if losses else math.nan,
                          seconds, device, adapted.trainable_parameters(), precision, losses)


def holdout_metrics(encode_items: Callable[[Sequence[str]], np.ndarray], holdout_examples: Sequence[TrainingExample],
                    catalogue_item_ids: Sequence[str], item_text: Callable[[str], str], k: int = 10,
                    half_life_s: float = DEFAULT_HALF_LIFE_S, content_weight: float | None = None) -> dict[str, float]:
    """Mean HR@k / NDCG@k of the holdout's next items, served as the worker would serve them.

    The catalogue is embedded with ``encode_items`` (``TextEncoder.encode`` for the current
    model, ``AdaptedEncoder.encode`` for a candidate); each user vector is rebuilt from the
    history (:func:`user_directions`), every catalogue item except the history's is ranked, and
    the top k is scored against the next item. The ranking is by u . e (content alone), or with
    ``content_weight`` by the hybrid's score prior(i) + b_content * z(u . e(i)) (the examples'
    priors, :func:`priors_matrix`; a user without a usable vector then keeps the prior). Examples whose next item is not in the catalogue are left out (``n`` counts the
    rest); without a prior, a user with no usable vector is a miss. Both encoders thus face the
    same examples: promote a candidate only if it does not lose.
    """
    import torch

    item_ids = list(catalogue_item_ids)
    row = {item: r for r, item in enumerate(item_ids)}
    examples = [ex for ex in holdout_examples if ex.next_item in row]
    if not examples or not item_ids:
        return {"hr": 0.0, "ndcg": 0.0, "n": 0}
    embeddings = np.asarray(encode_items([item_text(i) for i in item_ids]), dtype=np.float32)
    users, valid = user_directions([ex.history for ex in examples], row, torch.from_numpy(embeddings), half_life_s)
    scores = users.numpy() @ embeddings.T
    if content_weight is not None:
        scores = priors_matrix(examples, item_ids) + content_weight * _zscore(torch.from_numpy(scores)).numpy()
    k_eff = min(k, len(item_ids))
    hr = ndcg = 0.0
    for b, ex in enumerate(examples):
        if not bool(valid[b]) and content_weight is None:
            continue
        user_scores = scores[b]
        for item, _, _ in ex.history:
            if item in row:
                user_scores[row[item]] = -np.inf
        top = np.argpartition(-user_scores, k_eff - 1)[:k_eff]
        ranked = [item_ids[j] for j in top[np.argsort(-user_scores[top], kind="stable")]]
        hr += hr_at_k(ranked, {ex.next_item}, k)
        ndcg += ndcg_at_k(ranked, {ex.next_item}, k)
    return {"hr": hr / len(examples), "ndcg": ndcg / len(examples), "n": len(examples)}
