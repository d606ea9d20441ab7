"""The hybrid whose content part runs on a LoRA-adapted encoder that keeps learning from the
stream: micro-fine-tune cycles happen between events, as the learner runs them live."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from model.encoder import TextEncoder
from model.finetune import (
    DEFAULT_HALF_LIFE_S,
    AdaptedEncoder,
    holdout_metrics,
    micro_finetune,
)
from model.hybrid import HybridWeights
from model.item_index import ItemIndex
from model.online_hybrid import OnlineHybrid
from model.recommender import Interaction
from model.training_examples import NextItemExamples
from model.user_state import UserState


@dataclass(frozen=True)
class FinetuneSchedule:
    """When and how hard a cycle trains, and how its candidate is judged.

    A cycle runs after every ``every_events`` events once ``min_examples`` examples are in the
    buffer (the newest ``buffer_size``); the newest ``holdout`` share is held out, the rest
    trains a clone of the adapter for at most ``max_steps`` batches of ``batch_size`` and at most
    ``budget_s`` seconds (AdamW at ``lr``, :func:`~model.finetune.residual_loss` at
    ``temperature``); the hybrid's HR@k / NDCG@k on the holdout decide. A fixed ``max_steps``
    inside the budget makes a cycle deterministic. The defaults were chosen on the first 30,000
    MovieLens-100K events (docs/BENCHMARKS.md section 4).
    """

    every_events: int = 2_000
    budget_s: float = 60.0
    max_steps: int | None = 100
    batch_size: int = 128
    lr: float = 3e-3
    temperature: float = 1.0
    buffer_size: int = 10_000
    holdout: float = 0.1
    min_examples: int = 200
    k: int = 10

    def __post_init__(self) -> None:
        if self.every_events < 1 or self.batch_size < 2 or self.min_examples < 2 or self.k < 1:
            raise ValueError("every_events, k >= 1 and batch_size, min_examples >= 2 are needed")
        if not 0.0 < self.holdout < 1.0:
            raise ValueError("holdout must be in (0, 1)")


@dataclass(frozen=True)
class Cycle:
    """One fine-tune cycle of the replay: ``outcome`` is promoted, rejected or skipped.

    ``current`` / ``candidate`` are the holdout figures {hr, ndcg, n} of the adapter in service
    and of the trained clone; ``space`` is the embedding space served after the cycle.
    """

    number: int
    at_event: int
    outcome: str
    train_examples: int
    holdout_examples: int
    steps: int
    loss_first: float
    loss_last: float
    current: dict
    candidate: dict
    train_s: float
    seconds: float
    device: str
    space: str


class FinetunedHybrid:
    """:class:`OnlineHybrid` on an item space that a LoRA adapter bends towards behaviour.

    score(u, i) = b_content * z(cos(u, e_A(i))) + b_cf * z(cf(u, i)) + b_trend * z(pop(i)),

    where e_A is the encoder behind adapter A (at first a fresh adapter, which embeds like the
    base encoder) and u is the user's preference vector in that space. Events make (history ->
    next item) examples exactly as the learner does (:class:`NextItemExamples`), each with its
    prior: the CF and trending terms the user got just before the event. After every
    ``schedule.every_events`` events a cycle trains A' = clone(A) on the older examples to rank
    the next item by the whole hybrid score, with the prior held fixed (:func:`micro_finetune`
    with :func:`~model.finetune.residual_loss`): the content term learns what CF and trending
    miss. A' is kept only if, ranking the newest ``holdout`` share by the hybrid score,

        HR@k(A') >= HR@k(A)  and  NDCG@k(A') >= NDCG@k(A)        (:func:`holdout_metrics`);

    on promotion every item is re-embedded, e <- e_A', and every user vector is rebuilt from the
    stored history in the new space (:meth:`UserState.rebuild`): two spaces never mix. The
    ``index`` passed in must hold the base encoder's embeddings of ``item_texts``; it is copied.
    Cycles run between two events (a live learner would run them beside the stream) and their
    time counts as learning time. ``cycles`` logs each one. Deterministic given ``seed`` on cpu.

    >>> from model.item_index import ItemInfo
    >>> texts = {"a": "Toy Story (1995). Animation", "b": "Heat (1995). Action", "c": "Emma (1996). Drama"}
    >>> encoder = TextEncoder(device="cpu")
    >>> index = ItemIndex(encoder.dim)
    >>> index.upsert([ItemInfo(i, i) for i in texts], encoder.encode(list(texts.values())))
    >>> schedule = FinetuneSchedule(every_events=4, max_steps=1, batch_size=2, min_examples=2, holdout=0.5)
    >>> model = FinetunedHybrid(index, texts, encoder, schedule=schedule)
    >>> for n, (user, item) in enumerate([("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b")]):
    ...     model.learn_one(Interaction(user, item, ts=n, type="click"))
    >>> [(c.at_event, c.steps, c.train_examples, c.holdout_examples) for c in model.cycles]
    [(4, 1, 1, 1)]
    """

    def __init__(self, index: ItemIndex, item_texts: Mapping[str, str], encoder: TextEncoder,
                 weights: HybridWeights = HybridWeights(), schedule: FinetuneSchedule = FinetuneSchedule(),
                 name: str = "hybrid-finetuned", half_life_s: float = DEFAULT_HALF_LIFE_S,
                 history_size: int = 50, seed: int = 0) -> None:
        import torch

        missing = [info.item_id for info in index.infos if info.item_id not in item_texts]
        if missing:
            raise ValueError(f"no text for {len(missing)} indexed items, e.g. {missing[:3]}")
        self.name = name
        self.item_texts = dict(item_texts)
        self.schedule = schedule
        self.seed = seed
        own_index = ItemIndex(index.dim, capacity=max(1, len(index)))
        own_index.upsert(list(index.infos), index.vectors.copy(), index.available.tolist())
        self.hybrid = OnlineHybrid(own_index, weights, name=name, half_life_s=half_life_s,
                                   history_size=history_size)
        self.weights = weights
        self.examples = NextItemExamples(max_examples=schedule.buffer_size, history_size=history_size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.adapter = AdaptedEncoder(encoder)
        self.space = "base"
        self.cycles: list[Cycle] = []
        self._events = 0
        self._prior_items: tuple[str, ...] = ()

    @property
    def index(self) -> ItemIndex:
        """The item space served now (this model's own copy)."""
        return self.hybrid.index

    @property
    def states(self) -> dict[str, UserState]:
        return self.hybrid.states

    def learn_one(self, event: Interaction) -> None:
        self._events += 1
        if event.item_id in self.index:  # as the worker: an unknown item never joins a history
            self.examples.observe(event.user_id, event.item_id, event.type, event.value, event.ts,
                                  prior=lambda: self._prior(event.user_id))
            self.hybrid.learn_one(event)
        if self._events % self.schedule.every_events == 0:
            self.run_cycle()

    def recommend(self, user_id: str, k: int, exclude: set[str] = frozenset()) -> list[str]:
        return self.hybrid.recommend(user_id, k, exclude)

    def score(self, user_id: str, item_ids: Sequence[str]) -> np.ndarray:
        return self.hybrid.score(user_id, item_ids)

    def _prior(self, user_id: str) -> tuple[np.ndarray, tuple[str, ...]]:
        """CF + trending of the user's next list, before the event is learned (the example's prior)."""
        if len(self._prior_items) != len(self.index):
            self._prior_items = tuple(info.item_id for info in self.index.infos)
        return self.hybrid.scorer.other_terms([self.hybrid._state(user_id)])[0], self._prior_items

    def run_cycle(self) -> Cycle:
        """One guarded cycle on the examples so far (see the class docstring), logged in ``cycles``."""
        cycle = self._cycle()
        self.cycles.append(cycle)
        return cycle

    def _cycle(self) -> Cycle:
        import torch

        started = time.perf_counter()
        number = len(self.cycles) + 1
        schedule, buffer = self.schedule, self.examples.buffer
        if len(buffer) < schedule.min_examples:
            return Cycle(number, self._events, "skipped", 0, 0, 0, math.nan, math.nan, {}, {}, 0.0,
                         time.perf_counter() - started, str(self.adapter.device), self.space)
        split = buffer.holdout(schedule.holdout)
        catalogue = [info.item_id for info in self.index.infos]  # the rows the priors follow
        candidate = self.adapter.clone()
        on_cuda = str(candidate.device).startswith("cuda")
        with torch.random.fork_rng(devices=[torch.cuda.current_device()] if on_cuda else []):
            torch.manual_seed(self.seed * 1_000_003 + number)  # LoRA dropout
            report = micro_finetune(candidate, split.train, self.item_texts.__getitem__, budget_s=schedule.budget_s,
                                    batch_size=schedule.batch_size, lr=schedule.lr, max_steps=schedule.max_steps,
                                    rng=np.random.default_rng([self.seed, number]),
                                    temperature=schedule.temperature, half_life_s=self.hybrid.half_life_s,
                                    catalogue=catalogue, content_weight=self.weights.content)
        candidate_vectors = candidate.encode([self.item_texts[i] for i in catalogue])
        now = self._judge(self.index.vectors, split.holdout, catalogue)
        new = self._judge(candidate_vectors, split.holdout, catalogue)
        promoted = report.steps > 0 and new["n"] > 0 and new["hr"] >= now["hr"] and new["ndcg"] >= now["ndcg"]
        if promoted:
            self._promote(candidate, candidate_vectors, f"adapter-{number}")
        return Cycle(number, self._events, "promoted" if promoted else "rejected", len(split.train),
                     len(split.holdout), report.steps, report.loss_first, report.loss_last, now, new, report.seconds,
                     time.perf_counter() - started, report.device, self.space)

    def _judge(self, vectors: np.ndarray, holdout, item_ids: list[str]) -> dict:
        figures = holdout_metrics(lambda _texts: vectors, holdout, item_ids, self.item_texts.__getitem__,
                                  self.schedule.k, self.hybrid.half_life_s, content_weight=self.weights.content)
        return {"hr": float(figures["hr"]), "ndcg": float(figures["ndcg"]), "n": int(figures["n"])}

    def _promote(self, adapter: AdaptedEncoder, vectors: np.ndarray, space: str) -> None:
        """Serve ``adapter``'s space: every item re-embedded, every user rebuilt from history."""
        index = self.index
        index.upsert(list(index.infos), vectors, index.available.tolist())
        for state in self.states.values():
            state.rebuild(space, index.vector_of)
        self.adapter, self.space = adapter, space


def cycles_markdown(cycles: Sequence[Cycle], k: int = 10) -> str:
    """A markdown table of a replay's fine-tune cycles, one row per cycle.

    >>> print(cycles_markdown([Cycle(1, 500, "rejected", 90, 10, 4, 3.2, 2.9, {"hr": 0.1, "ndcg": 0.05, "n": 10},
    ...                              {"hr": 0.0, "ndcg": 0.0, "n": 10}, 1.5, 2.0, "cpu", "base")]))
    | cycle | at event | outcome | train / holdout | steps | loss first -> last | holdout HR@10 now -> candidate | holdout NDCG@10 now -> candidate | train s | cycle s | space |
    |---|---|---|---|---|---|---|---|---|---|---|
    | 1 | 500 | rejected | 90 / 10 | 4 | 3.200 -> 2.900 | 0.1000 -> 0.0000 | 0.0500 -> 0.0000 | 1.5 | 2.0 | base |
    """
    header = (f"| cycle | at event | outcome | train / holdout | steps | loss first -> last "
              f"| holdout HR@{k} now -> candidate | holdout NDCG@{k} now -> candidate | train s | cycle s | space |")
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for c in cycles:
        if c.outcome == "skipped":
            cells = [str(c.number), f"{c.at_event:,}", c.outcome, "-", "-", "-", "-", "-", "-", f"{c.seconds:.1f}",
                     c.space]
        else:
            cells = [str(c.number), f"{c.at_event:,}", c.outcome, f"{c.train_examples:,} / {c.holdout_examples:,}",
                     str(c.steps), f"{c.loss_first:.3f} -> {c.loss_last:.3f}",
                     f"{c.current['hr']:.4f} -> {c.candidate['hr']:.4f}",
                     f"{c.current['ndcg']:.4f} -> {c.candidate['ndcg']:.4f}", f"{c.train_s:.1f}", f"{c.seconds:.1f}",
                     c.space]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
