"""Settings chosen on the first 30% of a log only: one prequential run per grid, every setting in it.

    .venv/bin/python benchmarks/tune_first_30.py ease                  # MovieLens-100K
    .venv/bin/python benchmarks/tune_first_30.py sasrec
    .venv/bin/python benchmarks/tune_first_30.py category --dataset completejourney
    .venv/bin/python benchmarks/tune_first_30.py rebuy --dataset completejourney

Prints HR@10 / NDCG@10 per setting and, for the hybrid grids, each setting's paired difference
from the first one with its standard error (docs/BENCHMARKS.md section 12).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from rich.console import Console

from model.evaluation.baselines import FrequentPurchases, PeriodicEASE
from model.evaluation.online_hybrid import OnlineHybrid
from model.evaluation.prequential import prequential
from model.evaluation.sasrec import PeriodicSASRec
from serving.evaluate import embed_catalogue, has_repeats, load_log
from stream.config import Settings


def ease_grid() -> list:
    models = [PeriodicEASE(1_000, lam, name=f"ease-l{lam:g}") for lam in (150, 500)]
    models += [
        PeriodicEASE(1_000, lam, half_life_days=h, name=f"ease-l{lam:g}-h{h:g}")
        for lam in (150, 500)
        for h in (120, 365)
    ]
    return models


def sasrec_grid() -> list:
    return [
        PeriodicSASRec(5_000, epochs=30, learning_rate=5e-3, name="sasrec-lr5e-3-ep30"),
        PeriodicSASRec(5_000, epochs=60, learning_rate=2e-3, name="sasrec-lr2e-3-ep60"),
    ]


def category_grid(items, betas: list[float]) -> list:
    catalogue = embed_catalogue(items, None, Console())
    s = Settings()
    weights, policy, sizes = s.hybrid_weights(), s.serving_policy(), s.candidate_sizes()
    return [
        OnlineHybrid(
            catalogue.index, replace(weights, category_trending=b), f"category-{b:g}", policy=policy, sizes=sizes
        )
        for b in betas
    ]


def rebuy_grid(items, betas: list[float], thresholds: list[float]) -> list:
    """The buy-again weight and due threshold, with "your most frequent past purchases" beside them."""
    catalogue = embed_catalogue(items, None, Console())
    s = Settings()
    weights, policy, sizes = s.hybrid_weights(), s.serving_policy(), s.candidate_sizes()
    models: list = [
        OnlineHybrid(
            catalogue.index,
            replace(weights, repurchase=b),
            f"rebuy-b{b:g}-due{due:g}",
            policy=replace(policy, due_threshold=due),
            sizes=sizes,
        )
        for b in betas
        for due in thresholds
    ]
    return [*models, FrequentPurchases()]


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grid", choices=["ease", "sasrec", "category", "rebuy"])
    parser.add_argument("--dataset", default="movielens-100k", help="as `streamrec evaluate --dataset`")
    parser.add_argument("--betas", default=None, help="category grid: the betas tried (0,0.1,0.3); rebuy: 1,3")
    parser.add_argument("--due", default="0.02,0.1", help="rebuy grid: the due thresholds tried")
    parser.add_argument("--eval-every", type=int, default=5)
    args = parser.parse_args()
    events, items = load_log(args.dataset, None, None)
    events = events[: int(0.3 * len(events))]
    if args.grid == "ease":
        models = ease_grid()
    elif args.grid == "sasrec":
        models = sasrec_grid()
    elif args.grid == "rebuy":
        models = rebuy_grid(items, floats(args.betas or "1,3"), floats(args.due))
    else:
        models = category_grid(items, floats(args.betas or "0,0.1,0.3"))
    started = time.time()
    result = prequential(events, models, k=10, eval_every=args.eval_every, exclude_seen=not has_repeats(events))
    print(f"{args.dataset}: first {len(events):,} events, {result.n_scored:,} scored, {time.time() - started:.0f} s")
    for name, m in result.metrics.items():
        print(f"{name:24s} HR@10 {m['hr']:.4f}  NDCG@10 {m['ndcg']:.4f}")
    for name, diffs in result.paired.items():
        hr, ndcg = diffs["hr"], diffs["ndcg"]
        print(
            f"{name:24s} - {models[0].name}: HR {hr.mean:+.4f} (SE {hr.standard_error:.4f}), "
            f"NDCG {ndcg.mean:+.4f} (SE {ndcg.standard_error:.4f})"
        )


if __name__ == "__main__":
    main()
