"""The worker's ingest step in one process, without a broker: what one event costs, and where.

The real :class:`IngestProcessor` (parse -> dedupe -> state update -> two-stage hybrid list ->
publish -> save) over a dict table and sinks that only count, fed in batches as a poll would
feed it. The catalogue (``--items``, MiniLM embeddings of generated product texts, cached) and
the learner's snapshot (sparse CF + trending learned from ``--learn`` events of the same
Zipf workload as ``catalogue_scale.py``) are in place first; then ``--events`` events of
``--users`` users are processed ``--batch`` at a time. Reports events/s and lists/s, and with
``--profile`` the top functions by own time (cProfile).

    .venv/bin/python benchmarks/worker_profile.py --items 100000 --profile
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the worker's one core

from catalogue_scale import N_CATEGORIES, vector_chunks, workload

from common import describe


def build(args):
    from model.embedding.item_index import ItemIndex, ItemInfo
    from model.scoring.global_learner import GlobalLearner
    from model.scoring.snapshot import GlobalSnapshot
    from stream.config import Settings
    from stream.worker.ingest import IngestProcessor

    _, chunks = vector_chunks(args.items, real_up_to=100_000)
    index = ItemIndex(384, capacity=args.items)
    start = 0
    for block in chunks:
        rows = range(start, start + len(block))
        index.upsert([ItemInfo(f"sku-{i}", f"item {i}", f"category {i % N_CATEGORIES}") for i in rows], block)
        start += len(block)
    learner = GlobalLearner()
    for k, (user, row, ts) in enumerate(workload(args.items, args.learn, args.users, seed=1)):
        learner.learn(f"l{k}", user, f"sku-{row}", "click", ts)
    published: list[int] = []

    async def publish(key: bytes, value: bytes | None) -> None:
        published.append(len(value or b""))

    async def dead_letter(*_) -> None:
        raise AssertionError("no event of this workload is malformed")

    processor = IngestProcessor(Settings(), index, {}, publish, dead_letter, "all-MiniLM-L6-v2")
    data = GlobalSnapshot.from_bytes(learner.snapshot().to_bytes())
    cf, trending = data.for_items([info.item_id for info in index.infos])
    processor.recommender = processor._scorer(index, cf, trending)
    processor.global_version = "bench"
    return processor, published


def records(args) -> list:
    from stream.schemas import now_ms
    from stream.worker.ingest import SourceRecord

    now = now_ms()
    out = []
    for k, (user, row, _) in enumerate(workload(args.items, args.events, args.users, seed=2)):
        event = {"event_id": f"e{k}", "user_id": user, "item_id": f"sku-{row}", "type": "click", "ts": now}
        out.append(SourceRecord(json.dumps(event).encode(), "events", 0, k))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--learn", type=int, default=40_000, help="events the learner's snapshot is made of")
    parser.add_argument("--events", type=int, default=10_000, help="events the worker processes (timed)")
    parser.add_argument("--batch", type=int, default=16, help="events per poll")
    parser.add_argument("--profile", action="store_true", help="print the top functions by own time")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="tottime", help="cProfile order: tottime or cumulative")
    args = parser.parse_args()

    processor, published = build(args)
    batches = [(recs := records(args))[s : s + args.batch] for s in range(0, args.events, args.batch)]
    warm, timed = batches[: len(batches) // 10], batches[len(batches) // 10 :]

    async def run(batches) -> float:
        started = time.perf_counter()
        for batch in batches:
            await processor.process(batch)
        return time.perf_counter() - started

    asyncio.run(run(warm))
    n_lists = len(published)
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    elapsed = asyncio.run(run(timed))
    if profiler:
        profiler.disable()
    events = sum(len(b) for b in timed)
    lists = len(published) - n_lists
    print(describe())
    print(
        f"items {args.items:,}, batch {args.batch}: {events / elapsed:,.0f} events/s, {lists / elapsed:,.0f} lists/s, "
        f"{1000 * elapsed / lists:.2f} ms per list ({lists:,} lists of {events:,} events)"
    )
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(args.sort).print_stats(args.top)
        print(out.getvalue())
    del recs


if __name__ == "__main__":
    main()
