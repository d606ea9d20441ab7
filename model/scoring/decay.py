"""Exponential time decay of many counters at once, without touching them all on every event."""

from __future__ import annotations

import math

#: The half-life of every decayed quantity by default (a user's past events, trending counts,
#: co-occurrence): one week.
DEFAULT_HALF_LIFE_S = 7 * 24 * 3600.0


class DecayClock:
    """Turns "decay every counter by 0.5^(dt/half_life)" into one scalar.

    Increments are stored multiplied by g(t) = 2^((t - t0)/half_life); a stored value x reads
    as x / g(now). Counters thus decay continuously while learning touches only the counters
    of the event. When g grows large, :meth:`rebase` returns a factor to rescale storage by.

    >>> clock = DecayClock(half_life_s=3600)
    >>> stored = clock.weight(0) * 1.0            # one event at t = 0
    >>> round(stored / clock.weight(3_600_000), 3)  # read one half-life later
    0.5
    """

    def __init__(self, half_life_s: float = math.inf) -> None:
        self.half_life_ms = half_life_s * 1000.0
        self.t0: float | None = None
        self.now: float = 0.0

    @property
    def decays(self) -> bool:
        return math.isfinite(self.half_life_ms) and self.half_life_ms > 0

    def weight(self, ts: float) -> float:
        """g(ts): the multiplier of an increment made at event time ``ts`` (ms)."""
        if not self.decays:
            return 1.0
        if self.t0 is None:
            self.t0 = ts
        self.now = max(self.now, ts)
        return 2.0 ** ((ts - self.t0) / self.half_life_ms)

    def read_scale(self) -> float:
        """1 / g(now): multiply stored values by this to read current decayed values."""
        if not self.decays or self.t0 is None:
            return 1.0
        return 2.0 ** (-(self.now - self.t0) / self.half_life_ms)

    def rebase(self, limit: float = 1e12) -> float | None:
        """When g(now) exceeds ``limit``, move t0 to now; returns the factor to scale storage by."""
        if not self.decays or self.t0 is None:
            return None
        scale = self.read_scale()
        if scale >= 1.0 / limit:
            return None
        self.t0 = self.now
        return scale
