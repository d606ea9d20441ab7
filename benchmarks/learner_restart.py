"""Learner restart: seconds from a restart to the first snapshot that covers every event. Two ways
are compared in one run: resuming from the newest checkpoint, and re-learning the events topic
from its start (checkpoints off).

    .venv/bin/python benchmarks/learner_restart.py [--events 99000] [--after 1000]

What it does:
1. Sends the first --events MovieLens-100K ratings to ``events`` on an embedded broker, with the
   1,682 films on ``items``.
2. A learner with checkpoints learns them and saves a checkpoint. It is then killed with kill -9.
3. --after more ratings arrive.
4. The learner restarts and the clock runs until its snapshot covers every event. A fresh learner
   on an empty model store, reading from the start, is timed the same way.

Reports both times, their ratio, the checkpoint's size and the seconds to save it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

from rich.console import Console

from model.evaluation.datasets import load_movies, load_ratings
from serving.demo import movie_item
from serving.sdk import EventProducer
from stream.broker import EmbeddedBroker, free_port
from stream.config import Settings
from stream.kafka.topics import create_topics
from stream.model_store import ModelStore
from stream.process import StreamProcess

from common import describe  # benchmarks/common.py

console = Console()


def newest(store: ModelStore, kind: str) -> tuple[int, dict]:
    for version in reversed(store.versions()):
        manifest = store.manifest(version)
        if manifest.kind == kind:
            return int(manifest.metrics["events_learned"]), manifest.metrics
    return 0, {}


def until_learned(store: ModelStore, kind: str, events: int, process: StreamProcess, timeout_s: float = 1800) -> dict:
    deadline = time.monotonic() + timeout_s
    while (found := newest(store, kind))[0] < events:
        if not process.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"no {kind} with {events} events (newest {found[0]}); see {process.log_path}")
        time.sleep(0.1)
    return found[1]


def send(settings: Settings, ratings, start: int) -> None:
    with EventProducer(settings) as producer:
        for n, r in enumerate(ratings, start):
            producer.send(
                event_id=f"ml-{n}", user_id=r.user_id, item_id=r.item_id, type="rating", value=r.rating, ts=r.ts_ms
            )
        producer.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=99_000, help="ratings learned before the kill")
    parser.add_argument("--after", type=int, default=1_000, help="ratings sent while the learner is down")
    args = parser.parse_args()
    ratings = load_ratings()[: args.events + args.after]
    if len(ratings) < args.events + args.after:
        parser.error(f"MovieLens-100K has {len(ratings):,} ratings: --events + --after must not exceed it")
    work = Path(tempfile.mkdtemp(prefix="learner-restart-"))
    with EmbeddedBroker(data_dir=work / "broker") as broker:
        resumed = Settings(
            bootstrap=broker.bootstrap,
            topic_prefix="restart.",
            finetune=False,
            learner_nice=0,
            model_store=str(work / "resumed"),
            checkpoint_every_s=5.0,
            learner_metrics_port=free_port(),
        )
        create_topics(resumed)
        with EventProducer(resumed) as producer:
            for movie in load_movies():
                producer.send_item(movie_item(movie))
        with console.status(f"sending {args.events:,} ratings"):
            send(resumed, ratings[: args.events], 0)
        store = ModelStore(resumed.model_store)
        first = StreamProcess(resumed, work / "learner-0.log", module="stream.learner").start()
        with console.status("learning them, then a checkpoint"):
            checkpoint = until_learned(store, "checkpoint", args.events, first)
        first.kill()
        send(resumed, ratings[args.events :], args.events)
        total = args.events + args.after

        started = time.monotonic()
        second = StreamProcess(resumed, work / "learner-1.log", module="stream.learner").start()
        with console.status("restarted: resuming from the checkpoint"):
            until_learned(store, "global", total, second)
        resume_s = time.monotonic() - started
        second.stop()

        fresh = resumed.model_copy(update={"model_store": str(work / "fresh"), "checkpoint_every_s": 0.0})
        started = time.monotonic()
        third = StreamProcess(fresh, work / "learner-2.log", module="stream.learner").start()
        with console.status("restarted without a checkpoint: re-learning from the start"):
            until_learned(ModelStore(fresh.model_store), "global", total, third)
        relearn_s = time.monotonic() - started
        third.stop()
    save_s = [line for line in (work / "learner-0.log").read_text().splitlines() if " checkpoint " in line]
    console.print(f"{dt.date.today()}, {describe()}")
    console.print(f"{args.events:,} ratings learned, kill -9, {args.after:,} more sent, restart:")
    console.print(f"  resuming from its checkpoint: {resume_s:.1f} s to a snapshot of all {total:,}")
    console.print(f"  re-learning from the start:   {relearn_s:.1f} s  ({relearn_s / resume_s:.1f}x)")
    console.print(
        f"  checkpoint: {checkpoint['bytes'] / 1e6:.1f} MB; last save logged: {save_s[-1] if save_s else '?'}"
    )


if __name__ == "__main__":
    main()
