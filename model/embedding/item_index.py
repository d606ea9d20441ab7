"""The catalogue as a growable matrix of unit item vectors with ids, titles and availability."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ItemInfo:
    item_id: str
    title: str
    category: str | None = None


class ItemIndex:
    """Item vectors by id, ready for a single matrix product against user vectors.

    Rows are never reused: a deleted or unavailable item keeps its row but is masked out
    (``available[row] = False``), so row numbers stay stable while a worker serves.

    >>> index = ItemIndex(dim=2)
    >>> index.upsert([ItemInfo("a", "A"), ItemInfo("b", "B")], np.eye(2, dtype=np.float32))
    >>> index.remove("a")
    >>> index.row_of("b"), index.available[:2].tolist(), len(index)
    (1, [False, True], 2)
    """

    def __init__(self, dim: int, capacity: int = 1024) -> None:
        self.dim = dim
        self._vectors = np.zeros((capacity, dim), dtype=np.float32)
        self._available = np.zeros(capacity, dtype=bool)
        self._rows: dict[str, int] = {}
        self.infos: list[ItemInfo] = []

    def __len__(self) -> int:
        return len(self.infos)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._rows

    @property
    def vectors(self) -> np.ndarray:
        """(n_items, dim) view of the item matrix."""
        return self._vectors[: len(self.infos)]

    @property
    def available(self) -> np.ndarray:
        """(n_items,) mask of items that may be served."""
        return self._available[: len(self.infos)]

    @property
    def n_available(self) -> int:
        return int(self.available.sum())

    def row_of(self, item_id: str) -> int | None:
        return self._rows.get(item_id)

    def vector_of(self, item_id: str) -> np.ndarray | None:
        row = self._rows.get(item_id)
        return None if row is None else self._vectors[row]

    def upsert(self, infos: list[ItemInfo], vectors: np.ndarray, available: list[bool] | None = None) -> None:
        """Add new items or replace existing ones (vector, title, availability)."""
        if len(infos) != len(vectors):
            raise ValueError("one vector per item is needed")
        for i, info in enumerate(infos):
            row = self._rows.get(info.item_id)
            if row is None:
                row = len(self.infos)
                self._grow_to(row + 1)
                self._rows[info.item_id] = row
                self.infos.append(info)
            else:
                self.infos[row] = info
            self._vectors[row] = vectors[i]
            self._available[row] = True if available is None else bool(available[i])

    def respaced(self, vectors: np.ndarray) -> ItemIndex:
        """A copy with the same rows, ids, titles and availability, and new ``vectors``
        (n_items, dim') from another embedding space; row numbers stay valid.

        >>> index = ItemIndex(dim=2)
        >>> index.upsert([ItemInfo("a", "A")], np.array([[1.0, 0.0]], dtype=np.float32))
        >>> index.respaced(np.array([[0.0, 1.0]], dtype=np.float32)).vector_of("a").tolist()
        [0.0, 1.0]
        """
        if len(vectors) != len(self.infos):
            raise ValueError(f"{len(vectors)} vectors for {len(self.infos)} items")
        other = ItemIndex(dim=vectors.shape[1], capacity=max(1, len(self._available)))
        other._vectors[: len(self.infos)] = vectors
        other._available[: len(self.infos)] = self.available
        other._rows = dict(self._rows)
        other.infos = list(self.infos)
        return other

    def remove(self, item_id: str) -> None:
        """Stop serving an item (deleted or tombstoned); its row stays for stable indices."""
        row = self._rows.get(item_id)
        if row is not None:
            self._available[row] = False

    def _grow_to(self, n: int) -> None:
        if n <= len(self._available):
            return
        capacity = max(n, 2 * len(self._available))
        vectors = np.zeros((capacity, self.dim), dtype=np.float32)
        vectors[: len(self.infos)] = self.vectors
        available = np.zeros(capacity, dtype=bool)
        available[: len(self.infos)] = self.available
        self._vectors, self._available = vectors, available
