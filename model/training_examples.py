"""Training examples for the adapter, cut from the event stream as the worker sees it."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable

import numpy as np

from model.finetune import TrainingBuffer
from model.preference import event_weight


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

    def observe(self, user_id: str, item_id: str, event_type: str, value: float | None, ts: int,
                prior: Callable[[], tuple[np.ndarray, tuple[str, ...]]] | None = None) -> bool:
        """Fold one event in; True when it made a training example. ``prior`` is called only
        then: (prior, prior_items) of the example (:class:`~model.finetune.TrainingExample`)."""
        weight = event_weight(event_type, value)
        history = self._histories.get(user_id)
        if history is None:
            history = self._histories[user_id] = deque(maxlen=self.history_size)
            while len(self._histories) > self.max_users:
                self._histories.popitem(last=False)
        else:
            self._histories.move_to_end(user_id)
        made = weight > 0 and len(history) > 0 and self.buffer.add(history, item_id, ts,
                                                                    *(prior() if prior is not None else ()))
        history.append((item_id, weight, ts))
        self.added += made
        return made

    def forget(self, user_id: str) -> None:
        """Erase a user's history (their past examples carry no id and stay anonymous)."""
        self._histories.pop(user_id, None)
