"""The learner's micro-fine-tune cycles: train a candidate LoRA adapter in the background,
promote it only if it does not lose on a recent holdout, then store and announce it.

One cycle (:meth:`AdapterTrainer.run_cycle`):

1. keep the examples whose items are in the catalogue; the newest ``holdout`` share is held out;
2. clone the adapter in service and train the clone, time-boxed (:func:`model.finetune.micro_finetune`
   with :func:`model.finetune.residual_loss`: the hybrid's ranking of the catalogue, the CF +
   trending prior of each example held fixed; cuda with mixed precision when present);
3. HR@10 / NDCG@10 of the current and the candidate adapter on the holdout, ranked by the
   hybrid score as the worker serves (:func:`model.finetune.holdout_metrics`);
4. promote only if the candidate does not lose on either: the catalogue embedded by the
   candidate, the adapter and the figures go into the store as a new version
   (kind ``adapter``), which is announced on ``model-updates``.

:meth:`AdapterTrainer.start_cycle` runs a cycle in a thread, so the learner keeps reading events.
"""

from __future__ import annotations

import io
import logging
import math
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from model.finetune import (
    AdaptedEncoder,
    TrainingBuffer,
    TrainingExample,
    holdout_metrics,
    micro_finetune,
)
from stream import metrics
from stream.model_store import ModelStore

log = logging.getLogger(__name__)

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
EMBEDDINGS_FILE = "item_embeddings.npz"


@dataclass
class CycleOutcome:
    """What one cycle did: ``outcome`` is promoted, rejected, failed or skipped."""

    outcome: str
    reason: str
    version: str | None = None
    current: dict = field(default_factory=dict)
    candidate: dict = field(default_factory=dict)
    finetune: dict = field(default_factory=dict)
    seconds: float = 0.0
    detail: str = ""


def embeddings_to_bytes(item_ids: Sequence[str], vectors: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, item_ids=np.array(list(item_ids), dtype=str), vectors=vectors.astype(np.float32))
    return buf.getvalue()


def embeddings_from_bytes(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {str(i): v for i, v in zip(z["item_ids"], z["vectors"])}


def adapter_files(adapted: AdaptedEncoder) -> dict[str, bytes]:
    """The adapter's files (config + safetensors, ~0.3 MB for MiniLM at r=8) as bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        adapted.save_adapter(tmp)
        return {name: (Path(tmp) / name).read_bytes() for name in ADAPTER_FILES}


def load_adapter_files(files: dict[str, bytes], base_encoder, trainable: bool = False) -> AdaptedEncoder:
    """An :class:`AdaptedEncoder` on ``base_encoder`` from a stored version's files."""
    with tempfile.TemporaryDirectory() as tmp:
        for name in ADAPTER_FILES:
            (Path(tmp) / name).write_bytes(files[name])
        return AdaptedEncoder.load_adapter(tmp, base_encoder, trainable=trainable)


def usable_examples(examples: Sequence[TrainingExample], catalogue: dict[str, str]) -> list[TrainingExample]:
    """Examples whose next item is in the catalogue, history cut to catalogue items (non-empty).

    >>> ex = TrainingExample((("a", 1.0, 0), ("gone", 1.0, 1)), "b", 2)
    >>> usable_examples([ex, TrainingExample((("gone", 1.0, 0),), "b", 3)], {"a": "A", "b": "B"})
    [TrainingExample(history=(('a', 1.0, 0),), next_item='b', ts=2)]
    """
    out = []
    for ex in examples:
        history = tuple(h for h in ex.history if h[0] in catalogue)
        if history and ex.next_item in catalogue:
            out.append(replace(ex, history=history))
    return out


class AdapterTrainer:
    """Owns the adapter in service and runs fine-tune cycles on demand (one at a time).

    ``base_encoder`` is the frozen encoder the workers use, or a function that loads it (then it
    is loaded on first need, off the learner's start-up path); ``current`` starts as the newest
    adapter announced (``resume``) or as a fresh adapter, which embeds exactly like the base.
    ``announce(version)`` tells the workers about a promoted version.
    """

    def __init__(self, store: ModelStore, announce: Callable[[str], object], base_encoder, *,
                 budget_s: float = 60.0, batch_size: int = 32, holdout: float = 0.1, half_life_s: float,
                 min_examples: int = 200, threads: int = 1, k: int = 10, lr: float = 3e-3, seed: int = 0,
                 content_weight: float = 0.3, temperature: float = 1.0) -> None:
        self.store = store
        self.announce = announce
        self._base_encoder = base_encoder if hasattr(base_encoder, "encode") else None
        self._load_base = base_encoder
        self.budget_s = budget_s
        self.batch_size = batch_size
        self.holdout = holdout
        self.half_life_s = half_life_s
        self.min_examples = min_examples
        self.threads = threads
        self.k = k
        self.lr = lr
        self.content_weight = content_weight
        self.temperature = temperature
        self.rng = np.random.default_rng(seed)
        self._current: AdaptedEncoder | None = None
        self.current_version: str | None = None
        self.outcomes: list[CycleOutcome] = []
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def base_encoder(self):
        with self._lock:
            if self._base_encoder is None:
                self._base_encoder = self._load_base()
            return self._base_encoder

    @property
    def current(self) -> AdaptedEncoder:
        """The adapter in service (a fresh one embeds exactly like the base encoder)."""
        if self._current is None:
            self._current = AdaptedEncoder(self.base_encoder)
        return self._current

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def follow(self, version: str) -> bool:
        """Continue from a stored adapter version (after a restart, or a rollback by ops)."""
        if version == self.current_version or self.busy:
            return False
        adapted = load_adapter_files(self.store.load(version), self.base_encoder, trainable=True)
        with self._lock:
            self._current, self.current_version = adapted, version
        log.info("fine-tuning now continues from adapter %s", version)
        return True

    def start_cycle(self, examples: Sequence[TrainingExample], catalogue: dict[str, str], reason: str) -> bool:
        """Run :meth:`run_cycle` in a background thread; False if one is already running."""
        if self.busy:
            return False
        self._thread = threading.Thread(target=self.run_cycle, args=(list(examples), dict(catalogue), reason),
                                        name="finetune", daemon=True)
        self._thread.start()
        return True

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def run_cycle(self, examples: Sequence[TrainingExample], catalogue: dict[str, str], reason: str) -> CycleOutcome:
        """One guarded fine-tune cycle; never raises (a failure is counted and logged)."""
        start = time.perf_counter()
        try:
            outcome = self._cycle(examples, catalogue, reason)
        except Exception as exc:  # a failed cycle must not take the learner down
            log.exception("fine-tune cycle failed")
            outcome = CycleOutcome("failed", reason, detail=f"{type(exc).__name__}: {exc}")
        outcome.seconds = time.perf_counter() - start
        if outcome.outcome != "skipped":
            metrics.FINETUNE_CYCLES.labels(outcome.outcome).inc()
            metrics.FINETUNE_SECONDS.observe(outcome.seconds)
        log.info("fine-tune cycle (%s): %s in %.1fs; holdout current %s candidate %s %s", reason, outcome.outcome,
                 outcome.seconds, outcome.current, outcome.candidate, outcome.detail)
        self.outcomes.append(outcome)
        return outcome

    def _cycle(self, examples: Sequence[TrainingExample], catalogue: dict[str, str], reason: str) -> CycleOutcome:
        import torch

        torch.set_num_threads(self.threads)
        usable = usable_examples(examples, catalogue)
        if len(usable) < self.min_examples:
            return CycleOutcome("skipped", reason, detail=f"{len(usable)} usable examples < {self.min_examples}")
        buffer = TrainingBuffer(max_examples=len(usable))
        buffer.extend(usable)
        split = buffer.holdout(self.holdout)
        self.current  # noqa: B018 - loads the base encoder and a fresh adapter on first use
        with self._lock:
            current, parent = self._current, self.current_version
        candidate = current.clone()
        item_ids = sorted(catalogue)
        report = micro_finetune(candidate, split.train, catalogue.__getitem__, budget_s=self.budget_s,
                                batch_size=self.batch_size, lr=self.lr, rng=self.rng, half_life_s=self.half_life_s,
                                temperature=self.temperature, catalogue=item_ids, content_weight=self.content_weight)
        metrics.FINETUNE_EXAMPLES.inc(report.examples_seen)
        if not math.isnan(report.loss_last):
            metrics.FINETUNE_LOSS.set(report.loss_last)
        finetune = {"steps": report.steps, "examples": report.examples_seen, "loss_first": report.loss_first,
                    "loss_last": report.loss_last, "train_seconds": round(report.seconds, 2),
                    "device": report.device, "precision": report.precision,
                    "trainable_params": report.trainable_params, "train_examples": len(split.train),
                    "holdout_examples": len(split.holdout)}
        embedded: dict[str, np.ndarray] = {}

        def encode_with_candidate(texts: Sequence[str]) -> np.ndarray:
            embedded["vectors"] = candidate.encode(texts)
            return embedded["vectors"]

        now = holdout_metrics(current.encode, split.holdout, item_ids, catalogue.__getitem__, self.k, self.half_life_s,
                              self.content_weight)
        new = holdout_metrics(encode_with_candidate, split.holdout, item_ids, catalogue.__getitem__, self.k,
                              self.half_life_s, self.content_weight)
        figures = {"current": _rounded(now), "candidate": _rounded(new)}
        if report.steps == 0 or new["n"] == 0 or new["hr"] < now["hr"] or new["ndcg"] < now["ndcg"]:
            return CycleOutcome("rejected", reason, None, figures["current"], figures["candidate"], finetune,
                                detail="the candidate loses on the holdout" if new["n"] else "empty holdout")
        vectors = embedded.get("vectors")
        if vectors is None:
            vectors = candidate.encode([catalogue[i] for i in item_ids])
        files = {**adapter_files(candidate), EMBEDDINGS_FILE: embeddings_to_bytes(item_ids, vectors)}
        manifest = self.store.save(files, kind="adapter", metrics={
            "base_encoder": self.base_encoder.name, "dim": int(vectors.shape[1]), "items": len(item_ids),
            "parent": parent, "trigger": reason, "holdout": {"k": self.k, "n": new["n"], **figures},
            "finetune": finetune,
        })
        with self._lock:
            self._current, self.current_version = candidate, manifest.version
        self.announce(manifest.version)
        return CycleOutcome("promoted", reason, manifest.version, figures["current"], figures["candidate"], finetune)


def _rounded(figures: dict) -> dict:
    return {key: round(float(value), 4) if key != "n" else int(value) for key, value in figures.items()}


def prepare_adapter_space(files: dict[str, bytes], manifest_metrics: dict, base_encoder, index,
                          texts: dict[str, str]):
    """Worker side of a promotion, off the event loop: the adapted encoder and the item index in
    its space (same rows as ``index``; vectors from the version's embeddings, items it lacks
    embedded by the adapter). Raises SnapshotError("incompatible") for another base encoder."""
    from stream.model_store import SnapshotError

    base = manifest_metrics.get("base_encoder")
    if base != base_encoder.name:
        raise SnapshotError("incompatible", f"adapter trained on {base!r}, this worker embeds with {base_encoder.name!r}")
    try:
        encoder = load_adapter_files(files, base_encoder)
        stored = embeddings_from_bytes(files[EMBEDDINGS_FILE])
    except (KeyError, ValueError, OSError) as exc:
        raise SnapshotError("corrupt", f"unreadable adapter version ({exc})") from None
    ids = [info.item_id for info in index.infos]
    vectors = np.zeros((len(ids), encoder.dim), dtype=np.float32)
    missing = []
    for row, item_id in enumerate(ids):
        vector = stored.get(item_id)
        if vector is not None:
            vectors[row] = vector
        elif item_id in texts:
            missing.append(row)
    if missing:
        vectors[missing] = encoder.encode([texts[ids[row]] for row in missing])
    return encoder, index.respaced(vectors)
