"""Top-K retrieval by cosine similarity over an in-memory matrix of unit item vectors."""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int, excluded: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``k`` highest ``scores``, best first, skipping rows where ``excluded`` is True.

    Ties break by lower index. Fewer than ``k`` indices come back when fewer items are eligible.

    >>> top_k(np.array([0.1, 0.9, 0.5, 0.7]), 2, excluded=np.array([False, True, False, False])).tolist()
    [3, 2]
    """
    scores = np.asarray(scores, dtype=np.float32)
    if excluded is not None and excluded.any():
        scores = np.where(excluded, -np.inf, scores)
    eligible = int(np.isfinite(scores).sum())
    k = min(k, eligible)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k < len(scores):
        candidates = np.argpartition(-scores, k - 1)[:k]
    else:
        candidates = np.arange(len(scores))
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order][:k]
