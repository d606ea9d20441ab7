"""Micro-fine-tuning benchmark: one LoRA fine-tune cycle on 1,000 MovieLens-100K examples.

An example is a user's previous (up to) 20 ratings, weighted stars - 2.5 as the worker weighs
them, and the movie the user rated next; the examples are the most recent ones of the log.
Reports the cycle's wall time, steps, examples/s, device and trainable parameters, and the
time to re-embed 1,000 catalogue items through the adapter (and without it). With --quality,
it fine-tunes on the older examples and compares HR@10 / NDCG@10 before and after on the most
recent --holdout examples, ranking the whole 1,682-movie catalogue.

    .venv/bin/python benchmarks/finetune_timing.py [--examples 1000] [--quality]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import time
from collections import defaultdict, deque
from pathlib import Path

import numpy as np
import torch
from machine import describe  # benchmarks/machine.py

from model.datasets import load_movies, load_ratings
from model.encoder import TextEncoder
from model.finetune import (
    AdaptedEncoder,
    TrainingBuffer,
    TrainingExample,
    holdout_metrics,
    micro_finetune,
)
from model.item_text import render_item_text
from model.preference import event_weight


def movielens_examples(n: int, history_len: int = 20) -> list[TrainingExample]:
    """The last ``n`` (previous <= history_len ratings -> next rated movie) examples of the log."""
    histories: dict[str, deque] = defaultdict(lambda: deque(maxlen=history_len))
    examples: deque[TrainingExample] = deque(maxlen=n)
    for r in load_ratings():
        history = histories[r.user_id]
        if history:
            examples.append(TrainingExample(tuple(history), r.item_id, r.ts_ms))
        history.append((r.item_id, event_weight("rating", r.rating), r.ts_ms))
    return list(examples)


def timed_encode(encode, texts: list[str]) -> float:
    encode(texts[:32])  # warm-up
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
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--budget-s", type=float, default=600.0, help="time box of the cycle")
    parser.add_argument("--quality", action="store_true", help="also HR@10 / NDCG@10 before and after")
    parser.add_argument("--holdout", type=int, default=500, help="most recent examples held out (--quality)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--encoder", default="minilm", help="minilm, smollm2 or a local Hugging Face model directory")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    movies = load_movies()
    text_of = {m.item_id: render_item_text(m.display_title, m.category, None, m.tags) for m in movies}
    n_holdout = args.holdout if args.quality else 0
    examples = movielens_examples(args.examples + n_holdout)
    train, holdout = examples[: args.examples], examples[args.examples :]
    buffer = TrainingBuffer(max_examples=len(train))
    buffer.extend(train)

    encoder = TextEncoder(args.encoder)
    adapted = AdaptedEncoder(encoder)
    catalogue = [m.item_id for m in movies]
    before = holdout_metrics(encoder.encode, holdout, catalogue, text_of.__getitem__) if args.quality else None

    steps = math.ceil(len(buffer) / args.batch_size)  # one pass's worth of batches
    report = micro_finetune(adapted, buffer, text_of.__getitem__, budget_s=args.budget_s,
                            batch_size=args.batch_size, lr=args.lr, max_steps=steps,
                            rng=np.random.default_rng(args.seed))
    texts = [text_of[i] for i in catalogue]
    adapted_s = timed_encode(adapted.encode, texts)
    base_s = timed_encode(encoder.encode, texts)
    after = holdout_metrics(adapted.encode, holdout, catalogue, text_of.__getitem__) if args.quality else None

    result = {
        "date": dt.date.today().isoformat(), "machine": describe(), "device": report.device,
        "precision": report.precision, "torch_threads": torch.get_num_threads(),
        "examples": len(buffer), "batch_size": args.batch_size, "steps": report.steps,
        "examples_seen": report.examples_seen, "wall_s": round(report.seconds, 2),
        "examples_per_s": round(report.examples_per_s, 1), "loss_first": round(report.loss_first, 4),
        "loss_last": round(report.loss_last, 4), "trainable_params": report.trainable_params,
        "total_params": adapted.total_parameters(),
        "reembed_s_per_1000_items": round(adapted_s / len(texts) * 1000, 3),
        "base_embed_s_per_1000_items": round(base_s / len(texts) * 1000, 3),
        "quality": {"before": before, "after": after, "trained_on": len(buffer)} if args.quality else None,
    }
    print(json.dumps(result, indent=2))
    print(f"\n{result['date']} - {result['machine']} - device {result['device']} ({result['precision']})")
    print(f"| fine-tune cycle | {result['examples']:,} examples, batch {args.batch_size} | {report.steps} steps | "
          f"{result['wall_s']:.1f} s | {result['examples_per_s']:,.1f} examples/s | "
          f"{report.trainable_params:,} trainable params ({report.trainable_params / result['total_params']:.2%}) | "
          f"re-embed {result['reembed_s_per_1000_items']:.2f} s / 1,000 items "
          f"(base {result['base_embed_s_per_1000_items']:.2f} s) |")
    if args.quality:
        print(f"| holdout (last {after['n']} examples, full catalogue) | HR@10 {before['hr']:.4f} -> {after['hr']:.4f} | "
              f"NDCG@10 {before['ndcg']:.4f} -> {after['ndcg']:.4f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
