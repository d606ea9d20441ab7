"""Ranking metrics for one served list (or a set of lists), as plain functions.

``recommended`` is a list of item ids, best first; ``relevant`` the items the user actually
interacted with next (in a prequential replay: the one item of the event being scored).
Every function of one list cuts it to its first ``k`` items; a list shorter than ``k`` is
scored as it is (the missing slots are misses).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence

import numpy as np


def hr_at_k(recommended: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Hit rate: 1 if any relevant item is among the first ``k``, else 0.

    HR@K = 1[ top_K(list) ∩ relevant ≠ ∅ ]

    >>> hr_at_k(["a", "b", "c"], {"c"}, k=3), hr_at_k(["a", "b", "c"], {"c"}, k=2)
    (1.0, 0.0)
    """
    return 1.0 if any(item in relevant for item in recommended[:k]) else 0.0


def ndcg_at_k(recommended: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Normalised discounted cumulative gain with binary relevance.

    DCG@K = sum_{r=1..K} rel_r / log2(r + 1);  NDCG@K = DCG@K / IDCG@K, where IDCG@K is the DCG
    of a list with all min(|relevant|, K) relevant items on top. One relevant item at rank r
    gives 1 / log2(r + 1).

    >>> round(ndcg_at_k(["a", "b", "c"], {"b"}, k=10), 4)  # 1 / log2(3)
    0.6309
    >>> ndcg_at_k(["a", "b"], set(), k=10)
    0.0
    """
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(rank + 2) for rank, item in enumerate(recommended[:k]) if item in relevant)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(relevant), k)))
    return dcg / ideal


def recall_at_k(recommended: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Share of the relevant items found in the first ``k``.

    Recall@K = |top_K(list) ∩ relevant| / |relevant|  (equals HR@K when one item is relevant)

    >>> recall_at_k(["a", "b", "c"], {"a", "z"}, k=3)
    0.5
    """
    if not relevant:
        return 0.0
    return len(set(recommended[:k]) & set(relevant)) / len(relevant)


def precision_at_k(recommended: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Share of the ``k`` slots filled with a relevant item.

    Precision@K = |top_K(list) ∩ relevant| / K

    >>> precision_at_k(["a", "b", "c", "d"], {"a", "c"}, k=4)
    0.5
    """
    return len(set(recommended[:k]) & set(relevant)) / k


def reciprocal_rank(recommended: Sequence[str], relevant: Collection[str], k: int | None = None) -> float:
    """1 / rank of the first relevant item (ranks start at 1), 0 if none is in the list.

    RR = 1 / min{ r : list_r ∈ relevant };  MRR is its mean over scored events. With ``k`` the
    list is cut first (MRR@K).

    >>> reciprocal_rank(["a", "b", "c"], {"c"}), reciprocal_rank(["a", "b", "c"], {"c"}, k=2)
    (0.3333333333333333, 0.0)
    """
    for rank, item in enumerate(recommended[:k] if k is not None else recommended, start=1):
        if item in relevant:
            return 1.0 / rank
    return 0.0


def auc(positive_scores: Iterable[float] | float, negative_scores: Iterable[float]) -> float:
    """Area under the ROC curve: the chance that a positive outscores a negative, ties half.

    AUC = 1 / (|P| |N|) * sum_{p ∈ P, n ∈ N} ( 1[s_p > s_n] + 0.5 * 1[s_p = s_n] )

    The negatives are either sampled items or all items that could have been served.
    Returns NaN with no negatives (or no positives).

    >>> auc(0.9, [0.1, 0.5, 0.95]), auc([0.5], [0.5, 0.1])
    (0.6666666666666666, 0.75)
    """
    positives = np.atleast_1d(np.asarray(positive_scores, dtype=np.float64))
    if not isinstance(negative_scores, np.ndarray):
        negative_scores = list(negative_scores)
    negatives = np.asarray(negative_scores, dtype=np.float64)
    if positives.size == 0 or negatives.size == 0:
        return float("nan")
    negatives = np.sort(negatives)
    below = np.searchsorted(negatives, positives, side="left")
    not_above = np.searchsorted(negatives, positives, side="right")
    wins = below + 0.5 * (not_above - below)
    return float(wins.sum() / (positives.size * negatives.size))


def catalogue_coverage(lists: Iterable[Sequence[str]], catalogue_size: int) -> float:
    """Share of the catalogue that appears in at least one served list.

    coverage = |∪_lists items| / |catalogue|

    >>> catalogue_coverage([["a", "b"], ["b", "c"]], catalogue_size=10)
    0.3
    """
    if catalogue_size <= 0:
        return 0.0
    shown: set[str] = set()
    for items in lists:
        shown.update(items)
    return len(shown) / catalogue_size


def intra_list_diversity(recommended: Sequence[str], item_vectors: Mapping[str, np.ndarray] | None) -> float | None:
    """Mean pairwise cosine distance between the items of one list.

    ILD = 2 / (n (n - 1)) * sum_{i < j} (1 - cos(v_i, v_j)), over the listed items that have a
    vector (a zero vector counts as cosine 0). None without vectors or with fewer than 2 items.

    >>> vectors = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0]), "c": np.array([1.0, 0.0])}
    >>> round(intra_list_diversity(["a", "b", "c"], vectors), 4)  # distances 1, 0, 1
    0.6667
    >>> intra_list_diversity(["a", "b"], None) is None
    True
    """
    if item_vectors is None:
        return None
    rows = [np.asarray(item_vectors[i], dtype=np.float64) for i in recommended if i in item_vectors]
    if len(rows) < 2:
        return None
    matrix = np.stack(rows)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    cosine = unit @ unit.T
    n = len(rows)
    upper = np.triu_indices(n, k=1)
    return float(np.mean(1.0 - cosine[upper]))
