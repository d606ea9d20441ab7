"""Maximal marginal relevance (MMR) re-ranking for diverse lists."""

from __future__ import annotations

import numpy as np


def mmr_rerank(relevance: np.ndarray, vectors: np.ndarray, k: int, lam: float) -> np.ndarray:
    """Pick k of the candidates, each time the one maximising
    ``lam * rel(i) - (1 - lam) * max_{j chosen} cos(i, j)``; rel is min-max scaled to [0, 1].

    ``relevance`` (n,) and unit ``vectors`` (n, d) describe the candidates; returns positions
    into them, in pick order. ``lam = 1`` keeps the relevance order.

    >>> vecs = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    >>> mmr_rerank(np.array([1.0, 0.9, 0.5]), vecs, k=2, lam=1.0).tolist()
    [0, 1]
    >>> mmr_rerank(np.array([1.0, 0.9, 0.5]), vecs, k=2, lam=0.5).tolist()  # the duplicate gives way
    [0, 2]
    """
    n = len(relevance)
    k = min(k, n)
    if k == 0:
        return np.empty(0, dtype=np.int64)
    if lam >= 1.0:
        return np.argsort(-relevance, kind="stable")[:k]
    span = relevance.max() - relevance.min()
    rel = (relevance - relevance.min()) / span if span > 0 else np.ones(n)
    sims = vectors @ vectors.T
    chosen = [int(np.argmax(rel))]
    max_sim = sims[chosen[0]].copy()
    available = np.ones(n, dtype=bool)
    available[chosen[0]] = False
    while len(chosen) < k:
        gain = np.where(available, lam * rel - (1 - lam) * max_sim, -np.inf)
        pick = int(np.argmax(gain))
        chosen.append(pick)
        available[pick] = False
        max_sim = np.maximum(max_sim, sims[pick])
    return np.array(chosen, dtype=np.int64)
