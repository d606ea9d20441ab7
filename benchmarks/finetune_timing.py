"""Micro-fine-tuning benchmark: one LoRA fine-tune cycle on 1,000 MovieLens-100K examples.

The examples are cut from the log exactly as the learner cuts them live: the log is replayed
through the hybrid (:class:`model.evaluation.finetuned_hybrid.FinetunedHybrid` without cycles), each rating
with w > 0 becoming (the worker's history -> next movie) with its prior, the CF + trending
terms the user got just before it; the cycle trains on the newest ``--examples`` of them with
the hybrid objective (:func:`model.finetune.objective.residual_loss`, whole-catalogue softmax). Reports the
cycle's wall time, steps, examples/s, device and trainable parameters, and the time to embed
1,000 catalogue items through the adapter: the first time (the frozen transformer runs) and
again after a promotion (only the adapted projection runs), beside the plain encoder. With
--quality, it also ranks the newest --holdout examples by the hybrid score before and after.

    .venv/bin/python benchmarks/finetune_timing.py [--examples 1000] [--quality]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from model.embedding.encoder import TextEncoder
from model.embedding.item_index import ItemIndex, ItemInfo
from model.embedding.item_text import render_item_text
from model.evaluation.finetuned_hybrid import FinetunedHybrid
from model.evaluation.protocol import Interaction
from model.finetune.adapter import AdaptedEncoder, LoraSettings
from model.finetune.cycle import FinetuneSchedule
from model.finetune.examples import TrainingBuffer, TrainingExample
from model.finetune.guard import holdout_metrics
from model.finetune.training import micro_finetune
from model.scoring.hybrid import HybridWeights

from common import describe  # benchmarks/common.py


def movielens_examples(n: int, encoder: TextEncoder, text_of: dict[str, str]) -> list[TrainingExample]:
    """The newest ``n`` training examples of the log, with their priors, as the learner cuts them."""
    from model.evaluation.datasets import load_ratings

    index = ItemIndex(encoder.dim)
    ids = list(text_of)
    index.upsert([ItemInfo(i, i) for i in ids], encoder.encode([text_of[i] for i in ids]))
    never = FinetuneSchedule(every_events=10**9, buffer_size=n)
    replay = FinetunedHybrid(index, text_of, encoder, HybridWeights(), never)
    for r in load_ratings():
        replay.learn_one(Interaction(r.user_id, r.item_id, r.ts_ms, "rating", r.rating))
    return list(replay.examples.buffer)


def timed_encode(encode, texts: list[str]) -> float:
    encode(["warm-up"])  # loads what loads lazily; no catalogue text gets cached
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    encode(texts)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=1000, help="training examples in the cycle")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument(
        "--targets",
        default="projection",
        help="LoRA target modules, comma-separated (e.g. query,value for every attention layer)",
    )
    parser.add_argument("--budget-s", type=float, default=600.0, help="time box of the cycle")
    parser.add_argument("--quality", action="store_true", help="also HR@10 / NDCG@10 before and after")
    parser.add_argument("--holdout", type=int, default=500, help="most recent examples held out (--quality)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--encoder", default="minilm", help="minilm, smollm2 or a local Hugging Face model directory")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args()

    from model.evaluation.datasets import load_movies

    torch.manual_seed(args.seed)
    movies = load_movies()
    text_of = {m.item_id: render_item_text(m.display_title, m.category, None, m.tags) for m in movies}
    catalogue = list(text_of)
    texts = [text_of[i] for i in catalogue]
    encoder = TextEncoder(args.encoder)
    lora = LoraSettings(target_modules=tuple(args.targets.split(",")))
    first_s = timed_encode(AdaptedEncoder(encoder, lora).encode, texts)  # fresh: the transformer runs
    n_holdout = args.holdout if args.quality else 0
    examples = movielens_examples(args.examples + n_holdout, encoder, text_of)
    train, holdout = examples[: args.examples], examples[args.examples :]
    buffer = TrainingBuffer(max_examples=len(train))
    buffer.extend(train)

    adapted = AdaptedEncoder(encoder, lora)
    weight = HybridWeights().content

    def figures(encode):
        return holdout_metrics(encode, holdout, catalogue, text_of.__getitem__, content_weight=weight)

    before = figures(encoder.encode) if args.quality else None

    steps = math.ceil(len(buffer) / args.batch_size)  # one pass's worth of batches
    report = micro_finetune(
        adapted,
        buffer,
        text_of.__getitem__,
        budget_s=args.budget_s,
        batch_size=args.batch_size,
        lr=args.lr,
        max_steps=steps,
        rng=np.random.default_rng(args.seed),
        temperature=1.0,
        catalogue=catalogue,
        content_weight=weight,
    )
    # The next cycle trains a clone of the adapter in service: the frozen transformer's outputs are
    # cached by then (clones share them), so only the adapter's steps remain.
    warm = micro_finetune(
        adapted.clone(),
        buffer,
        text_of.__getitem__,
        budget_s=args.budget_s,
        batch_size=args.batch_size,
        lr=args.lr,
        max_steps=steps,
        rng=np.random.default_rng(args.seed + 1),
        temperature=1.0,
        catalogue=catalogue,
        content_weight=weight,
    )
    adapted_s = timed_encode(adapted.encode, texts)  # after the cycle: the promotion's re-embedding
    base_s = timed_encode(encoder.encode, texts)
    after = figures(adapted.encode) if args.quality else None

    result = {
        "date": dt.date.today().isoformat(),
        "machine": describe(),
        "device": report.device,
        "precision": report.precision,
        "torch_threads": torch.get_num_threads(),
        "examples": len(buffer),
        "batch_size": args.batch_size,
        "steps": report.steps,
        "examples_seen": report.examples_seen,
        "wall_s": round(report.seconds, 2),
        "wall_s_next_cycle": round(warm.seconds, 2),
        "examples_per_s": round(report.examples_per_s, 1),
        "loss_first": round(report.loss_first, 4),
        "loss_last": round(report.loss_last, 4),
        "trainable_params": report.trainable_params,
        "total_params": adapted.total_parameters(),
        "targets": args.targets,
        "first_embed_s_per_1000_items": round(first_s / len(texts) * 1000, 3),
        "reembed_s_per_1000_items": round(adapted_s / len(texts) * 1000, 4),
        "base_embed_s_per_1000_items": round(base_s / len(texts) * 1000, 3),
        "quality": {"before": before, "after": after, "trained_on": len(buffer)} if args.quality else None,
    }
    print(json.dumps(result, indent=2))
    print(f"\n{result['date']} - {result['machine']} - device {result['device']} ({result['precision']})")
    print(
        f"| fine-tune cycle | {result['examples']:,} examples, batch {args.batch_size} | {report.steps} steps | "
        f"first {result['wall_s']:.2f} s, next {result['wall_s_next_cycle']:.2f} s | "
        f"{result['examples_per_s']:,.1f} examples/s (first) | "
        f"{report.trainable_params:,} trainable params ({report.trainable_params / result['total_params']:.2%}) | "
        f"re-embed {result['reembed_s_per_1000_items']:.4f} s / 1,000 items "
        f"(first embedding {result['first_embed_s_per_1000_items']:.2f} s, plain encoder "
        f"{result['base_embed_s_per_1000_items']:.2f} s) |"
    )
    if args.quality:
        print(
            f"| holdout (last {after['n']} examples, hybrid ranking of the full catalogue) | HR@10 {before['hr']:.4f} -> {after['hr']:.4f} | "
            f"NDCG@10 {before['ndcg']:.4f} -> {after['ndcg']:.4f} |"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
