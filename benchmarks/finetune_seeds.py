"""Is the fine-tuned hybrid's gain a property of the method or of one random draw?

Replays MovieLens-100K prequentially (as `streamrec evaluate --eval-every 5`, AUC off) through
the frozen hybrid and the fine-tuned hybrid, on the live learner's fine-tune schedule
(``Settings().finetune_schedule()``), at several seeds (the seed sets the LoRA weights'
initial draw and the batches), all in one run, and prints each seed's HR@10 / NDCG@10 and its
paired difference from the frozen hybrid on the same scored events.

    .venv/bin/python benchmarks/finetune_seeds.py --seeds 0,1,2 [--limit 30000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from rich.console import Console

from model.evaluation.finetuned_hybrid import FinetunedHybrid
from model.evaluation.prequential import prequential
from serving.evaluate import embed_catalogue, load_log, model_factories
from stream.config import Settings

from common import describe  # benchmarks/common.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds of the fine-tuned hybrid")
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--limit", type=int, default=None, help="replay only the first N events")
    args = parser.parse_args()

    console = Console()
    events, items = load_log("movielens-100k", None, None)
    events = events[: args.limit] if args.limit else events
    catalogue = embed_catalogue(items, None, console)
    seeds = [int(s) for s in args.seeds.split(",")]
    settings = Settings()  # the live learner's schedule and betas (STREAMREC_* if set)
    models = [model_factories(catalogue, settings)["hybrid"]()] + [
        FinetunedHybrid(
            catalogue.index,
            catalogue.texts,
            catalogue.encoder,
            settings.hybrid_weights(),
            settings.finetune_schedule(),
            name=f"hybrid-finetuned seed {seed}",
            seed=seed,
        )
        for seed in seeds
    ]
    console.print(f"schedule: {settings.finetune_schedule()}")
    started = time.perf_counter()
    result = prequential(events, models, k=10, eval_every=args.eval_every, auc_negatives=0)
    console.print(
        f"{dt.date.today()} - {describe()} - {len(events):,} events, {result.n_scored:,} scored, "
        f"{time.perf_counter() - started:.0f} s"
    )
    for model in models:
        m = result.metrics[model.name]
        cycles = getattr(model, "cycles", [])
        promoted = sum(c.outcome == "promoted" for c in cycles)
        console.print(
            f"| {model.name} | HR@10 {m['hr']:.4f} | NDCG@10 {m['ndcg']:.4f} |"
            + (f" {len(cycles)} cycles, {promoted} promoted |" if cycles else "")
        )
    console.print(result.paired_markdown())


if __name__ == "__main__":
    main()
