"""The learner's micro-fine-tune cycles, in a background thread: the guarded cycle of
:mod:`model.finetune.cycle` (the one the replay runs), whose promotion stores the adapter and the
catalogue embedded by it as a new version (kind ``adapter``) and announces it on
``model-updates``; and the worker side of a promotion (:func:`prepare_adapter_space`).

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
from pathlib import Path

import numpy as np

from model.finetune.adapter import AdaptedEncoder
from model.finetune.cycle import Cycle, FinetuneSchedule, guarded_cycle
from model.finetune.examples import TrainingExample
from stream import metrics
from stream.model_store import ModelStore

log = logging.getLogger(__name__)

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
EMBEDDINGS_FILE = "item_embeddings.npz"


def embeddings_to_bytes(item_ids: Sequence[str], vectors: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, item_ids=np.array(list(item_ids), dtype=str), vectors=vectors.astype(np.float32))
    return buf.getvalue()


def embeddings_from_bytes(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {str(i): v for i, v in zip(z["item_ids"], z["vectors"], strict=False)}


def adapter_files(adapted: AdaptedEncoder) -> dict[str, bytes]:
    """The adapter's files (config + safetensors, ~0.1 MB for MiniLM at r=32 on the projection) as bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        adapted.save_adapter(tmp)
        return {name: (Path(tmp) / name).read_bytes() for name in ADAPTER_FILES}


def load_adapter_files(files: dict[str, bytes], base_encoder, trainable: bool = False) -> AdaptedEncoder:
    """An :class:`AdaptedEncoder` on ``base_encoder`` from a stored version's files."""
    with tempfile.TemporaryDirectory() as tmp:
        for name in ADAPTER_FILES:
            (Path(tmp) / name).write_bytes(files[name])
        return AdaptedEncoder.load_adapter(tmp, base_encoder, trainable=trainable)


class AdapterTrainer:
    """Owns the adapter in service and runs :func:`model.finetune.cycle.guarded_cycle` on demand
    (one at a time), with the same :class:`FinetuneSchedule` the replay uses.

    ``base_encoder`` is the frozen encoder the workers use, or a function that loads it (then it
    is loaded on first need, off the learner's start-up path); ``current`` starts as the newest
    adapter announced (``follow``) or as a fresh adapter, which embeds exactly like the base.
    ``announce(version)`` tells the workers about a promoted version.
    """

    def __init__(
        self,
        store: ModelStore,
        announce: Callable[[str], object],
        base_encoder,
        schedule: FinetuneSchedule,
        *,
        half_life_s: float,
        content_weight: float,
        threads: int = 1,
        seed: int = 0,
    ) -> None:
        self.store = store
        self.announce = announce
        self._base_encoder = base_encoder if hasattr(base_encoder, "encode") else None
        self._load_base = base_encoder
        self.schedule = schedule
        self.half_life_s = half_life_s
        self.content_weight = content_weight
        self.threads = threads
        self.seed = seed
        self._current: AdaptedEncoder | None = None
        self.current_version: str | None = None
        self.cycles: list[Cycle] = []
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

    def start_cycle(
        self, examples: Sequence[TrainingExample], catalogue: dict[str, str], reason: str, at_event: int = 0
    ) -> bool:
        """Run :meth:`run_cycle` in a background thread; False if one is already running."""
        if self.busy:
            return False
        self._thread = threading.Thread(
            target=self.run_cycle,
            args=(list(examples), dict(catalogue), reason, at_event),
            name="finetune",
            daemon=True,
        )
        self._thread.start()
        return True

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def run_cycle(
        self, examples: Sequence[TrainingExample], catalogue: dict[str, str], reason: str, at_event: int = 0
    ) -> Cycle:
        """One guarded fine-tune cycle; never raises (a failure is counted and logged)."""
        import torch

        started = time.perf_counter()
        number = len(self.cycles) + 1
        try:
            torch.set_num_threads(self.threads)
            self.current  # noqa: B018 - loads the base encoder and a fresh adapter on first use
            with self._lock:
                current, parent = self._current, self.current_version
            assert current is not None  # self.current set it above, and it is never reset to None
            item_ids = sorted(catalogue)

            def promote(candidate: AdaptedEncoder, vectors: np.ndarray, cycle: Cycle) -> str:
                return self._store(candidate, vectors, item_ids, parent, cycle)

            cycle = guarded_cycle(
                current,
                examples,
                catalogue,
                item_ids,
                self.schedule,
                promote,
                number=number,
                content_weight=self.content_weight,
                half_life_s=self.half_life_s,
                seed=self.seed,
                trigger=reason,
                at_event=at_event,
            )
        except Exception as exc:  # a failed cycle must not take the learner down
            log.exception("fine-tune cycle failed")
            cycle = Cycle(number, "failed", reason, f"{type(exc).__name__}: {exc}", at_event=at_event)
        cycle.seconds = time.perf_counter() - started
        if cycle.outcome != "skipped":
            metrics.FINETUNE_CYCLES.labels(cycle.outcome).inc()
            metrics.FINETUNE_SECONDS.observe(cycle.seconds)
            metrics.FINETUNE_EXAMPLES.inc(cycle.examples_seen)
            if not math.isnan(cycle.loss_last):
                metrics.FINETUNE_LOSS.set(cycle.loss_last)
        log.info(
            "fine-tune cycle (%s): %s in %.1fs (cycle %d); holdout current %s candidate %s %s",
            reason,
            cycle.outcome,
            cycle.seconds,
            number,
            _rounded(cycle.current),
            _rounded(cycle.candidate),
            cycle.detail,
        )
        self.cycles.append(cycle)
        return cycle

    def _store(
        self, candidate: AdaptedEncoder, vectors: np.ndarray, item_ids: list[str], parent: str | None, cycle: Cycle
    ) -> str:
        """Save a winning candidate as a new ``adapter`` version, serve it here and announce it."""
        holdout = {
            "k": self.schedule.k,
            "n": cycle.candidate["n"],
            "current": _rounded(cycle.current),
            "candidate": _rounded(cycle.candidate),
        }
        files = {**adapter_files(candidate), EMBEDDINGS_FILE: embeddings_to_bytes(item_ids, vectors)}
        manifest = self.store.save(
            files,
            kind="adapter",
            metrics={
                "base_encoder": self.base_encoder.name,
                "dim": int(vectors.shape[1]),
                "items": len(item_ids),
                "parent": parent,
                "trigger": cycle.trigger,
                "holdout": holdout,
                "finetune": cycle.training(),
            },
        )
        with self._lock:
            self._current, self.current_version = candidate, manifest.version
        self.announce(manifest.version)
        return manifest.version


def _rounded(figures: dict) -> dict:
    return {key: round(float(value), 4) if key != "n" else int(value) for key, value in figures.items()}


def prepare_adapter_space(files: dict[str, bytes], manifest_metrics: dict, base_encoder, index, texts: dict[str, str]):
    """Worker side of a promotion, off the event loop: the adapted encoder and the item index in
    its space (same rows as ``index``; vectors from the version's embeddings, items it lacks
    embedded by the adapter). Raises SnapshotError("incompatible") for another base encoder."""
    from stream.model_store import SnapshotError

    base = manifest_metrics.get("base_encoder")
    if base != base_encoder.name:
        raise SnapshotError(
            "incompatible", f"adapter trained on {base!r}, this worker embeds with {base_encoder.name!r}"
        )
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
