"""The hybrid whose content part runs on a LoRA-adapted encoder that keeps learning from the
stream: micro-fine-tune cycles happen between events, as the learner runs them live."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np

from model.embedding.encoder import TextEncoder
from model.embedding.item_index import ItemIndex
from model.evaluation.online_hybrid import OnlineHybrid
from model.evaluation.protocol import Interaction
from model.finetune.adapter import AdaptedEncoder
from model.finetune.cycle import Cycle, FinetuneSchedule, guarded_cycle
from model.finetune.examples import NextItemExamples
from model.scoring.decay import DEFAULT_HALF_LIFE_S
from model.scoring.hybrid import HybridWeights
from model.user.state import UserState


class FinetunedHybrid:
    """:class:`OnlineHybrid` on an item space that a LoRA adapter bends towards behaviour.

    score(u, i) = b_content * z(cos(u, e_A(i))) + b_cf * z(cf(u, i)) + b_trend * z(pop(i)),

    where e_A is the encoder behind adapter A (at first a fresh adapter, which embeds like the
    base encoder) and u is the user's preference vector in that space. Events make (history ->
    next item) examples exactly as the learner does (:class:`NextItemExamples`), each with its
    prior: the CF and trending terms the user got just before the event. After every
    ``schedule.every_events`` events a cycle trains A' = clone(A) on the older examples to rank
    the next item by the whole hybrid score, with the prior held fixed (:func:`micro_finetune`
    with :func:`~model.finetune.objective.residual_loss`): the content term learns what CF and trending
    miss. A' is kept only if, ranking the newest ``holdout`` share by the hybrid score,

        HR@k(A') >= HR@k(A)  and  NDCG@k(A') >= NDCG@k(A)        (:func:`holdout_metrics`);

    on promotion every item is re-embedded, e <- e_A', and every user vector is rebuilt from the
    stored history in the new space (:meth:`UserState.rebuild`): two spaces never mix. The
    ``index`` passed in must hold the base encoder's embeddings of ``item_texts``; it is copied.
    Cycles run between two events (a live learner would run them beside the stream) and their
    time counts as learning time. ``cycles`` logs each one. Deterministic given ``seed`` on cpu.

    >>> from model.embedding.item_index import ItemInfo
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

    def __init__(
        self,
        index: ItemIndex,
        item_texts: Mapping[str, str],
        encoder: TextEncoder,
        weights: HybridWeights = HybridWeights(),
        schedule: FinetuneSchedule = FinetuneSchedule(),
        name: str = "hybrid-finetuned",
        half_life_s: float = DEFAULT_HALF_LIFE_S,
        history_size: int = 50,
        seed: int = 0,
    ) -> None:
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
        self.hybrid = OnlineHybrid(own_index, weights, name=name, half_life_s=half_life_s, history_size=history_size)
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
            self.examples.observe(
                event.user_id,
                event.item_id,
                event.type,
                event.value,
                event.ts,
                prior=lambda: self._prior(event.user_id),
            )
            self.hybrid.learn_one(event)
        if self._events % self.schedule.every_events == 0:
            self.run_cycle()

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = frozenset()) -> list[str]:
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
        catalogue = [info.item_id for info in self.index.infos]  # the rows the priors follow
        return guarded_cycle(
            self.adapter,
            list(self.examples.buffer),
            self.item_texts,
            catalogue,
            self.schedule,
            self._promote,
            number=len(self.cycles) + 1,
            content_weight=self.weights.content,
            half_life_s=self.hybrid.half_life_s,
            seed=self.seed,
            served_vectors=self.index.vectors,
            trigger=f"every {self.schedule.every_events} events",
            at_event=self._events,
        )

    def _promote(self, adapter: AdaptedEncoder, vectors: np.ndarray, _cycle: Cycle) -> str:
        """Serve ``adapter``'s space: every item re-embedded, every user rebuilt from history."""
        space = f"adapter-{len(self.cycles) + 1}"
        index = self.index
        index.upsert(list(index.infos), vectors, index.available.tolist())
        for state in self.states.values():
            state.rebuild(space, index.vector_of)
        self.adapter, self.space = adapter, space
        return space
