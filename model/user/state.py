"""Everything a worker remembers about one user, and its compact binary form for a table."""

from __future__ import annotations

import json
import struct
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from model.scoring.decay import DEFAULT_HALF_LIFE_S
from model.scoring.repurchase import habit_after
from model.user.preference import (
    CONSUMING_TYPES,
    REJECTING_TYPES,
    PreferenceVector,
    event_weight,
)

_HEADER = struct.Struct("<I")  # length of the JSON part, then float32 vector bytes


@dataclass
class HistoryEntry:
    item_id: str
    weight: float
    ts: int
    type: str = "view"

    @property
    def is_rejection(self) -> bool:
        """dislike / remove_from_cart: the user turned the item down."""
        return self.type in REJECTING_TYPES


@dataclass
class UserState:
    """Preference vector, recent history, consumed items, dedupe window, last served list.

    - ``preference``: the decayed weighted sum of item vectors (see :class:`PreferenceVector`).
    - ``history``: the last ``history_size`` (item, weight, ts), enough to rebuild the vector
      in another embedding space and to explain recommendations.
    - ``consumed``: purchased / rated / reviewed items, not recommended again unless due again
      (bounded).
    - ``bought``: item -> [purchases, last purchase ts, habit] of the user's purchases, most
      recent last (bounded like ``consumed``): when a past purchase is due again, and how much of
      a habit it is (:func:`~model.scoring.repurchase.habit_after`, as of the last purchase).
    - ``seen_event_ids``: the last ``dedupe_window`` event ids; a replayed event changes nothing.
    - ``pending``: events naming items not yet in the catalogue, applied once they arrive.
    - ``space``: the embedding space ``preference`` lives in (the adapter version, "base"
      for the plain encoder); :meth:`rebuild` moves it to another one.

    >>> state = UserState.new(dim=2)
    >>> state.learn("e1", "a", "purchase", None, 1000, np.array([1.0, 0.0], dtype=np.float32))
    True
    >>> state.learn("e1", "a", "purchase", None, 1000, np.array([1.0, 0.0], dtype=np.float32))
    False
    >>> UserState.from_bytes(state.to_bytes()).consumed
    ['a']
    """

    preference: PreferenceVector
    history: deque = field(default_factory=deque)
    consumed: list[str] = field(default_factory=list)
    bought: dict[str, list[float]] = field(default_factory=dict)
    seen_event_ids: deque = field(default_factory=deque)
    last_recommended: list[str] = field(default_factory=list)
    pending: list[dict] = field(default_factory=list)
    history_size: int = 50
    dedupe_window: int = 256
    consumed_limit: int = 2000
    pending_limit: int = 200
    space: str = "base"

    @classmethod
    def new(cls, dim: int, half_life_s: float = DEFAULT_HALF_LIFE_S, history_size: int = 50) -> UserState:
        return cls(preference=PreferenceVector(dim=dim, half_life_s=half_life_s), history_size=history_size)

    def has_seen(self, event_id: str) -> bool:
        return event_id in self.seen_event_ids

    def remember_event(self, event_id: str) -> None:
        self.seen_event_ids.append(event_id)
        while len(self.seen_event_ids) > self.dedupe_window:
            self.seen_event_ids.popleft()

    def learn(
        self,
        event_id: str,
        item_id: str,
        event_type: str,
        value: float | None,
        ts: int,
        item_vector: np.ndarray,
        text_vector: np.ndarray | None = None,
    ) -> bool:
        """Apply one event; False (and no change) when ``event_id`` was already applied. A
        review's ``text_vector`` moves the vector too, with the same weight
        (:class:`model.user.review.ReviewReader`); a rebuild in another space replays the items
        only (the history keeps no text)."""
        if self.has_seen(event_id):
            return False
        self.remember_event(event_id)
        weight = event_weight(event_type, value)
        self.preference.learn_one(item_vector, weight, ts)
        if text_vector is not None:
            self.preference.learn_one(text_vector, weight, ts)
        self.history.append(HistoryEntry(item_id, weight, ts, event_type))
        while len(self.history) > self.history_size:
            self.history.popleft()
        if event_type in CONSUMING_TYPES and item_id not in self.consumed:
            self.consumed.append(item_id)
            if len(self.consumed) > self.consumed_limit:
                del self.consumed[0]
        if event_type == "purchase":
            count, last_ts, *habit = self.bought.pop(item_id, (0, ts, 0.0))
            self.bought[item_id] = [count + 1, max(ts, last_ts), habit_after(habit[0] if habit else count, last_ts, ts)]
            if len(self.bought) > self.consumed_limit:
                del self.bought[next(iter(self.bought))]
        return True

    def rebuild(self, space: str, vector_of) -> None:
        """Recompute the preference vector in ``space`` from the recent history, replaying
        ``u <- decay(dt) u + w e_new(item)`` in order; ``vector_of(item_id)`` gives the new
        space's vectors (None: item unknown there, skipped). Vectors of two spaces never mix;
        events older than the history are gone from the new vector.

        >>> state = UserState.new(dim=2)
        >>> _ = state.learn("e1", "a", "click", None, 0, np.array([1.0, 0.0], dtype=np.float32))
        >>> state.rebuild("v2", {"a": np.array([0.0, 1.0], dtype=np.float32)}.get)
        >>> state.space, state.preference.vector.tolist()
        ('v2', [0.0, 2.0])
        """
        preference = PreferenceVector(dim=self.preference.dim, half_life_s=self.preference.half_life_s)
        for entry in self.history:
            vector = vector_of(entry.item_id)
            if vector is not None:
                preference.learn_one(vector, entry.weight, entry.ts)
        self.preference = preference
        self.space = space

    def park(self, event: dict) -> bool:
        """Keep an event whose item is not known yet; False when the pending buffer is full."""
        if len(self.pending) >= self.pending_limit:
            return False
        self.pending.append(event)
        return True

    def to_bytes(self) -> bytes:
        meta = {
            "v": 1,
            "half_life_s": self.preference.half_life_s,
            "last_ts": self.preference.last_ts,
            "history": [[h.item_id, h.weight, h.ts, h.type] for h in self.history],
            "consumed": self.consumed,
            "bought": self.bought,
            "seen": list(self.seen_event_ids),
            "last": self.last_recommended,
            "pending": self.pending,
            "history_size": self.history_size,
            "space": self.space,
        }
        blob = json.dumps(meta, separators=(",", ":")).encode()
        return _HEADER.pack(len(blob)) + blob + self.preference.vector.astype(np.float32).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> UserState:
        (n,) = _HEADER.unpack_from(data)
        meta = json.loads(data[_HEADER.size : _HEADER.size + n])
        vector = np.frombuffer(data[_HEADER.size + n :], dtype=np.float32).copy()
        preference = PreferenceVector(
            dim=len(vector), half_life_s=meta["half_life_s"], vector=vector, last_ts=meta["last_ts"]
        )
        return cls(
            preference=preference,
            history=deque(HistoryEntry(*h) for h in meta["history"]),
            consumed=meta["consumed"],
            bought=meta.get("bought", {}),
            seen_event_ids=deque(meta["seen"]),
            last_recommended=meta["last"],
            pending=meta["pending"],
            history_size=meta["history_size"],
            space=meta.get("space", "base"),
        )
