"""How far sharding the learner by item would carry it: a simulation on a real log (docs/SCALING.md).

    .venv/bin/python benchmarks/learner_sharding.py [--dataset movielens-100k|completejourney] [--shards 1,2,4,8,16,32]

One learner's CF + trending update per event is timed on this machine (GlobalLearner.learn,
the live learner's hot path without fine-tune examples). Then the log is replayed as the
workers would emit it under the sharded design: for each event, a pair record (a, b) for every
item b in the user's recent window, keyed by item a, in both directions, and a count for the
event's item. Items go to shards by hash. A shard's work is the records its items receive. The
projected throughput of K shards is one learner's events/s times total work / the busiest
shard's work (a popular item's records cannot be split), before messaging costs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
import zlib
from collections import deque

import numpy as np

from model.scoring.global_learner import GlobalLearner
from serving.evaluate import load_log

from common import describe  # benchmarks/common.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="movielens-100k")
    parser.add_argument("--shards", default="1,2,4,8,16,32")
    parser.add_argument("--window", type=int, default=20, help="the CF window of a user's recent items")
    args = parser.parse_args()
    events, _ = load_log(args.dataset, None, None)

    learner = GlobalLearner()
    started = time.perf_counter()
    for n, e in enumerate(events):
        learner.learn(f"e{n}", e.user_id, e.item_id, e.type, e.ts)
    one_learner = len(events) / (time.perf_counter() - started)

    work: dict[str, int] = {}
    recent: dict[str, deque] = {}
    pair_records = 0
    for e in events:
        window = recent.setdefault(e.user_id, deque(maxlen=args.window))
        others = [b for b in window if b != e.item_id]
        work[e.item_id] = work.get(e.item_id, 0) + 1 + len(others)  # its count, its side of each pair
        for b in others:
            work[b] = work.get(b, 0) + 1  # the other side
        pair_records += 2 * len(others)
        if e.item_id in window:
            window.remove(e.item_id)
        window.append(e.item_id)
    items = list(work)
    total = sum(work.values())
    hottest = max(work.values())
    print(f"{dt.date.today()}, {describe()}")
    print(
        f"{args.dataset}: {len(events):,} events, {len(items):,} items; one learner {one_learner:,.0f} events/s "
        f"(CF + trending); {pair_records / len(events):.1f} pair records per event; the hottest item gets "
        f"{hottest / total:.1%} of all records"
    )
    print("| shards | busiest shard's share | speed-up | projected events/s |")
    print("|---|---|---|---|")
    for k in (int(s) for s in args.shards.split(",")):
        per_shard = np.zeros(k)
        for item in items:
            per_shard[zlib.crc32(item.encode()) % k] += work[item]
        speedup = total / per_shard.max()
        print(f"| {k} | {per_shard.max() / total:.1%} | {speedup:.2f}x | {one_learner * speedup:,.0f} |")


if __name__ == "__main__":
    main()
