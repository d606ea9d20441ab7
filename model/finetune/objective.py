"""What a fine-tune step minimises.

The user side is exactly the worker's preference direction, rebuilt from the history in the
adapted embedding space,

    u = sum_j c_j * w_j * e(item_j),    c_j = product of the decays applied after event j
    (c_j = 0.5 ** ((t_last - t_j) / half_life) when the history is in time order),

scored as u / ||u||; the item side is the adapted embedding of every catalogue item. The loss
(:func:`residual_loss`) is the cross-entropy of the whole hybrid score at the next item,

    L = - 1/B sum_b log softmax_i( (prior_b(i) + b_content * z_i(u_b . e(i))) / T )[next_b],

with the prior held fixed: the content term learns what CF and trending miss. Without priors
and a catalogue, :func:`infonce_loss` is plain InfoNCE with in-batch negatives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from model.finetune.adapter import AdaptedEncoder
from model.finetune.examples import HistoryItem, TrainingExample
from model.scoring.decay import DEFAULT_HALF_LIFE_S
from model.user.preference import decay_factor


def decay_coefficients(history: Sequence[HistoryItem], half_life_s: float = DEFAULT_HALF_LIFE_S) -> np.ndarray:
    """c_j * w_j of every history entry, so that u = sum_j coef_j * e_j is the worker's vector.

    Replays :meth:`model.user.preference.PreferenceVector.learn_one` on scalars: before each event
    every earlier coefficient is multiplied by decay_factor(ts - last_ts) (1 for a late event),
    and last_ts is the latest ts so far. Decaying further to "now" would scale u by one common
    factor that u / ||u|| removes, so, like the worker, the vector stays at its last event.

    >>> decay_coefficients([("a", 1.0, 0), ("b", 1.0, 3_600_000)], half_life_s=3600.0).tolist()
    [0.5, 1.0]
    >>> decay_coefficients([("a", 2.0, 7_200_000), ("b", -1.0, 0)], half_life_s=3600.0).tolist()  # late event
    [2.0, -1.0]
    """
    coefficients = np.zeros(len(history), dtype=np.float64)
    last_ts: int | None = None
    for j, (_, weight, ts) in enumerate(history):
        if last_ts is not None:
            coefficients[:j] *= decay_factor(ts - last_ts, half_life_s)
        coefficients[j] = weight
        last_ts = ts if last_ts is None else max(last_ts, ts)
    return coefficients


def user_directions(
    histories: Sequence[Sequence[HistoryItem]],
    item_row: Mapping[str, int],
    item_embeddings,
    half_life_s: float = DEFAULT_HALF_LIFE_S,
):
    """Worker preference directions u_b / ||u_b|| for a batch of histories, as torch tensors.

    ``item_embeddings`` (m, d) is a torch tensor (gradients flow through it) and ``item_row``
    maps an item id to its row; history entries of unknown items are skipped, as the worker
    never learns them. Returns (U (B, d), valid (B,) bool); a user with ||u|| < 1e-12 gets the
    zero vector and valid False, like :meth:`PreferenceVector.direction`.
    """
    import torch

    coefficient_matrix = torch.zeros(len(histories), item_embeddings.shape[0], dtype=torch.float64)
    for b, history in enumerate(histories):
        known = [entry for entry in history if entry[0] in item_row]
        if not known:
            continue
        rows = torch.tensor([item_row[entry[0]] for entry in known])
        coefficient_matrix[b].index_add_(0, rows, torch.from_numpy(decay_coefficients(known, half_life_s)))
    vectors = coefficient_matrix.to(item_embeddings.device, torch.float32) @ item_embeddings.float()
    norms = vectors.norm(dim=1, keepdim=True)
    valid = norms.squeeze(1) >= 1e-12
    directions = torch.where(valid.unsqueeze(1), vectors / norms.clamp(min=1e-12), torch.zeros_like(vectors))
    return directions, valid


def infonce_loss(
    adapted: AdaptedEncoder,
    examples: Sequence[TrainingExample],
    item_text: Callable[[str], str],
    temperature: float = 0.05,
    half_life_s: float = DEFAULT_HALF_LIFE_S,
    autocast_dtype=None,
):
    """InfoNCE of a batch: cross-entropy of softmax_b'(u_b . e_b' / tau) at the true next item.

    The candidates are the batch's distinct next items (two examples with the same next item
    share one column, so it is never a negative of itself); a candidate already in a user's
    history is masked for that user (the worker never serves it again) unless it is the answer.
    Every history item and candidate is embedded once, through the adapter, in one forward pass.
    Returns a scalar tensor, or None when no example has a usable user vector.
    """
    import torch

    candidates = list(dict.fromkeys(ex.next_item for ex in examples))
    column = {item: j for j, item in enumerate(candidates)}
    items = list(dict.fromkeys([*candidates, *(i for ex in examples for i, _, _ in ex.history)]))
    row = {item: r for r, item in enumerate(items)}
    embeddings = adapted.embed([item_text(i) for i in items], autocast_dtype=autocast_dtype)
    users, valid = user_directions([ex.history for ex in examples], row, embeddings, half_life_s)
    if not bool(valid.any()):
        return None
    logits = users @ embeddings[: len(candidates)].T / temperature
    seen = torch.zeros(logits.shape, dtype=torch.bool)  # built on the cpu, moved once
    for b, ex in enumerate(examples):
        for item, _, _ in ex.history:
            if item in column and item != ex.next_item:
                seen[b, column[item]] = True
    logits = logits.masked_fill(seen.to(logits.device), float("-inf"))
    labels = torch.tensor([column[ex.next_item] for ex in examples], device=logits.device)
    return torch.nn.functional.cross_entropy(logits[valid], labels[valid])


def priors_matrix(examples: Sequence[TrainingExample], catalogue: Sequence[str]) -> np.ndarray:
    """The examples' priors over ``catalogue`` as one float32 (len(examples), len(catalogue))
    matrix. A missing prior is 0 (the mean of a z-scored term); an item the example's catalogue
    lacked (it came later) gets that example's lowest prior, like an item without events.

    >>> ex = TrainingExample((("a", 1.0, 0),), "b", 1, np.array([2.0, -1.0], np.float16), ("b", "a"))
    >>> empty = TrainingExample((("a", 1.0, 0),), "b", 3, np.array([], np.float16), ())
    >>> priors_matrix([ex, TrainingExample((("a", 1.0, 0),), "b", 2), empty], ["a", "b", "new"]).tolist()
    [[-1.0, 2.0, -1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """
    out = np.zeros((len(examples), len(catalogue)), dtype=np.float32)
    columns: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # id(prior_items) -> (positions, found)
    for b, ex in enumerate(examples):
        if ex.prior is None or not len(ex.prior):  # none, or made before any item was known
            continue
        key = id(ex.prior_items)
        if key not in columns:
            assert ex.prior_items is not None  # a prior comes with the items it is over
            where = {item: j for j, item in enumerate(ex.prior_items)}
            positions = np.array([where.get(item, -1) for item in catalogue], dtype=np.int64)
            columns[key] = (positions, positions >= 0)
        positions, found = columns[key]
        out[b] = np.where(found, ex.prior[positions].astype(np.float32), float(ex.prior.min()))
    return out


def _zscore(x):
    """(x - mean) / std of each row of a torch matrix (0 for a constant row), as the hybrid does."""
    import torch

    mean = x.mean(dim=1, keepdim=True)
    std = x.std(dim=1, keepdim=True, unbiased=False)
    return torch.where(std > 1e-9, (x - mean) / std.clamp(min=1e-9), torch.zeros_like(x))


def residual_loss(
    adapted: AdaptedEncoder,
    examples: Sequence[TrainingExample],
    catalogue: Sequence[str],
    item_text: Callable[[str], str],
    content_weight: float = 0.3,
    temperature: float = 1.0,
    half_life_s: float = DEFAULT_HALF_LIFE_S,
    autocast_dtype=None,
):
    """Cross-entropy of the hybrid's own ranking of the whole catalogue at the true next item:

        s_b(i) = prior_b(i) + b_content * z_i(u_b . e(i)),   L = -1/B sum_b log softmax_i(s_b / T)[next_b],

    where prior_b is the other terms' score when the example was made (``TrainingExample.prior``,
    over ``catalogue`` by :func:`priors_matrix`) and z standardises over the catalogue as the
    hybrid does. The prior is a constant: the gradient reaches the content term only where CF
    and trending do not already rank the next item on top, so the adapter learns what they miss
    instead of what they know. Items in a user's history are masked unless they are the answer;
    examples whose next item is not in ``catalogue`` are left out. Every catalogue item is
    embedded through the adapter, with gradients. Returns None when no example is usable.
    """
    import torch

    row = {item: r for r, item in enumerate(catalogue)}
    examples = [ex for ex in examples if ex.next_item in row]
    if not examples:
        return None
    embeddings = adapted.embed([item_text(i) for i in catalogue], autocast_dtype=autocast_dtype)
    users, valid = user_directions([ex.history for ex in examples], row, embeddings, half_life_s)
    if not bool(valid.any()):
        return None
    prior = torch.from_numpy(priors_matrix(examples, catalogue)).to(embeddings.device)
    logits = (prior + content_weight * _zscore(users @ embeddings.T)) / temperature
    seen = torch.zeros(logits.shape, dtype=torch.bool)
    for b, ex in enumerate(examples):
        rows = [row[i] for i, _, _ in ex.history if i in row and i != ex.next_item]
        seen[b, rows] = True
    logits = logits.masked_fill(seen.to(logits.device), float("-inf"))
    labels = torch.tensor([row[ex.next_item] for ex in examples], device=logits.device)
    return torch.nn.functional.cross_entropy(logits[valid], labels[valid])
