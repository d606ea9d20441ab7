"""The catalogue as a growable matrix of unit item vectors with ids, titles and availability,
with a vector search over it and the running moments of the servable vectors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from model.embedding.ann import VectorSearch


@dataclass(frozen=True)
class ItemInfo:
    item_id: str
    title: str
    category: str | None = None


class ItemIndex:
    """Item vectors by id, with the candidate search of the content term.

    Vectors are stored as ``dtype`` (float16 halves the memory of a large catalogue; scores are
    computed in float32). Rows are never reused: a deleted or unavailable item keeps its row but is masked out
    (``available[row] = False``), so row numbers stay stable while a worker serves. Beside the
    vectors it keeps m = sum e_i and S = sum e_i e_i' over the servable items (:meth:`moments`:
    the hybrid's content z-score without a pass over the catalogue), the rows not servable, and
    a :class:`~model.embedding.ann.VectorSearch` that follows every change (:meth:`nearest`).

    >>> index = ItemIndex(dim=2)
    >>> index.upsert([ItemInfo("a", "A"), ItemInfo("b", "B")], np.eye(2, dtype=np.float32))
    >>> index.remove("a")
    >>> index.row_of("b"), index.available[:2].tolist(), len(index), index.unavailable_rows().tolist()
    (1, [False, True], 2, [0])
    >>> index.nearest(np.array([[1.0, 0.0]], np.float32), 5, [np.zeros(0, np.int64)])[0].tolist()
    [1]
    """

    def __init__(self, dim: int, capacity: int = 1024, exact_below: int = 50_000, dtype: type = np.float32) -> None:
        self.dim = dim
        self.dtype = np.dtype(dtype)
        self._vectors = np.zeros((capacity, dim), dtype=self.dtype)
        self._available = np.zeros(capacity, dtype=bool)
        self._rows: dict[str, int] = {}
        self.infos: list[ItemInfo] = []
        self._sum = np.zeros(dim, dtype=np.float64)
        self._outer = np.zeros((dim, dim), dtype=np.float64)
        self._unavailable: dict[int, None] = {}
        self._unavailable_array: np.ndarray | None = None
        self.search = VectorSearch(dim, exact_below=exact_below)

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
        return len(self.infos) - len(self._unavailable)

    def unavailable_rows(self) -> np.ndarray:
        """Rows that may not be served (deleted or unavailable items), ascending; kept until the
        catalogue changes (the hybrid asks for them once per batch of lists)."""
        if self._unavailable_array is None:
            self._unavailable_array = np.array(sorted(self._unavailable), dtype=np.int64)
        return self._unavailable_array

    def row_of(self, item_id: str) -> int | None:
        return self._rows.get(item_id)

    def vector_of(self, item_id: str) -> np.ndarray | None:
        row = self._rows.get(item_id)
        return None if row is None else self._vectors[row]

    def upsert(self, infos: list[ItemInfo], vectors: np.ndarray, available: list[bool] | None = None) -> None:
        """Add new items or replace existing ones (vector, title, availability)."""
        if len(infos) != len(vectors):
            raise ValueError("one vector per item is needed")
        vectors = np.asarray(vectors, dtype=np.float32)
        rows = np.zeros(len(infos), dtype=np.int64)
        for i, info in enumerate(infos):
            row = self._rows.get(info.item_id)
            if row is None:
                row = len(self.infos)
                self._grow_to(row + 1)
                self._rows[info.item_id] = row
                self.infos.append(info)
                self._unavailable[row] = None  # not servable until it is set below
            else:
                self.infos[row] = info
            rows[i] = row
        last = {int(r): i for i, r in enumerate(rows)}  # an id given twice: its last version wins
        rows = np.fromiter(last, dtype=np.int64, count=len(last))
        take = np.fromiter(last.values(), dtype=np.int64, count=len(last))
        servable = np.ones(len(rows), bool) if available is None else np.asarray(available, bool)[take]
        was = self._available[rows]
        self._account(self._vectors[rows[was]], -1.0)
        self._vectors[rows] = vectors[take]
        self._available[rows] = servable
        self._account(vectors[take][servable], +1.0)
        for row, ok in zip(rows.tolist(), servable.tolist(), strict=True):
            if ok:
                self._unavailable.pop(row, None)
            else:
                self._unavailable[row] = None
        self._unavailable_array = None
        self.search.update(rows, self.vectors)

    def respaced(self, vectors: np.ndarray) -> ItemIndex:
        """A copy with the same rows, ids, titles and availability, and new ``vectors``
        (n_items, dim') from another embedding space; row numbers stay valid. Its vector search
        is built here: call it off the event loop.

        >>> index = ItemIndex(dim=2)
        >>> index.upsert([ItemInfo("a", "A")], np.array([[1.0, 0.0]], dtype=np.float32))
        >>> index.respaced(np.array([[0.0, 1.0]], dtype=np.float32)).vector_of("a").tolist()
        [0.0, 1.0]
        """
        if len(vectors) != len(self.infos):
            raise ValueError(f"{len(vectors)} vectors for {len(self.infos)} items")
        other = ItemIndex(
            dim=vectors.shape[1], capacity=max(1, len(self._available)), exact_below=self.search.exact_below
        )
        other._vectors[: len(self.infos)] = vectors
        other._available[: len(self.infos)] = self.available
        other._rows = dict(self._rows)
        other.infos = list(self.infos)
        other._unavailable = dict(self._unavailable)
        other._account(other.vectors[other.available], +1.0)
        other.search.rebuild(other.vectors)
        return other

    def remove(self, item_id: str) -> None:
        """Stop serving an item (deleted or tombstoned); its row stays for stable indices."""
        row = self._rows.get(item_id)
        if row is not None and self._available[row]:
            self._account(self._vectors[row : row + 1], -1.0)
            self._available[row] = False
            self._unavailable[row] = None
            self._unavailable_array = None

    def moments(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """sum_i u . e_i and sum_i (u . e_i)^2 over the servable items, for each user vector
        (rows of ``users``): u . m and u' S u, O(dim^2) per user whatever the catalogue."""
        users = np.asarray(users, dtype=np.float64)
        return users @ self._sum, ((users @ self._outer) * users).sum(axis=1)

    def nearest(self, users: np.ndarray, c: int, excluded: Sequence[np.ndarray]) -> list[np.ndarray]:
        """For each user vector, the rows of its ``c`` nearest servable items (largest u . e),
        leaving out the rows ``excluded[b]`` (ascending) of user b; ascending row order."""
        n = len(self.infos)
        masked = None if self.search.approximate else ~self.available
        want = min(n, c + min(len(self._unavailable), c))  # the search itself skips the excluded rows
        out: list[np.ndarray] = []
        for b, rows in enumerate(self.search.search(users, want, self.vectors, masked, excluded)):
            asked = want
            while True:
                keep = rows[self._available[rows] & ~np.isin(rows, excluded[b], assume_unique=False)][:c]
                if len(keep) >= c or asked >= n:
                    break
                asked = min(n, 2 * asked)  # many of the nearest were unavailable: ask for more
                rows = self.search.search(users[b : b + 1], asked, self.vectors, masked, excluded[b : b + 1])[0]
            out.append(np.sort(keep))
        return out

    def _account(self, vectors: np.ndarray, sign: float) -> None:
        if len(vectors):
            v = vectors.astype(np.float64)
            self._sum += sign * v.sum(axis=0)
            self._outer += sign * (v.T @ v)

    def _grow_to(self, n: int) -> None:
        if n <= len(self._available):
            return
        capacity = max(n, 2 * len(self._available))
        vectors = np.zeros((capacity, self.dim), dtype=self.dtype)
        vectors[: len(self.infos)] = self.vectors
        available = np.zeros(capacity, dtype=bool)
        available[: len(self.infos)] = self.available
        self._vectors, self._available = vectors, available
