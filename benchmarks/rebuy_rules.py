"""Which rule ranks a household's own past purchases best: replay the first 30% of the Complete
Journey sample, and at every 5th purchase (with history) rank only the household's past purchases
by each rule; HR@10 over all those scored events (a first-time purchase is a miss for every rule).

    .venv/bin/python benchmarks/rebuy_rules.py [--share 0.3]

The rules: the plain count (what "your most frequent past purchases" ranks by); the count
without the basket being filled (items bought under an hour ago); ``due`` (BuyAgain); the
count weighted exp(-age / tau); and that weighted count times (due + eps). BuyAgain is re-fit
every 1,000 events from RepurchaseCounts, as the learner ships it.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from model.evaluation.grocery import load_complete_journey
from model.scoring.repurchase import DAY_MS, BuyAgain, RepurchaseCounts


def rules(n, age, due, stamps, now) -> dict[str, np.ndarray]:
    fresh = age < 1 / 24  # the basket being filled
    out = {
        "count": n.astype(float),
        "count, not this basket": np.where(fresh, -1.0, n),
        "due": np.where(fresh, -1, due),
    }
    for tau in (30, 60, 90, 180, 365):
        weighted = np.array([np.exp(-(now - t) / DAY_MS / tau).sum() for t in stamps])
        out[f"count x exp(-age/{tau}d)"] = np.where(fresh, -1, weighted)
        for eps in (0.1, 0.3, 1.0):
            out[f"count x exp(-age/{tau}d) x (due + {eps})"] = np.where(fresh, -1, weighted * (due + eps))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--share", type=float, default=0.3, help="the share of the log replayed")
    args = parser.parse_args()
    events, products = load_complete_journey()
    events = events[: int(args.share * len(events))]
    category = {p.item_id: p.category for p in products}
    row: dict[str, int] = {}
    categories: list[str | None] = []
    counts, model = RepurchaseCounts(), None
    mine: dict[str, dict[str, list[int]]] = defaultdict(dict)
    hits: dict[str, int] = defaultdict(int)
    scored = 0
    for index, event in enumerate(events):
        history = mine[event.user_id]
        if index % 5 == 0 and history:
            scored += 1
            items = list(history)
            if event.item_id in history:
                stamps = [np.array(history[i], dtype=float) for i in items]
                n = np.array([len(s) for s in stamps])
                age = np.array([(event.ts - s[-1]) / DAY_MS for s in stamps])
                rows = np.array([row[i] for i in items])
                due = model.due(rows, age) if model is not None else np.zeros(len(items))
                target = items.index(event.item_id)
                for name, score in rules(n, age, due, stamps, event.ts).items():
                    hits[name] += target in np.argsort(-score, kind="stable")[:10]
        if event.item_id not in row:
            row[event.item_id] = len(row)
            categories.append(category.get(event.item_id))
        counts.learn_one(event.user_id, row[event.item_id], event.ts)
        history.setdefault(event.item_id, []).append(event.ts)
        if index % 1000 == 999:
            model = BuyAgain(counts.rows(len(row)), categories)
    print(f"first {len(events):,} events, {scored:,} scored")
    for name, h in sorted(hits.items(), key=lambda kv: -kv[1]):
        print(f"{name:42s} HR@10 {h / scored:.4f}")


if __name__ == "__main__":
    main()
