"""The k best of a score vector, deterministically (ties go to the lower index)."""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int, excluded: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``k`` highest ``scores``, best first, skipping rows where ``excluded`` is True.

    Ties break by lower index. Fewer than ``k`` indices come back when fewer items are eligible.

    >>> top_k(np.array([0.1, 0.9, 0.5, 0.7]), 2, excluded=np.array([False, True, False, False])).tolist()
    [3, 2]
    >>> top_k(np.array([0.5, 0.9, 0.5, 0.5]), 2).tolist()  # a tie at the k-th place: the lowest index
    [1, 0]
    """
    scores = np.asarray(scores, dtype=np.float32)
    if excluded is not None and excluded.any():
        scores = np.where(excluded, -np.inf, scores)
    eligible = int(np.isfinite(scores).sum())
    k = min(k, eligible)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k < len(scores):  # the k-th score, then every higher one and the lowest-index ties at it
        kth = -np.partition(-scores, k - 1)[k - 1]
        above = np.flatnonzero(scores > kth)
        candidates = np.concatenate([above, np.flatnonzero(scores == kth)[: k - len(above)]])
    else:
        candidates = np.arange(len(scores))
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order][:k]
