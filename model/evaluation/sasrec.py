"""SASRec (Kang & McAuley, 2018) as a peer in the harness: a small causal transformer over each
user's item sequence, re-trained every ``retrain_every`` events on CPU (warm start), served
from the user's current sequence."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from model.evaluation.baselines import Popularity, ScoredOrPopular
from model.evaluation.protocol import Interaction


class PeriodicSASRec(ScoredOrPopular):
    """Self-attentive sequential recommendation, trained on every user's sequence so far:

        h_t = Transformer(E[s_1..t] + P[1..t])_t  (causal self-attention, ``layers`` blocks)
        score(u, i) = h_T(u) . E_i,  loss = sum_t CE(softmax_i(h_t . E_i), s_{t+1})

    over the last ``max_len`` items of each sequence, full softmax over the items (stronger
    than the original sampled BCE). Every ``retrain_every`` events it trains ``epochs`` passes
    more, starting from the last weights (new items get fresh rows); in between the weights are
    fixed and a user's list comes from their *current* sequence, events since the fit included.
    Items newer than the fit score -inf; users without a sequence get all-time popularity.

    >>> model = PeriodicSASRec(retrain_every=60, dim=16, max_len=4, epochs=30, seed=0)
    >>> for n in range(60):  # everyone goes a -> b -> c
    ...     model.learn_one(Interaction(f"u{n // 3}", "abc"[n % 3], ts=n))
    >>> model.n_fits, model.recommend("new", k=1, exclude=set()), model.recommend("u0", k=1, exclude={"a", "c"})
    (1, ['a'], ['b'])
    """

    def __init__(
        self,
        retrain_every: int = 5_000,
        dim: int = 64,
        layers: int = 2,
        heads: int = 2,
        max_len: int = 50,
        dropout: float = 0.2,
        epochs: int = 10,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        seed: int = 0,
        name: str = "sasrec",
    ) -> None:
        self.name = name
        self.retrain_every = retrain_every
        self.dim, self.layers, self.heads, self.max_len, self.dropout = dim, layers, heads, max_len, dropout
        self.epochs, self.batch_size, self.learning_rate = epochs, batch_size, learning_rate
        self.popularity = Popularity()
        self.items = self.popularity.items  # the same rows
        self._sequences: dict[str, list[int]] = defaultdict(list)  # item rows + 1 (0 pads), oldest first
        self._events = 0
        self._rng = np.random.default_rng(seed)
        self._seed = seed
        self._net: Any = None  # the transformer (a torch module), built at the first fit
        self._optimizer: Any = None
        self._fitted_items = 0
        self._item_vectors = np.zeros((0, dim), dtype=np.float32)  # E of the fit, for serving
        self.n_fits = 0

    def learn_one(self, event: Interaction) -> None:
        self.popularity.learn_one(event)
        sequence = self._sequences[event.user_id]
        sequence.append(self.items.row_of[event.item_id] + 1)
        del sequence[: -self.max_len - 1]
        self._events += 1
        if self._events % self.retrain_every == 0:
            self.fit()

    def _build(self, n_items: int):
        import torch

        net = self._net
        if net is not None and net.items.num_embeddings >= n_items + 1:
            return net
        torch.manual_seed(self._seed + self.n_fits)
        rows = n_items + 1 + n_items // 4 + 16  # room for the next items: fewer rebuilds
        grown = _SASRecNet(rows, self.dim, self.layers, self.heads, self.max_len, self.dropout)
        if net is not None:  # warm start: every weight kept, rows for the new items added
            state = net.state_dict()
            old = state.pop("items.weight")
            grown.load_state_dict(state, strict=False)
            with torch.no_grad():
                grown.items.weight[: len(old)] = old
        self._net = grown
        self._optimizer = torch.optim.Adam(grown.parameters(), lr=self.learning_rate)
        return grown

    def fit(self) -> None:
        """``epochs`` more passes over every user's last ``max_len`` + 1 items."""
        import torch

        n_items = len(self.items)
        net = self._build(n_items)
        sequences = [s for s in self._sequences.values() if len(s) >= 2]
        if not sequences:
            return
        padded = np.zeros((len(sequences), self.max_len + 1), dtype=np.int64)  # left-padded
        for n, s in enumerate(sequences):
            padded[n, -len(s) :] = s
        data = torch.from_numpy(padded)
        net.train()
        assert self._optimizer is not None
        for _ in range(self.epochs):
            for batch in torch.from_numpy(self._rng.permutation(len(sequences))).split(self.batch_size):
                inputs, targets = data[batch, :-1], data[batch, 1:]
                logits = net(inputs) @ net.items.weight[1 : n_items + 1].T  # (B, L, n_items)
                mask = targets > 0
                loss = torch.nn.functional.cross_entropy(logits[mask], targets[mask] - 1)
                self._optimizer.zero_grad()
                loss.backward()
                self._optimizer.step()
        net.eval()
        self._fitted_items = n_items
        self._item_vectors = net.items.weight[1 : n_items + 1].detach().numpy().copy()
        self.n_fits += 1

    def scores(self, user_id: str) -> np.ndarray | None:
        """h_T(u) . E_i by item row (-inf for items newer than the fit); None without a fit or
        a sequence of fitted items."""
        import torch

        sequence = [r for r in self._sequences.get(user_id, ()) if r <= self._fitted_items][-self.max_len :]
        if not self.n_fits or not sequence or self._net is None:
            return None
        inputs = torch.zeros((1, self.max_len), dtype=torch.int64)
        inputs[0, -len(sequence) :] = torch.tensor(sequence)
        with torch.inference_mode():
            state = self._net(inputs)[0, -1].numpy()
        out = np.full(len(self.items), -np.inf)
        out[: self._fitted_items] = self._item_vectors @ state
        return out


def _SASRecNet(n_embeddings: int, dim: int, layers: int, heads: int, max_len: int, dropout: float):
    """The network: item + position embeddings, causal transformer blocks, a final norm."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.items = nn.Embedding(n_embeddings, dim, padding_idx=0)
            self.positions = nn.Embedding(max_len, dim)
            for table in (self.items, self.positions):  # small: the logits start near uniform
                nn.init.normal_(table.weight, std=dim**-0.5)
            with torch.no_grad():
                self.items.weight[0] = 0.0
            block = nn.TransformerEncoderLayer(
                dim, heads, dim_feedforward=dim, dropout=dropout, batch_first=True, norm_first=True
            )
            self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(dim)
            self.drop = nn.Dropout(dropout)

        def forward(self, sequences: torch.Tensor) -> torch.Tensor:
            length = sequences.shape[1]
            real = (sequences > 0).unsqueeze(-1)  # the padding is zeroed, not attended away (no NaN rows)
            x = (self.items(sequences) + self.positions.weight[-length:]) * real
            causal = torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)
            return self.norm(self.blocks(self.drop(x), mask=causal) * real)

    return Net()
