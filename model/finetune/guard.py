"""The guard of a promotion: :func:`holdout_metrics` ranks a holdout's next items as the
worker serves them, so the current and a candidate adapter are compared on the same examples."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from model.evaluation.metrics import hr_at_k, ndcg_at_k
from model.finetune.examples import TrainingExample
from model.finetune.objective import _zscore, priors_matrix, user_directions
from model.scoring.decay import DEFAULT_HALF_LIFE_S


def holdout_metrics(
    encode_items: Callable[[Sequence[str]], np.ndarray],
    holdout_examples: Sequence[TrainingExample],
    catalogue_item_ids: Sequence[str],
    item_text: Callable[[str], str],
    k: int = 10,
    half_life_s: float = DEFAULT_HALF_LIFE_S,
    content_weight: float | None = None,
) -> dict[str, float]:
    """Mean HR@k / NDCG@k of the holdout's next items, served as the worker would serve them.

    The catalogue is embedded with ``encode_items`` (``TextEncoder.encode`` for the current
    model, ``AdaptedEncoder.encode`` for a candidate); each user vector is rebuilt from the
    history (:func:`user_directions`), every catalogue item except the history's is ranked, and
    the top k is scored against the next item. The ranking is by u . e (content alone), or with
    ``content_weight`` by the hybrid's score prior(i) + b_content * z(u . e(i)) (the examples'
    priors, :func:`priors_matrix`; a user without a usable vector then keeps the prior). Examples whose next item is not in the catalogue are left out (``n`` counts the
    rest); without a prior, a user with no usable vector is a miss. Both encoders thus face the
    same examples: promote a candidate only if it does not lose.
    """
    import torch

    item_ids = list(catalogue_item_ids)
    row = {item: r for r, item in enumerate(item_ids)}
    examples = [ex for ex in holdout_examples if ex.next_item in row]
    if not examples or not item_ids:
        return {"hr": 0.0, "ndcg": 0.0, "n": 0}
    embeddings = np.asarray(encode_items([item_text(i) for i in item_ids]), dtype=np.float32)
    users, valid = user_directions([ex.history for ex in examples], row, torch.from_numpy(embeddings), half_life_s)
    scores = users.numpy() @ embeddings.T
    if content_weight is not None:
        scores = priors_matrix(examples, item_ids) + content_weight * _zscore(torch.from_numpy(scores)).numpy()
    k_eff = min(k, len(item_ids))
    hr = ndcg = 0.0
    for b, ex in enumerate(examples):
        if not bool(valid[b]) and content_weight is None:
            continue
        user_scores = scores[b]
        for item, _, _ in ex.history:
            if item in row:
                user_scores[row[item]] = -np.inf
        top = np.argpartition(-user_scores, k_eff - 1)[:k_eff]
        ranked = [item_ids[j] for j in top[np.argsort(-user_scores[top], kind="stable")]]
        hr += hr_at_k(ranked, {ex.next_item}, k)
        ndcg += ndcg_at_k(ranked, {ex.next_item}, k)
    return {"hr": hr / len(examples), "ndcg": ndcg / len(examples), "n": len(examples)}
