"""Failover and scale-out: how long users go without a list when a worker dies, and what adding a
worker costs the stream. Both runs use one embedded broker, the MovieLens-100K films as the
catalogue and content-only workers (no learner).

    .venv/bin/python benchmarks/failover.py [--users 100000] [--partitions 4] [--rate 200]

Runs on tansu by default: noida-db 0.2.3, the default embedded broker, never expires a group member
that died without leaving, so a killed worker's partitions stay unowned until it comes back.

1. **Failover, with and without standby replicas.** Two workers load --users users (one event
   each) into their state. A probe event for a random user is then sent every 1/--rate s, and
   worker 0 is killed with kill -9. For each partition of ``events`` the clock runs from the kill
   to the first list published for a probe sent after the kill. Reported: that time for the last
   partition to come back (every user served again) and the median partition. Run once with
   ``standby_replicas=1`` and once with 0 (the new owner then replays the partition's changelog).
2. **Scale 2 -> 3.** After the failover with standbys, worker 0 is back. Events flow at --rate
   per second; a third worker starts after --scale-after s. Lists published per second and
   event-to-list latency (p50 / p99 / max) are reported in four windows: steady (before the
   start), while the newcomer starts (it embeds the catalogue on the same two cores), the 30 s
   after it is ready (the rebalance) and after that.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

from kafka import KafkaConsumer
from rich.console import Console

from model.evaluation.datasets import load_movies
from serving.demo import movie_item
from serving.sdk import EventProducer
from stream.broker import BROKER_KINDS, EmbeddedBroker, free_port
from stream.config import Settings, topic_name
from stream.kafka.topics import create_topics
from stream.metrics import metric_sum
from stream.process import StreamProcess
from stream.worker.ingest import owning_partition

from common import describe  # benchmarks/common.py

console = Console()
STARTED: list[StreamProcess] = []  # every worker started, stopped at the end even when a step fails


def started(process: StreamProcess) -> StreamProcess:
    STARTED.append(process.start())
    return process


class ListWatcher(threading.Thread):
    """Reads ``recommendations`` from its end and notes, per trigger event, when its list arrived."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(
            topic_name(settings, "recommendations"),
            bootstrap_servers=settings.bootstrap,
            group_id=None,
            auto_offset_reset="latest",
            enable_auto_commit=False,
        )
        while not self.consumer.assignment():
            self.consumer.poll(timeout_ms=200)
        self.consumer.seek_to_end()
        self.arrived: dict[str, float] = {}
        self.running = True

    def run(self) -> None:
        while self.running:
            for records in self.consumer.poll(timeout_ms=100).values():
                now = time.monotonic()
                for record in records:
                    if record.value is not None:
                        self.arrived.setdefault(json.loads(record.value)["trigger_event_id"], now)

    def close(self) -> None:
        self.running = False
        self.join(timeout=5)
        self.consumer.close()


class Prober(threading.Thread):
    """Sends one event every ``1 / rate`` s for a random user; notes when each was sent."""

    def __init__(self, settings: Settings, users: int, rate: float, items: list[str], name: str) -> None:
        super().__init__(daemon=True)
        self.settings, self.users, self.rate, self.items, self.tag = settings, users, rate, items, name
        self.sent: dict[str, tuple[float, str]] = {}  # event id -> (monotonic time, user id)
        self.running = True

    def run(self) -> None:
        rng = random.Random(1)
        with EventProducer(self.settings) as producer:
            n, start = 0, time.monotonic()
            while self.running:
                user = f"f{rng.randrange(self.users)}"
                event_id = f"{self.tag}-{n}"
                producer.send(
                    event_id=event_id,
                    user_id=user,
                    item_id=rng.choice(self.items),
                    type="click",
                    ts=int(time.time() * 1000),
                )
                producer.flush()
                self.sent[event_id] = (time.monotonic(), user)
                n += 1
                time.sleep(max(0.0, start + n / self.rate - time.monotonic()))

    def stop(self) -> None:
        self.running = False
        self.join(timeout=10)


def processed(workers: list[StreamProcess]) -> float:
    total = 0.0
    for worker in workers:
        with contextlib.suppress(OSError):  # a worker just killed
            total += metric_sum(worker.metrics(), "streamrec_events_total", outcome="processed")
    return total


def users_in_state(workers: list[StreamProcess]) -> float:
    return sum(metric_sum(w.metrics(), "streamrec_users_in_state") for w in workers if w.alive())


def load_users(settings: Settings, users: int, items: list[str]) -> None:
    rng = random.Random(0)
    now = int(time.time() * 1000) - users
    with EventProducer(settings) as producer:
        for u in range(users):
            producer.send(event_id=f"load-{u}", user_id=f"f{u}", item_id=rng.choice(items), type="view", ts=now + u)
        producer.flush()


def start_workers(
    settings: Settings, work: Path, n: int, items: int, first: int = 0, static: bool = False
) -> list[StreamProcess]:
    workers = [
        started(
            StreamProcess(
                settings.model_copy(
                    update={
                        "instance_id": f"{settings.app_id}-{w}" if static else None,
                        "metrics_port": free_port(),
                        "data_dir": str(work / f"{settings.app_id}-{w}"),
                    }
                ),
                work / f"{settings.app_id}-{w}-{time.monotonic_ns()}.log",
            )
        )
        for w in range(first, first + n)
    ]
    for worker in workers:
        worker.wait_ready(items=items, timeout_s=600)
    return workers


def failover(broker: EmbeddedBroker, work: Path, args, standbys: int, movies: list[str]):
    """Returns (per-partition recovery seconds, the two workers after worker 0 is restarted, settings)."""
    settings = Settings(
        bootstrap=broker.bootstrap,
        topic_prefix=f"failover-{standbys}.",
        app_id=f"failover-{standbys}",
        partitions=args.partitions,
        standby_replicas=standbys,
        lag_interval_s=1.0,
        session_timeout_s=args.session_timeout,
    )
    create_topics(settings)
    with EventProducer(settings) as producer:
        for movie in load_movies():
            producer.send_item(movie_item(movie))
    workers = start_workers(settings, work, 2, len(movies), static=args.static)
    with console.status(f"standby_replicas={standbys}: loading {args.users:,} users"):
        load_users(settings, args.users, movies)
        deadline = time.monotonic() + 1800
        while processed(workers) < args.users:
            if time.monotonic() > deadline or not all(w.alive() for w in workers):
                raise RuntimeError(f"users not loaded; see {[str(w.log_path) for w in workers]}")
            time.sleep(1.0)
        time.sleep(args.settle)  # standbys catch up on the changelog
    in_state = users_in_state(workers)
    watcher = ListWatcher(settings)
    watcher.start()
    prober = Prober(settings, args.users, args.rate, movies, f"probe-{standbys}")
    prober.start()
    time.sleep(3.0)
    killed_at = time.monotonic()
    workers[0].kill()
    with console.status(f"standby_replicas={standbys}: worker 0 killed, waiting for every partition"):
        deadline = killed_at + 300
        recovery: dict[int, float] = {}
        while len(recovery) < args.partitions and time.monotonic() < deadline:
            time.sleep(0.5)
            for event_id, (sent, user) in list(prober.sent.items()):
                arrived = watcher.arrived.get(event_id)
                if sent > killed_at and arrived is not None:
                    p = owning_partition(user, args.partitions)
                    recovery[p] = min(recovery.get(p, float("inf")), arrived - killed_at)
    prober.stop()
    watcher.close()
    if len(recovery) < args.partitions:
        raise RuntimeError(f"partitions {set(range(args.partitions)) - set(recovery)} not back after 300 s")
    restarted = start_workers(settings, work, 1, len(movies), static=args.static)
    return recovery, in_state, [restarted[0], workers[1]], settings


def scale_up(work: Path, args, workers: list[StreamProcess], settings: Settings, movies: list[str]) -> dict:
    """Lists per second and latency around the start of a third worker."""
    watcher = ListWatcher(settings)
    watcher.start()
    prober = Prober(settings, args.users, args.rate, movies, "scale")
    prober.start()
    time.sleep(args.scale_after)
    began = time.monotonic()
    with console.status("scale 2 -> 3: a third worker starts"):
        (third,) = start_workers(settings, work, 1, len(movies), first=2, static=args.static)
        ready_s = time.monotonic() - began
        time.sleep(30 + args.scale_after)
    prober.stop()
    time.sleep(5.0)
    watcher.close()
    third.stop()
    for worker in workers:
        worker.stop()

    def window(lo: float, hi: float) -> dict:
        lat = sorted(
            (watcher.arrived[e] - sent) * 1000
            for e, (sent, _) in prober.sent.items()
            if lo <= sent - began < hi and e in watcher.arrived
        )
        sent_n = sum(lo <= s - began < hi for s, _ in prober.sent.values())
        arrivals = [watcher.arrived[e] - began for e in prober.sent if e in watcher.arrived]
        per_s = [sum(int(t) == s for t in arrivals) for s in range(int(lo), int(hi))]
        lost = sent_n - len(lat)
        return {
            "lists_per_s_median": statistics.median(per_s) if per_s else 0,
            "lists_per_s_min": min(per_s) if per_s else 0,
            "p50_ms": round(lat[len(lat) // 2], 1) if lat else None,
            "p99_ms": round(lat[int(len(lat) * 0.99)], 1) if lat else None,
            "max_ms": round(lat[-1], 1) if lat else None,
            "no_list": lost,
        }

    return {
        "ready_s": round(ready_s, 1),
        "steady": window(-args.scale_after + 2, 0),
        "newcomer_starting": window(0, ready_s),
        "rebalanced_first_30s": window(ready_s, ready_s + 30),
        "after": window(ready_s + 30, ready_s + 30 + args.scale_after),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000, help="users in the workers' state")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of events and of the user table")
    parser.add_argument("--rate", type=float, default=100.0, help="probe events per second")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after loading before the kill")
    parser.add_argument("--scale-after", type=float, default=20.0, help="seconds of steady stream around scaling")
    parser.add_argument(
        "--broker",
        choices=BROKER_KINDS,
        default="tansu",
        help="embedded broker; noida-db 0.2.3 never expires a dead group member, so without a restart "
        "the killed worker's partitions are never reassigned there",
    )
    parser.add_argument(
        "--static", action="store_true", help="static members (STREAMREC_INSTANCE_ID): a dead one waits out its session"
    )
    parser.add_argument(
        "--session-timeout",
        type=float,
        default=Settings().session_timeout_s,
        help="workers' group session timeout (STREAMREC_SESSION_TIMEOUT_S): how long a dead worker goes unnoticed",
    )
    parser.add_argument(
        "--standbys", type=int, nargs="+", default=[1, 0], help="standby_replicas of each failover run, in order"
    )
    parser.add_argument("--no-scale", action="store_true", help="skip the 2 -> 3 scaling run")
    parser.add_argument("--out", type=Path, default=Path("reports/failover.json"))
    args = parser.parse_args()
    movies = [movie.item_id for movie in load_movies()]
    work = Path(tempfile.mkdtemp(prefix="failover-"))
    result: dict = {
        "date": dt.date.today().isoformat(),
        "machine": describe(),
        "args": vars(args) | {"out": str(args.out)},
    }
    with EmbeddedBroker(kind=args.broker, data_dir=work / "broker") as broker, contextlib.ExitStack() as cleanup:
        cleanup.callback(lambda: [p.stop() for p in STARTED if p.alive()])
        for standbys in args.standbys:
            recovery, in_state, workers, settings = failover(broker, work, args, standbys, movies)
            times = sorted(recovery.values())
            result[f"standby_{standbys}"] = {
                "users_in_state": in_state,
                "recovery_s_per_partition": {p: round(s, 2) for p, s in sorted(recovery.items())},
                "last_partition_s": round(times[-1], 2),
                "median_partition_s": round(statistics.median(times), 2),
            }
            console.print(
                f"standby_replicas={standbys}: {in_state:,.0f} users in state; kill -9 -> every partition "
                f"served again {times[-1]:.1f} s (median partition {statistics.median(times):.1f} s)"
            )
            if standbys == 1 and not args.no_scale:
                result["scale_2_to_3"] = scale_up(work, args, workers, settings, movies)
                console.print(f"scale 2 -> 3: {result['scale_2_to_3']}")
            else:
                for worker in workers:
                    worker.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"{result['date']}, {result['machine']}; written to {args.out}")


if __name__ == "__main__":
    main()
