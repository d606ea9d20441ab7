"""What a served list may contain: one policy for the worker and for ``streamrec evaluate``."""

from __future__ import annotations

from dataclasses import dataclass

from model.user.state import UserState


@dataclass(frozen=True)
class ServingPolicy:
    """The rules every list obeys, wherever it is made:

    - an unavailable item is never served;
    - a consumed item (purchased, rated, reviewed) is served again only when it is due again:
      its buy-again score (:class:`model.scoring.repurchase.BuyAgain`) is at least
      ``due_threshold`` (a film, a sofa never are; milk is, a week after the last carton);
    - an item the user viewed, clicked or carted in the last ``recent_window_s`` seconds is not
      served back to them (they have just seen it), unless it is due again;
    - with ``mmr_lambda < 1`` the best ``mmr_pool`` items are re-ranked by MMR for diversity.

    >>> import numpy as np
    >>> state = UserState.new(dim=2)
    >>> for n, (item, ts) in enumerate([("shoe-1", 0), ("shoe-2", 98_000_000), ("shoe-3", 100_000_000)]):
    ...     _ = state.learn(f"e{n}", item, "click", None, ts, np.array([1.0, 0.0], dtype=np.float32))
    >>> ServingPolicy(recent_window_s=3600).recent_items(state, now_ms=100_000_000)
    ['shoe-3', 'shoe-2']
    """

    recent_window_s: float = 86_400.0
    due_threshold: float = 0.02  # chosen on the first 30% of the grocery log
    mmr_lambda: float = 1.0
    mmr_pool: int = 50

    def recent_items(self, state: UserState, now_ms: int) -> list[str]:
        """Items of the user's history from the last ``recent_window_s`` seconds, newest first."""
        cutoff = now_ms - 1000 * self.recent_window_s
        recent: list[str] = []
        for entry in reversed(state.history):
            if entry.ts < cutoff:
                break
            recent.append(entry.item_id)
        return list(dict.fromkeys(recent))
