"""Approximate nearest neighbours of a user vector among the item vectors: the content stage of
candidate retrieval.

:class:`VectorSearch` answers "the c items of largest u . e_i" for a batch of user vectors.
Below ``exact_below`` items it is exact (one matrix product over the catalogue, faster than
any index at that size); from there on it is a faiss HNSW graph over 8-bit scalar-quantised
vectors (inner product), updated online: new rows are added as they come, a changed vector is
added again and its old entry is skipped at search time, and the graph is rebuilt when a
quarter of its entries are stale. Which rows may be served is the caller's mask, applied to the
results (the search asks for more than c when rows are masked).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class VectorSearch:
    """Top-c inner-product search over the rows of the caller's growing (n, d) matrix of unit
    vectors (the item index's), told of every change through :meth:`update`.

    ``exact_below``: catalogues smaller than this are searched exactly; ``hnsw_m`` and
    ``ef_search`` set the graph's degree and the search breadth (recall against speed).

    >>> matrix = np.array([[1, 0], [0.8, 0.6], [0, 1]], dtype=np.float32)
    >>> search = VectorSearch(dim=2)
    >>> search.update(np.arange(3), matrix)
    >>> search.search(np.array([[1.0, 0.0]], dtype=np.float32), 2, matrix)[0].tolist()
    [0, 1]
    """

    def __init__(
        self, dim: int, exact_below: int = 50_000, hnsw_m: int = 32, ef_search: int = 128, ef_construction: int = 80
    ) -> None:
        self.dim = dim
        self.exact_below = exact_below
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.ef_construction = ef_construction
        self._graph: Any = None  # faiss IndexHNSWSQ, once the catalogue reached exact_below rows
        self._entry_row = np.zeros(0, dtype=np.int64)  # graph entry -> row
        self._row_entry = np.zeros(0, dtype=np.int64)  # row -> its current graph entry (-1: none)
        self._stale = 0  # entries of vectors changed since (skipped by searches)

    @property
    def approximate(self) -> bool:
        return self._graph is not None

    def update(self, rows: np.ndarray, matrix: np.ndarray) -> None:
        """Rows ``rows`` of ``matrix`` (the whole (n, d) matrix) were added or changed."""
        if self._graph is None:
            if len(matrix) >= self.exact_below:
                self._build(matrix)
            return
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows):
            self._add(rows, matrix[rows])
        if self._stale > len(self._entry_row) // 4:
            self._build(matrix)

    def rebuild(self, matrix: np.ndarray) -> None:
        """Search over a whole new matrix, e.g. the catalogue re-embedded by a promoted adapter
        (run it off the event loop: the graph of 10^6 items takes minutes)."""
        self._graph = None
        if len(matrix) >= self.exact_below:
            self._build(matrix)

    def search(
        self,
        users: np.ndarray,
        c: int,
        matrix: np.ndarray,
        masked: np.ndarray | None = None,
        excluded: Sequence[np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        """For each user vector (rows of ``users``), the rows of ``matrix`` of its ``c`` largest
        u . e, best first, leaving out the rows where ``masked`` holds and user b's rows
        ``excluded[b]``. The graph skips a user's excluded rows while it searches (a faiss ID
        selector), so they cost no breadth: a user who just saw 50 items asks for c, not c + 50."""
        users = np.ascontiguousarray(users, dtype=np.float32)
        n_rows = len(matrix)
        c = max(0, min(c, n_rows))
        if c == 0:
            return [np.zeros(0, dtype=np.int64) for _ in users]
        if self._graph is None:
            return self._exact(users, c, matrix, masked, excluded)
        n_masked = 0 if masked is None else int(masked.sum())
        want = min(c + n_masked + self._stale, len(self._entry_row))
        if excluded is None or not any(len(e) for e in excluded):
            self._graph.hnsw.efSearch = max(self.ef_search, want)
            _, entries = self._graph.search(users, want)
        else:
            entries = np.stack([self._search_skipping(u, want, e) for u, e in zip(users, excluded, strict=True)])
        out = []
        for found in entries:
            found = found[found >= 0]
            rows = self._entry_row[found]
            keep = (self._row_entry[rows] == found) & (rows < n_rows)  # not a stale copy of a changed vector
            rows = rows[keep]
            if masked is not None:
                rows = rows[~masked[rows]]
            out.append(rows[:c])
        return out

    def _search_skipping(self, user: np.ndarray, want: int, rows: np.ndarray) -> np.ndarray:
        """Graph entries nearest to one user, never the current entries of ``rows``."""
        import faiss

        skip = self._row_entry[rows[rows < len(self._row_entry)]]
        skip = np.ascontiguousarray(skip[skip >= 0], dtype=np.int64)
        params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # built by SWIG, not in the stubs
        batch = faiss.IDSelectorBatch(len(skip), faiss.swig_ptr(skip))
        params.sel = faiss.IDSelectorNot(batch)
        params.efSearch = max(self.ef_search, want)
        _, entries = self._graph.search(user[None, :], want, params=params)
        return entries[0]

    @staticmethod
    def _exact(
        users: np.ndarray,
        c: int,
        matrix: np.ndarray,
        masked: np.ndarray | None,
        excluded: Sequence[np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        scores = users @ np.asarray(matrix, dtype=np.float32).T
        if masked is not None:
            scores[:, masked] = -np.inf
        for b, rows in enumerate(excluded or ()):
            scores[b, rows[rows < scores.shape[1]]] = -np.inf
        out = []
        for row in scores:
            top = np.argpartition(-row, c - 1)[:c]
            top = top[np.argsort(-row[top], kind="stable")]
            out.append(top[np.isfinite(row[top])])
        return out

    def _build(self, matrix: np.ndarray) -> None:
        import faiss

        graph = faiss.IndexHNSWSQ(
            self.dim,
            faiss.ScalarQuantizer.QT_8bit,  # type: ignore[arg-type]  # the stubs want the enum's class
            self.hnsw_m,
            faiss.METRIC_INNER_PRODUCT,
        )
        graph.hnsw.efConstruction = self.ef_construction
        sample = np.random.default_rng(0).choice(len(matrix), size=min(len(matrix), 100_000), replace=False)
        graph.train(np.ascontiguousarray(matrix[np.sort(sample)], dtype=np.float32))
        for start in range(0, len(matrix), 100_000):  # in chunks: no float32 copy of a float16 matrix
            graph.add(np.ascontiguousarray(matrix[start : start + 100_000], dtype=np.float32))
        self._graph = graph
        self._entry_row = np.arange(len(matrix), dtype=np.int64)
        self._row_entry = np.arange(len(matrix), dtype=np.int64)
        self._stale = 0

    def _add(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        first = len(self._entry_row)
        self._graph.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self._entry_row = np.concatenate([self._entry_row, rows])
        need = int(rows.max()) + 1
        if need > len(self._row_entry):
            grown = np.full(max(need, 2 * len(self._row_entry)), -1, dtype=np.int64)
            grown[: len(self._row_entry)] = self._row_entry
            self._row_entry = grown
        self._stale += int((self._row_entry[rows] >= 0).sum())
        self._row_entry[rows] = np.arange(first, first + len(rows))
