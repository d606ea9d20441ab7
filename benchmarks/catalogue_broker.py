"""A large catalogue through the real system: broker, worker and learner on this machine.

An embedded broker, the contract's topics, a worker and the learner (fine-tuning off: a fine-tune
example's prior is over the whole catalogue, 2 bytes per item), ``--items`` product texts sent
on ``items`` and indexed by the worker (MiniLM), then ``--events`` events of ``--users`` users
(Zipf over the catalogue, a home category per user) paced at ``--rate`` per second. Every list
is read back: users served, event -> list latency per event, peak RSS of worker and learner.

    .venv/bin/python benchmarks/catalogue_broker.py --items 100000 --events 20000 --users 2000 --rate 500
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import cast

import numpy as np
from catalogue_scale import N_CATEGORIES, item_text

from serving.demo import RecommendationTally, follow_recommendations
from serving.sdk import EventProducer
from stream.broker import EmbeddedBroker, free_port
from stream.config import Settings
from stream.kafka.topics import create_topics
from stream.metrics import metric_sum, scrape
from stream.process import StreamProcess
from stream.schemas import Event, Item

from common import cpu_seconds, describe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--out", type=Path, default=Path("reports/bench-catalogue-broker.json"))
    parser.add_argument(
        "--profile-s",
        type=float,
        default=0.0,
        help="sample the worker with py-spy for this long once events flow; prints its top functions",
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-catalogue-"))
    broker = EmbeddedBroker("noida", data_dir=workdir / "broker").start()
    worker = learner = None
    stop = threading.Event()
    try:
        settings = Settings(
            bootstrap=broker.bootstrap,
            topic_prefix="bench-catalogue.",
            app_id="bench-catalogue",
            metrics_port=free_port(),
            learner_metrics_port=free_port(),
            data_dir=str(workdir / "worker"),
            model_store=str(workdir / "models"),
            finetune=False,
            catalogue_wait_s=3600,
            instance_id="bench-worker-0",
        )
        create_topics(settings)
        worker = StreamProcess(settings, workdir / "worker.log")
        learner = StreamProcess(settings, workdir / "learner.log", module="stream.learner")
        worker.start()
        learner.start()
        with EventProducer(settings) as producer:
            started = time.monotonic()
            for i in range(args.items):
                producer.send_item(
                    Item(
                        item_id=f"sku-{i}",
                        title=item_text(i).split(".")[0],
                        category=f"category {i % N_CATEGORIES}",
                        description=item_text(i),
                    )
                )
            producer.flush()
            worker.wait_ready(args.items, timeout_s=7200)
            index_s = time.monotonic() - started
            print(f"{args.items:,} items indexed in {index_s:.0f} s", flush=True)

            tally = RecommendationTally(10)
            reader = threading.Thread(target=follow_recommendations, args=(settings, tally, stop), daemon=True)
            reader.start()
            rng = np.random.default_rng(0)
            home = rng.integers(N_CATEGORIES, size=args.users)
            per_category = max(1, args.items // N_CATEGORIES)
            spy = None
            if args.profile_s:
                raw = args.out.with_suffix(".pyspy.txt")
                raw.parent.mkdir(parents=True, exist_ok=True)
                spy = subprocess.Popen(
                    [
                        str(Path(sys.executable).with_name("py-spy")),
                        *("record", "--pid", str(cast(subprocess.Popen, worker.process).pid)),
                        *("--duration", str(int(args.profile_s)), "--rate", "200", "--nonblocking"),
                        *("--format", "raw", "--output", str(raw)),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            processes = {"worker": worker, "learner": learner, "broker": broker}
            cpu_before = {name: cpu_seconds(p.process.pid) for name, p in processes.items() if p.process}
            cpu_before["this benchmark (producer, list reader)"] = cpu_seconds(os.getpid())
            started = time.monotonic()
            for k in range(args.events):
                delay = started + k / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                user = int(rng.integers(args.users))
                rank = min(int(rng.zipf(1.2)) - 1, per_category - 1)
                item = min(int(home[user]) + N_CATEGORIES * rank, args.items - 1)
                event = Event(
                    event_id=f"e{k}",
                    user_id=f"u{user}",
                    item_id=f"sku-{item}",
                    type="click",
                    ts=int(time.time() * 1000),
                )
                tally.sent(event)
                producer.send(event)
            producer.flush()
            send_s = time.monotonic() - started
        deadline = time.monotonic() + 600
        while metric_sum(scrape(settings.metrics_port), "streamrec_events_total") < args.events:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the worker did not process {args.events:,} events; see {worker.log_path}")
            time.sleep(0.5)
        drained_s = time.monotonic() - started
        cpu_used = {name: cpu_seconds(p.process.pid) - cpu_before[name] for name, p in processes.items() if p.process}
        cpu_used["this benchmark (producer, list reader)"] = (
            cpu_seconds(os.getpid()) - cpu_before["this benchmark (producer, list reader)"]
        )
        time.sleep(3.0)  # the reader catches up
        samples = scrape(settings.metrics_port)
        sent_users = set(tally.unserved)  # every user sent an event has an entry there
        latencies = np.array(tally.latencies_ms) if tally.latencies_ms else np.zeros(1)
        result = {
            "date": dt.date.today().isoformat(),
            "machine": describe(),
            "items": args.items,
            "events": args.events,
            "users": args.users,
            "rate": args.rate,
            "index_s": round(index_s),
            "send_s": round(send_s, 1),
            "users_sent": len(sent_users),
            "users_served": len(tally.last_list),
            "events_with_a_list": len(tally.latencies_ms),
            "drained_s": round(drained_s, 1),
            "cpu_ms_per_event": {name: round(1000 * used / args.events, 2) for name, used in cpu_used.items()},
            "latency_ms": {f"p{q}": round(float(np.percentile(latencies, q)), 1) for q in (50, 95, 99)},
            "global_swaps_ok": int(metric_sum(samples, "streamrec_model_swaps_total", outcome="ok")),
            "model_version": tally.last_model_version,
            "worker_peak_rss_mb": round(worker.peak_rss_mb() or 0),
            "learner_peak_rss_mb": round(learner.peak_rss_mb() or 0),
        }
        if spy is not None:
            spy.wait(timeout=args.profile_s + 60)
            result["profile_top_self"] = top_frames(args.out.with_suffix(".pyspy.txt"))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    finally:
        stop.set()
        for process in (worker, learner):
            if process:
                process.stop()
        broker.stop()


def top_frames(raw: Path, n: int = 25) -> list[tuple[str, float]]:
    """The functions the sampled worker spent its own time in, as shares of all samples (py-spy's
    raw format: one ``frame;frame;...;leaf count`` line per distinct stack)."""
    own: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.split(";")[-1]
        own[leaf] = own.get(leaf, 0) + int(count)
        total += int(count)
    return [(frame, round(c / max(total, 1), 4)) for frame, c in sorted(own.items(), key=lambda kv: -kv[1])[:n]]


if __name__ == "__main__":
    main()
