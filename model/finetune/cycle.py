"""The guarded fine-tune cycle, written once for the live learner and the offline replay.

One cycle (:func:`guarded_cycle`) on the examples seen so far:

1. **split**: the examples whose items are in the catalogue (:func:`usable_examples`); the newest
   ``schedule.holdout`` share is held out, the older ones train;
2. **clone** the adapter in service;
3. **train** the clone (:func:`model.finetune.training.micro_finetune` with
   :func:`model.finetune.objective.residual_loss`): at most ``schedule.max_steps`` batches of
   ``schedule.batch_size`` and ``schedule.budget_s`` seconds, seeded by (seed, cycle number);
4. **judge**: HR@k / NDCG@k of the served and the candidate space on the holdout, ranked by the
   hybrid score (:func:`model.finetune.guard.holdout_metrics`);
5. **promote** only if the candidate loses on neither: ``promote(candidate, vectors)`` (the
   learner stores and announces a version; the replay re-embeds its catalogue and users).

:class:`FinetuneSchedule` carries every knob of when and how hard a cycle runs; the learner
builds it from ``Settings`` (``Settings.finetune_schedule()``), whose defaults are this class's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from model.finetune.adapter import AdaptedEncoder
from model.finetune.examples import TrainingBuffer, TrainingExample
from model.finetune.guard import holdout_metrics
from model.finetune.training import FinetuneReport, micro_finetune


@dataclass(frozen=True)
class FinetuneSchedule:
    """When and how hard a fine-tune cycle trains, and how its candidate is judged.

    A cycle is due after every ``every_events`` events (or ``every_s`` seconds of service with
    new events: the live learner only, a replayed log's clock is not the service's) once
    ``min_examples`` usable examples are in the buffer of the newest ``buffer_size``; the newest
    ``holdout`` share is held out, the rest trains a clone of the adapter for at most
    ``max_steps`` batches of ``batch_size`` and at most ``budget_s`` seconds (AdamW at ``lr``,
    :func:`~model.finetune.objective.residual_loss` at ``temperature``); HR@k / NDCG@k on the holdout
    decide. A step cap inside the time box makes a cycle reproducible on an idle machine. The
    defaults were chosen on the first 30,000 MovieLens-100K events (docs/BENCHMARKS.md
    section 4) and are the live learner's defaults too.

    >>> FinetuneSchedule().every_events, FinetuneSchedule().max_steps, FinetuneSchedule().batch_size
    (2000, 100, 128)
    """

    every_events: int = 2_000
    every_s: float = 900.0
    budget_s: float = 60.0
    max_steps: int | None = 100
    batch_size: int = 128
    lr: float = 3e-3
    temperature: float = 1.0
    holdout: float = 0.1
    buffer_size: int = 10_000
    min_examples: int = 200
    k: int = 10

    def __post_init__(self) -> None:
        if self.every_events < 1 or self.batch_size < 2 or self.min_examples < 2 or self.k < 1:
            raise ValueError("every_events, k >= 1 and batch_size, min_examples >= 2 are needed")
        if not 0.0 < self.holdout < 1.0:
            raise ValueError("holdout must be in (0, 1)")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max_steps must be >= 1 (or None: the time box alone)")


@dataclass
class Cycle:
    """What one cycle did. ``outcome`` is promoted, rejected, skipped or failed; ``current`` /
    ``candidate`` are the holdout figures {hr, ndcg, n} of the served space and of the trained
    clone; ``version`` is what a promotion made (a stored version, or the replay's space name)."""

    number: int
    outcome: str
    trigger: str = ""
    detail: str = ""
    version: str | None = None
    at_event: int = 0
    train_examples: int = 0
    holdout_examples: int = 0
    steps: int = 0
    loss_first: float = math.nan
    loss_last: float = math.nan
    current: dict = field(default_factory=dict)
    candidate: dict = field(default_factory=dict)
    train_s: float = 0.0
    seconds: float = 0.0
    device: str = "cpu"
    precision: str = "fp32"
    trainable_params: int = 0
    examples_seen: int = 0

    def training(self) -> dict:
        """The training figures a stored adapter version records in its manifest."""
        return {
            "steps": self.steps,
            "examples": self.examples_seen,
            "loss_first": self.loss_first,
            "loss_last": self.loss_last,
            "train_seconds": round(self.train_s, 2),
            "device": self.device,
            "precision": self.precision,
            "trainable_params": self.trainable_params,
            "train_examples": self.train_examples,
            "holdout_examples": self.holdout_examples,
        }


def usable_examples(examples: Sequence[TrainingExample], catalogue: Mapping[str, str]) -> list[TrainingExample]:
    """Examples whose next item is in the catalogue, history cut to catalogue items (non-empty).

    >>> ex = TrainingExample((("a", 1.0, 0), ("gone", 1.0, 1)), "b", 2)
    >>> usable_examples([ex, TrainingExample((("gone", 1.0, 0),), "b", 3)], {"a": "A", "b": "B"})
    [TrainingExample(history=(('a', 1.0, 0),), next_item='b', ts=2)]
    """
    out = []
    for ex in examples:
        history = tuple(h for h in ex.history if h[0] in catalogue)
        if history and ex.next_item in catalogue:
            out.append(ex if len(history) == len(ex.history) else replace(ex, history=history))
    return out


#: promote(candidate, its vectors of the catalogue, the cycle so far) -> the new version's name
Promote = Callable[[AdaptedEncoder, np.ndarray, "Cycle"], str]


def guarded_cycle(
    adapter: AdaptedEncoder,
    examples: Sequence[TrainingExample],
    texts: Mapping[str, str],
    catalogue: Sequence[str],
    schedule: FinetuneSchedule,
    promote: Promote,
    *,
    number: int,
    content_weight: float,
    half_life_s: float,
    seed: int = 0,
    served_vectors: np.ndarray | None = None,
    trigger: str = "",
    at_event: int = 0,
) -> Cycle:
    """One guarded cycle (see the module docstring) on ``examples``, oldest first.

    ``catalogue`` lists the item ids to rank (the rows of ``served_vectors``, the space served
    now; None: ``adapter`` embeds ``texts``). ``promote(candidate, its vectors of catalogue, cycle)``
    runs only for a winning candidate and returns the new version's name. The batches and the
    LoRA dropout are seeded by (``seed``, ``number``): the same inputs give the same cycle.
    """
    import torch

    started = time.perf_counter()
    usable = usable_examples(examples, texts)
    base = Cycle(number, "skipped", trigger, at_event=at_event, device=str(adapter.device))
    if len(usable) < schedule.min_examples:
        base.detail = f"{len(usable)} usable examples < {schedule.min_examples}"
        base.seconds = time.perf_counter() - started
        return base
    buffer = TrainingBuffer(schedule.buffer_size)
    buffer.extend(usable)
    split = buffer.holdout(schedule.holdout)
    candidate = adapter.clone()
    on_cuda = str(candidate.device).startswith("cuda")
    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if on_cuda else []):
        torch.manual_seed(seed * 1_000_003 + number)  # LoRA dropout
        report = micro_finetune(
            candidate,
            split.train,
            texts.__getitem__,
            budget_s=schedule.budget_s,
            batch_size=schedule.batch_size,
            lr=schedule.lr,
            max_steps=schedule.max_steps,
            rng=np.random.default_rng([seed, number]),
            temperature=schedule.temperature,
            half_life_s=half_life_s,
            catalogue=list(catalogue),
            content_weight=content_weight,
        )
    catalogue_texts = [texts[i] for i in catalogue]
    served = served_vectors if served_vectors is not None else adapter.encode(catalogue_texts)
    candidate_vectors = candidate.encode(catalogue_texts)
    now = _judge(served, split.holdout, catalogue, texts, schedule.k, half_life_s, content_weight)
    new = _judge(candidate_vectors, split.holdout, catalogue, texts, schedule.k, half_life_s, content_weight)
    cycle = _record(base, report, len(split.train), len(split.holdout), now, new)
    if report.steps == 0 or new["n"] == 0:
        cycle.outcome, cycle.detail = "rejected", "no training step" if report.steps == 0 else "empty holdout"
    elif new["hr"] < now["hr"] or new["ndcg"] < now["ndcg"]:
        cycle.outcome, cycle.detail = "rejected", "the candidate loses on the holdout"
    else:
        cycle.version = promote(candidate, candidate_vectors, cycle)
        cycle.outcome = "promoted"
    cycle.seconds = time.perf_counter() - started
    return cycle


def _judge(
    vectors: np.ndarray,
    holdout,
    catalogue: Sequence[str],
    texts: Mapping[str, str],
    k: int,
    half_life_s: float,
    content_weight: float,
) -> dict:
    figures = holdout_metrics(
        lambda _texts: vectors, holdout, catalogue, texts.__getitem__, k, half_life_s, content_weight=content_weight
    )
    return {"hr": float(figures["hr"]), "ndcg": float(figures["ndcg"]), "n": int(figures["n"])}


def _record(base: Cycle, report: FinetuneReport, n_train: int, n_holdout: int, now: dict, new: dict) -> Cycle:
    return replace(
        base,
        train_examples=n_train,
        holdout_examples=n_holdout,
        steps=report.steps,
        loss_first=report.loss_first,
        loss_last=report.loss_last,
        current=now,
        candidate=new,
        train_s=report.seconds,
        device=report.device,
        precision=report.precision,
        trainable_params=report.trainable_params,
        examples_seen=report.examples_seen,
    )


def cycles_markdown(cycles: Sequence[Cycle], k: int = 10) -> str:
    """A markdown table of fine-tune cycles, one row per cycle.

    >>> print(cycles_markdown([Cycle(1, "rejected", at_event=500, train_examples=90, holdout_examples=10, steps=4,
    ...                              loss_first=3.2, loss_last=2.9, current={"hr": 0.1, "ndcg": 0.05, "n": 10},
    ...                              candidate={"hr": 0.0, "ndcg": 0.0, "n": 10}, train_s=1.5, seconds=2.0)]))
    | cycle | at event | outcome | train / holdout | steps | loss first -> last | holdout HR@10 now -> candidate | holdout NDCG@10 now -> candidate | train s | cycle s | promoted as |
    |---|---|---|---|---|---|---|---|---|---|---|
    | 1 | 500 | rejected | 90 / 10 | 4 | 3.200 -> 2.900 | 0.1000 -> 0.0000 | 0.0500 -> 0.0000 | 1.5 | 2.0 | - |
    """
    header = (
        f"| cycle | at event | outcome | train / holdout | steps | loss first -> last "
        f"| holdout HR@{k} now -> candidate | holdout NDCG@{k} now -> candidate | train s | cycle s "
        f"| promoted as |"
    )
    lines = [header, "|" + "---|" * (header.count(" | ") + 1)]
    for c in cycles:
        if not c.current:  # skipped or failed before judging
            cells = [str(c.number), f"{c.at_event:,}", c.outcome, "-", "-", "-", "-", "-", "-", f"{c.seconds:.1f}", "-"]
        else:
            cells = [
                str(c.number),
                f"{c.at_event:,}",
                c.outcome,
                f"{c.train_examples:,} / {c.holdout_examples:,}",
                str(c.steps),
                f"{c.loss_first:.3f} -> {c.loss_last:.3f}",
                f"{c.current['hr']:.4f} -> {c.candidate['hr']:.4f}",
                f"{c.current['ndcg']:.4f} -> {c.candidate['ndcg']:.4f}",
                f"{c.train_s:.1f}",
                f"{c.seconds:.1f}",
                c.version or "-",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
