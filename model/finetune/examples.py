"""Training examples for the adapter, cut from the event stream as the worker sees it: one
(history -> next item) :class:`TrainingExample` per event with w > 0, kept in a bounded,
recency-weighted :class:`TrainingBuffer` by :class:`NextItemExamples`."""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from model.user.preference import event_weight

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

    def add(
        self,
        history: Iterable[HistoryItem],
        next_item: str,
        ts: int,
        prior: np.ndarray | None = None,
        prior_items: tuple[str, ...] | None = None,
    ) -> bool:
        """Keep one example (dropping the oldest when full); False for an empty history."""
        entries = tuple((str(i), float(w), int(t)) for i, w, t in history)
        if not entries:
            return False
        if prior is not None and (prior_items is None or len(prior_items) != len(prior)):
            raise ValueError("a prior needs prior_items of the same length")
        self._examples.append(
            TrainingExample(
                entries,
                str(next_item),
                int(ts),
                None if prior is None else np.asarray(prior, dtype=np.float16),
                prior_items,
            )
        )
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


class NextItemExamples:
    """For each user, (recent history -> next item) examples in a bounded training buffer.

    The history is what the worker stores for the user: the last ``history_size`` events as
    (item_id, w(type, value), ts). An event with w > 0 on an item is a "next item" for the
    history before it (turned-down items teach nothing about what a user picks); every event
    then joins the history. At most ``max_users`` histories are kept (least recently active
    users are dropped first), so memory is bounded however many users come and go.

    >>> examples = NextItemExamples(max_examples=10)
    >>> for n, (item, kind) in enumerate([("a", "click"), ("b", "dislike"), ("c", "purchase")]):
    ...     _ = examples.observe("u1", item, kind, None, ts=n)
    >>> [(ex.history, ex.next_item) for ex in examples.buffer]
    [((('a', 2.0, 0), ('b', -4.0, 1)), 'c')]
    >>> examples.forget("u1"); examples.users
    0
    """

    def __init__(self, max_examples: int = 10_000, history_size: int = 50, max_users: int = 200_000) -> None:
        self.buffer = TrainingBuffer(max_examples)
        self.history_size = history_size
        self.max_users = max_users
        self._histories: OrderedDict[str, deque] = OrderedDict()
        self.added = 0  # examples added since the start (the buffer keeps the newest)

    @property
    def users(self) -> int:
        return len(self._histories)

    def observe(
        self,
        user_id: str,
        item_id: str,
        event_type: str,
        value: float | None,
        ts: int,
        prior: Callable[[], tuple[np.ndarray, tuple[str, ...]]] | None = None,
    ) -> bool:
        """Fold one event in; True when it made a training example. ``prior`` is called only
        then: (prior, prior_items) of the example (:class:`~model.finetune.examples.TrainingExample`)."""
        weight = event_weight(event_type, value)
        history = self._histories.get(user_id)
        if history is None:
            history = self._histories[user_id] = deque(maxlen=self.history_size)
            while len(self._histories) > self.max_users:
                self._histories.popitem(last=False)
        else:
            self._histories.move_to_end(user_id)
        made = (
            weight > 0
            and len(history) > 0
            and self.buffer.add(history, item_id, ts, *(prior() if prior is not None else ()))
        )
        history.append((item_id, weight, ts))
        self.added += made
        return made

    def forget(self, user_id: str) -> None:
        """Erase a user's history (their past examples carry no id and stay anonymous)."""
        self._histories.pop(user_id, None)
