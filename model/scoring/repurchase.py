"""Buy again: how often and after how long each item is bought again, learned online, and when
a user's past purchase is due again."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

DAY_MS = 86_400_000
HABIT_DAYS = 90.0  # time constant of a household's habit (chosen on the first 30% of the grocery log)
HABIT_FLOOR = 0.3  # rebuy = habit * (due + HABIT_FLOOR): habit ranks, due breaks its ties


def habit_after(habit: float, last_ts: float, ts: float) -> float:
    """h <- h * exp(-dt / 90 days) + 1: the user's purchases of an item, each counted
    exp(-age / 90 days), just after a purchase at ``ts`` (the last one was at ``last_ts``).

    >>> round(habit_after(1.0, 0, 90 * DAY_MS), 3), habit_after(0.0, 0, 0)
    (1.368, 1.0)
    """
    return habit * math.exp(-max(ts - last_ts, 0) / (HABIT_DAYS * DAY_MS)) + 1.0


class RepurchaseCounts:
    """Per item row, the sufficient statistics of re-buying, one purchase at a time:

    - ``buyers[i]``: users who bought i; ``repeaters[i]``: users who bought it again;
    - ``intervals[i]``, ``log_sum[i]``, ``log_squares[i]``: count, sum and sum of squares of
      ln(days between two consecutive purchases of i by one user).

    The learner keeps them (with each (user, item)'s last purchase, bounded by ``max_pairs``, the
    oldest forgotten first) and ships them in its snapshot; :class:`BuyAgain` turns them into
    due scores.

    >>> counts = RepurchaseCounts()
    >>> for user, row, day in [("a", 0, 0), ("a", 0, 7), ("b", 0, 0), ("a", 1, 0)]:
    ...     counts.learn_one(user, row, day * DAY_MS)
    >>> counts.buyers[:2].tolist(), counts.repeaters[:2].tolist(), round(float(counts.log_sum[0]), 3)
    ([2.0, 1.0], [1.0, 0.0], 1.946)
    """

    def __init__(self, max_pairs: int = 5_000_000) -> None:
        self.max_pairs = max_pairs
        self._last: dict[tuple[str, int], tuple[int, int]] = {}  # (user, row) -> (purchases, last ts)
        self.buyers = np.zeros(0)
        self.repeaters = np.zeros(0)
        self.intervals = np.zeros(0)
        self.log_sum = np.zeros(0)
        self.log_squares = np.zeros(0)

    def _grow(self, n: int) -> None:
        if n <= len(self.buyers):
            return
        size = max(n, 2 * len(self.buyers), 1024)
        for name in ("buyers", "repeaters", "intervals", "log_sum", "log_squares"):
            old = getattr(self, name)
            new = np.zeros(size)
            new[: len(old)] = old
            setattr(self, name, new)

    def learn_one(self, user_id: str, row: int, ts: int) -> None:
        self._grow(row + 1)
        key = (user_id, row)
        before = self._last.pop(key, None)
        if before is None:
            self.buyers[row] += 1
            self._last[key] = (1, ts)
        else:
            purchases, last_ts = before
            if purchases == 1:
                self.repeaters[row] += 1
            days = max(ts - last_ts, 0) / DAY_MS
            if days >= 1 / 24:  # two lines of one basket are not a re-purchase
                x = math.log(days)
                self.intervals[row] += 1
                self.log_sum[row] += x
                self.log_squares[row] += x * x
            self._last[key] = (purchases + 1, max(ts, last_ts))
        while len(self._last) > self.max_pairs:  # dicts keep insertion order: the stalest first
            del self._last[next(iter(self._last))]

    def forget(self, user_id: str) -> None:
        """Drop the user's last purchases (their counts stay, anonymous)."""
        for key in [key for key in self._last if key[0] == user_id]:
            del self._last[key]

    def rows(self, n: int) -> np.ndarray:
        """(5, n): buyers, repeaters, intervals, log_sum, log_squares of rows 0..n-1."""
        self._grow(n)
        return np.stack(
            [self.buyers[:n], self.repeaters[:n], self.intervals[:n], self.log_sum[:n], self.log_squares[:n]]
        )


class BuyAgain:
    """due(u, i) = p_i * Phi((ln a_ui - mu_i) / sigma_i) for an item i the user bought a_ui days ago:

    - p_i = (repeaters_i + s * p_c) / (buyers_i + s), the share of i's buyers who bought it
      again, shrunk (strength s) towards its category's share p_c (the catalogue's share for
      items without a category), so items with little history borrow their category's habit;
    - mu_i, sigma_i: mean and standard deviation of ln(days between purchases of i), shrunk the
      same way; Phi: the standard normal CDF, the chance that a typical interval has elapsed.

    An item nobody buys twice (a film, a sofa) has p_i near 0: it stays below any due threshold.

    >>> stats = np.array([[10.0, 10.0], [8.0, 0.0], [8.0, 0.0], [8 * math.log(7), 0.0], [8 * math.log(7) ** 2, 0.0]])
    >>> model = BuyAgain(stats, categories=["milk", "sofa"])
    >>> [round(float(d), 2) for d in model.due(np.array([0, 0, 1]), np.array([1.0, 7.0, 7.0]))]
    [0.0, 0.38, 0.02]
    """

    def __init__(
        self, stats: np.ndarray, categories: Sequence[str | None], strength: float = 5.0, min_sigma: float = 0.3
    ) -> None:
        buyers, repeaters, intervals, log_sum, log_squares = np.asarray(stats, dtype=np.float64)
        codes, groups = _group(categories)
        n_groups = len(groups) + 1

        def per_group(x: np.ndarray) -> np.ndarray:
            return np.bincount(codes, weights=x, minlength=n_groups)

        g_buyers, g_repeaters, g_intervals = per_group(buyers), per_group(repeaters), per_group(intervals)
        g_log_sum, g_log_squares = per_group(log_sum), per_group(log_squares)
        everyone = (repeaters.sum() + 1.0) / (buyers.sum() + 2.0)
        p_group = (g_repeaters + strength * everyone) / (g_buyers + strength)
        mean_all = log_sum.sum() / max(intervals.sum(), 1.0) if intervals.sum() else math.log(7.0)
        var_all = max(log_squares.sum() / max(intervals.sum(), 1.0) - mean_all**2, 1.0) if intervals.sum() else 1.0
        mu_group = (g_log_sum + strength * mean_all) / (g_intervals + strength)
        sq_group = (g_log_squares + strength * (var_all + mean_all**2)) / (g_intervals + strength)
        self.p = (repeaters + strength * p_group[codes]) / (buyers + strength)
        self.mu = (log_sum + strength * mu_group[codes]) / (intervals + strength)
        squares = (log_squares + strength * sq_group[codes]) / (intervals + strength)
        self.sigma = np.sqrt(np.maximum(squares - self.mu**2, min_sigma**2))

    def due(self, rows: np.ndarray, age_days: np.ndarray) -> np.ndarray:
        """due(u, i) of the items at ``rows`` bought ``age_days`` ago (same shape)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros(rows.shape)
        known = rows < len(self.p)  # items that came after the model was made: not due
        at = rows[known]
        z = (np.log(np.maximum(np.asarray(age_days, dtype=np.float64)[known], 1e-3)) - self.mu[at]) / self.sigma[at]
        out[known] = self.p[at] * _normal_cdf(z)
        return out

    def rebuy(self, rows: np.ndarray, age_days: np.ndarray, habit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """due(u, i), and rebuy(u, i) = h_ui(now) * (due(u, i) + 0.3), the buy-again term's value:
        h_ui(now) = habit * exp(-age / 90 days) counts the user's own purchases of i, the recent
        ones most (``habit`` as of the last purchase, see :func:`habit_after`). A household's
        staples rank first, and among them the ones that are due.

        >>> stats = np.array([[10.0], [8.0], [8.0], [8 * math.log(7)], [8 * math.log(7) ** 2]])
        >>> due, value = BuyAgain(stats, categories=["milk"]).rebuy(np.array([0]), np.array([7.0]), np.array([3.0]))
        >>> round(float(due[0]), 2), round(float(value[0]), 2)
        (0.4, 1.94)
        """
        age_days = np.asarray(age_days, dtype=np.float64)
        due = self.due(rows, age_days)
        return due, np.asarray(habit, dtype=np.float64) * np.exp(-age_days / HABIT_DAYS) * (due + HABIT_FLOOR)


_ERF = np.frompyfunc(math.erf, 1, 1)


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    erf = np.asarray(_ERF(np.asarray(z, dtype=np.float64) / math.sqrt(2.0)), dtype=np.float64)
    return 0.5 * (1.0 + erf)


def _group(categories: Sequence[str | None]) -> tuple[np.ndarray, list[str]]:
    """Each item's category code (0: none), and the categories in code order (from 1)."""
    names: dict[str, int] = {}
    codes = np.array([0 if c is None else names.setdefault(c, len(names) + 1) for c in categories], dtype=np.int64)
    return codes, list(names)
