"""Catalogue scale: the two-stage hybrid and the sparse learner from 1.7k to 10^6 items.

For each catalogue size, two fresh child processes (so each RSS is its own):

- **learner**: a Zipf workload (users with a home category, Zipf popularity inside it) learned
  by :class:`GlobalLearner` (sparse CF + trending): events/s, snapshot build time and bytes,
  peak RSS;
- **worker**: the catalogue in an :class:`ItemIndex` (exact search below 50k items, a faiss HNSW
  graph above), the learner's snapshot laid out in its rows, users built from their events, then
  one list at a time on one core through :class:`HybridScorer` (two stages): per-list p50 / p99,
  ANN recall@100 of the content candidates against exact search, peak RSS.

Item vectors: MiniLM embeddings of generated item texts up to ``--real-up-to`` items (cached in
``$STREAMREC_CACHE_DIR``), clustered random unit vectors (384-d) beyond, as the report says.

    .venv/bin/python benchmarks/catalogue_scale.py --sizes 1682,10000,100000,1000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # "on one core"

import numpy as np

from common import describe, proc_status_mb

N_CATEGORIES = 200
ADJECTIVES = (
    "red",
    "blue",
    "green",
    "black",
    "white",
    "light",
    "heavy",
    "small",
    "large",
    "classic",
    "modern",
    "vintage",
    "soft",
    "waterproof",
    "organic",
    "wooden",
    "steel",
    "cotton",
    "leather",
    "smart",
)
NOUNS = (
    "shoes",
    "jacket",
    "lamp",
    "chair",
    "mug",
    "backpack",
    "watch",
    "headphones",
    "blender",
    "novel",
    "puzzle",
    "tent",
    "racket",
    "candle",
    "shampoo",
    "notebook",
    "leash",
    "suitcase",
    "guitar",
    "drill",
)


def item_text(i: int) -> str:
    rng = np.random.default_rng(i)
    adjective, noun = ADJECTIVES[rng.integers(len(ADJECTIVES))], NOUNS[(i % N_CATEGORIES) % len(NOUNS)]
    return f"{adjective.title()} {noun} model {i % 997}. category {i % N_CATEGORIES}. {ADJECTIVES[i % 20]} {noun}"


def vector_chunks(n: int, real_up_to: int, chunk: int = 50_000) -> tuple[str, Iterator[np.ndarray]]:
    """The catalogue's vectors in row order, ``chunk`` rows at a time (never all of 10^6 in float32)."""
    if n <= real_up_to:
        from model.embedding.encoder import TextEncoder
        from model.wheel_cache import cache_dir

        path = cache_dir() / f"scale-minilm-{n}.npy"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, TextEncoder().encode([item_text(i) for i in range(n)]))
        vectors = np.load(path)
        return "MiniLM embeddings of generated item texts", (vectors[s : s + chunk] for s in range(0, n, chunk))

    def random_chunks() -> Iterator[np.ndarray]:
        rng = np.random.default_rng(0)
        centres = rng.standard_normal((N_CATEGORIES, 384)).astype(np.float32)
        for start in range(0, n, chunk):
            rows = np.arange(start, min(n, start + chunk))
            block = centres[rows % N_CATEGORIES] + 0.8 * rng.standard_normal((len(rows), 384)).astype(np.float32)
            yield block / np.linalg.norm(block, axis=1, keepdims=True)

    return "clustered random unit vectors (384-d, 200 clusters)", random_chunks()


def workload(n_items: int, n_events: int, n_users: int, seed: int = 0) -> list[tuple[str, int, int]]:
    """(user, item row, ts) events: each user has a home category (80% of their events), items
    inside a category and over the catalogue drawn by Zipf popularity."""
    rng = np.random.default_rng(seed)
    home = rng.integers(N_CATEGORIES, size=n_users)
    users = rng.integers(n_users, size=n_events)
    per_category = max(1, n_items // N_CATEGORIES)
    rank = np.minimum(rng.zipf(1.2, size=n_events) - 1, per_category - 1)
    at_home = rng.random(n_events) < 0.8
    anywhere = np.minimum(rng.zipf(1.1, size=n_events) - 1, n_items - 1)
    items = np.where(at_home, np.minimum(home[users] + N_CATEGORIES * rank, n_items - 1), anywhere)
    return [(f"u{u}", int(i), 1_700_000_000_000 + 1000 * t) for t, (u, i) in enumerate(zip(users, items, strict=True))]


def learner_child(n: int, args) -> dict:
    from model.scoring.global_learner import GlobalLearner

    events = workload(n, args.events, args.users)
    ids = [f"sku-{i}" for i in range(n)]
    learner = GlobalLearner()
    started = time.perf_counter()
    for k, (user, row, ts) in enumerate(events):
        learner.learn(f"e{k}", user, ids[row], "click", ts)
    learn_s = time.perf_counter() - started
    started = time.perf_counter()
    snapshot = learner.snapshot()
    data = snapshot.to_bytes()
    build_s = time.perf_counter() - started
    Path(args.snapshot).write_bytes(data)
    return {
        "learner_events_per_s": round(len(events) / learn_s),
        "snapshot_bytes": len(data),
        "snapshot_build_s": round(build_s, 2),
        "cf_pairs": learner.cf.n_pairs,
        "learner_peak_rss_mb": round(proc_status_mb(os.getpid(), "VmHWM")),
    }


def worker_child(n: int, args) -> dict:
    import faiss

    from model.embedding.item_index import ItemIndex, ItemInfo
    from model.scoring.hybrid import HybridScorer
    from model.scoring.snapshot import GlobalSnapshot
    from model.user.state import UserState

    faiss.omp_set_num_threads(os.cpu_count() or 1)  # the graph is built on every core, searched on one
    source, chunks = vector_chunks(n, args.real_up_to)
    started = time.perf_counter()
    index = ItemIndex(384, capacity=n, dtype=np.float16 if n > args.float16_above else np.float32)
    start = 0
    for block in chunks:
        rows = range(start, start + len(block))
        index.upsert([ItemInfo(f"sku-{i}", f"item {i}", f"category {i % N_CATEGORIES}") for i in rows], block)
        start += len(block)
    index_s = time.perf_counter() - started
    faiss.omp_set_num_threads(1)
    snapshot = GlobalSnapshot.from_bytes(Path(args.snapshot).read_bytes())
    cf, trending = snapshot.for_items([info.item_id for info in index.infos])
    scorer = HybridScorer(index, cf, trending)
    states: dict[str, UserState] = {}
    for k, (user, row, ts) in enumerate(workload(n, args.events, args.users)):
        state = states.setdefault(user, UserState.new(384))
        state.learn(f"e{k}", f"sku-{row}", "click", None, ts, index.vectors[row])
    users = list(states)[: args.lists]
    for user in users[:20]:  # warm-up
        scorer.recommend([states[user]], k=10)
    times = []
    for user in users:
        t = time.perf_counter()
        scorer.recommend([states[user]], k=10)
        times.append(time.perf_counter() - t)
    serving_rss = proc_status_mb(os.getpid(), "VmHWM")  # the worker's peak, before the exact reference below
    probe = np.stack([states[u].preference.direction() for u in users[:200]])
    none = [np.zeros(0, dtype=np.int64)] * len(probe)
    found = index.nearest(probe, 100, none)
    best = np.zeros((len(probe), 0), dtype=np.int64)
    best_scores = np.zeros((len(probe), 0), dtype=np.float32)
    for start in range(0, n, 100_000):  # exact top-100 in chunks: no (200 x 10^6) score matrix
        scores = np.concatenate([best_scores, probe @ index.vectors[start : start + 100_000].astype(np.float32).T], 1)
        rows = np.concatenate(
            [
                best,
                np.broadcast_to(
                    np.arange(start, min(n, start + 100_000)), (len(probe), scores.shape[1] - best.shape[1])
                ),
            ],
            1,
        )
        keep = np.argpartition(-scores, min(99, scores.shape[1] - 1), axis=1)[:, :100]
        best, best_scores = np.take_along_axis(rows, keep, 1), np.take_along_axis(scores, keep, 1)
    recall = float(np.mean([len(set(f.tolist()) & set(e.tolist())) / 100 for f, e in zip(found, best, strict=True)]))
    return {
        "vectors": source,
        "search": "HNSW (faiss, SQ8)" if index.search.approximate else "exact",
        "vector_dtype": str(index.dtype),
        "index_build_s": round(index_s, 1),
        "list_p50_ms": round(1000 * float(np.percentile(times, 50)), 2),
        "list_p99_ms": round(1000 * float(np.percentile(times, 99)), 2),
        "lists": len(times),
        "ann_recall_at_100": round(recall, 3),
        "worker_peak_rss_mb": round(serving_rss),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1682,10000,100000,1000000")
    parser.add_argument("--real-up-to", type=int, default=100_000, help="largest catalogue with real MiniLM vectors")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--lists", type=int, default=1_000, help="lists timed per size")
    parser.add_argument("--float16-above", type=int, default=100_000, help="store vectors as float16 above this size")
    parser.add_argument("--out", type=Path, default=Path("reports/bench-catalogue-scale.json"))
    parser.add_argument("--child", choices=["learner", "worker"], help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--snapshot", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = (learner_child if args.child == "learner" else worker_child)(args.n, args)
        print(json.dumps(result))
        return

    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            row = {"items": n}
            for child in ("learner", "worker"):
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    child,
                    "--n",
                    str(n),
                    "--snapshot",
                    f"{tmp}/snap.npz",
                    "--events",
                    str(args.events),
                    "--users",
                    str(args.users),
                    "--lists",
                    str(args.lists),
                    "--real-up-to",
                    str(args.real_up_to),
                    "--float16-above",
                    str(args.float16_above),
                ]
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode:
                    raise RuntimeError(f"{child} at {n:,} items failed:\n{out.stderr[-3000:]}")
                row.update(json.loads(out.stdout.strip().splitlines()[-1]))
            rows.append(row)
            print(json.dumps(row), flush=True)
    base = rows[0]["list_p50_ms"]
    for row in rows:
        row["p50_vs_smallest"] = round(row["list_p50_ms"] / base, 2)
    result = {
        "date": dt.date.today().isoformat(),
        "machine": describe(),
        "events": args.events,
        "users": args.users,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{result['date']} - {result['machine']} - {args.events:,} events of {args.users:,} users\n")
    print(
        "| items | vectors | search (dtype) | list p50 / p99 ms | x smallest | ANN recall@100 | worker RSS MB | "
        "learner events/s | learner RSS MB | snapshot MB | snapshot build s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['items']:,} | {r['vectors']} | {r['search']} ({r['vector_dtype']}) | {r['list_p50_ms']} / {r['list_p99_ms']} | "
            f"{r['p50_vs_smallest']} | {r['ann_recall_at_100']} | {r['worker_peak_rss_mb']:,} | "
            f"{r['learner_events_per_s']:,} | {r['learner_peak_rss_mb']:,} | {r['snapshot_bytes'] / 1e6:.1f} | "
            f"{r['snapshot_build_s']} |"
        )


if __name__ == "__main__":
    main()
