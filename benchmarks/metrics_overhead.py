"""What the Prometheus metrics cost a worker: events/s with metrics on vs off, in one run.

One noida-db broker on loopback; --repeats pairs of runs, alternating (on, off), (off, on), ...
so that a drift of the machine's load hits both sides alike. Each run gets fresh topics, the
200-item synthetic catalogue and a fresh worker (`python -m stream.worker`, content-only, no
learner) with STREAMREC_METRICS_ENABLED=true or false (false swaps every metric for a no-op,
see stream/metrics.py). With metrics off the worker's /metrics has nothing to tell, so
readiness and the end of the run are read from the `recommendations` topic:

  1. a probe event is sent; its list coming back means the catalogue is indexed and the
     worker is consuming;
  2. the same --events synthetic shopping events (model.evaluation.synthetic, --users users, serialised
     before the clock starts; only `ts` differs between runs) are sent at full speed;
  3. the run ends when, for every user, the list triggered by the user's last event is read
     back. events/s = events / (latest `published_ts` of those lists - the moment the first
     event was sent). The worker's CPU time over the same span (/proc utime + stime) gives
     CPU ms per 1,000 events, which the other load on a shared machine disturbs less than
     wall time. The worker's /metrics must agree with the switch (lists counted with metrics on,
     none with metrics off), or the run fails.
Then, as a figure a loaded machine disturbs much less: the CPU time of the worker's ingest step
alone (stream.worker.ingest.IngestProcessor over a dict table, 384-d random item vectors, plus the
per-batch metric calls of stream/worker/app.py) on the same events, in child processes with the switch
on and off, alternating, --repeats each: CPU microseconds per event, and their difference, the
metrics' own cost per event, also as a share of the worker's CPU per event measured above.

Reports the medians of each side, the ratios on/off, and every run. Writes
reports/bench-metrics-overhead.json (or --out).

    .venv/bin/python benchmarks/metrics_overhead.py [--events 30000] [--users 10000] [--repeats 3] [--skip-worker]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
from rich.console import Console

from model.embedding.item_index import ItemIndex
from model.evaluation.synthetic import shopping_workload
from serving.sdk import EventProducer
from stream.broker import EmbeddedBroker, free_port
from stream.config import Settings, topic_name
from stream.kafka.follow import consumer_from_start
from stream.kafka.topics import create_topics
from stream.metrics import metric_sum, scrape
from stream.process import StreamProcess

from common import cpu_seconds, describe, load_average, product_item

N_ITEMS = 200


class ListReader:
    """Reads `recommendations` from the start in a thread; remembers the lists by trigger event."""

    def __init__(self, settings: Settings) -> None:
        self.published: dict[str, int] = {}  # trigger_event_id -> published_ts
        self._stop = threading.Event()
        self._consumer = consumer_from_start(settings, [topic_name(settings, "recommendations")])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._consumer.poll(timeout_ms=0, max_records=5000)
            if not batch:  # noida-db answers fetches at once: pause instead of spinning
                time.sleep(0.02)
            for messages in batch.values():
                for m in messages:
                    if m.value is not None:
                        rec = json.loads(m.value)
                        self.published[rec["trigger_event_id"]] = rec["published_ts"]

    def wait_for(self, event_ids: list[str], worker: StreamProcess, timeout_s: float) -> int:
        """Block until a list was read for each of ``event_ids``; the latest published_ts."""
        deadline = time.monotonic() + timeout_s
        while any(e not in self.published for e in event_ids):
            if not worker.alive():
                raise RuntimeError(f"the worker exited; see {worker.log_path}")
            if time.monotonic() > deadline:
                missing = sum(e not in self.published for e in event_ids)
                raise TimeoutError(
                    f"{missing} of {len(event_ids)} lists not published after {timeout_s:.0f}s; see {worker.log_path}"
                )
            time.sleep(0.05)
        return max(self.published[e] for e in event_ids)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()


def one_run(broker: EmbeddedBroker, workdir: Path, n: int, metrics_on: bool, workload, console: Console) -> dict:
    run_id = f"mo{n}-{'on' if metrics_on else 'off'}-{uuid.uuid4().hex[:6]}"
    settings = Settings(
        bootstrap=broker.bootstrap,
        topic_prefix=f"{run_id}.",
        app_id=run_id,
        metrics_enabled=metrics_on,
        metrics_port=free_port(),
        data_dir=str(workdir / run_id),
        model_store=str(workdir / "models"),
    )
    create_topics(settings)
    producer = EventProducer(settings)
    for info in workload.items:
        producer.send_item(product_item(info))
    producer.flush()
    worker = StreamProcess(settings, workdir / f"{run_id}.log")
    reader = ListReader(settings)
    worker.start()
    try:
        probe = producer.send(user_id="probe", item_id=workload.items[0].item_id, type="view")
        producer.flush()
        reader.wait_for([probe.event_id], worker, timeout_s=300)

        last_of_user: dict[str, str] = {}
        ts = int(time.time() * 1000)
        records = []
        for i, e in enumerate(workload.events):
            event_id = f"{run_id}-{i}"
            last_of_user[e.user_id] = event_id
            records.append(
                (
                    e.user_id.encode(),
                    json.dumps(
                        {"event_id": event_id, "user_id": e.user_id, "item_id": e.item_id, "type": e.type, "ts": ts},
                        separators=(",", ":"),
                    ).encode(),
                )
            )
        pid = worker.process.pid
        cpu_before, load = cpu_seconds(pid), load_average()
        started_ms = time.time() * 1000
        for key, value in records:
            producer.send_raw(value, key=key)
        producer.flush()
        sent_s = time.time() - started_ms / 1000
        last_published = reader.wait_for(list(last_of_user.values()), worker, timeout_s=120 + len(records) / 100)
        cpu = cpu_seconds(pid) - cpu_before
        try:  # with metrics off the worker serves no /metrics at all
            counted = metric_sum(scrape(settings.metrics_port), "streamrec_recommendations_published_total")
        except OSError:
            counted = 0.0
        if (counted > 0) != metrics_on:  # the switch must have taken effect in the worker
            raise RuntimeError(f"metrics {'on' if metrics_on else 'off'} but the worker counted {counted:.0f} lists")
        elapsed = (last_published - started_ms) / 1000
        row = {
            "metrics": "on" if metrics_on else "off",
            "events": len(records),
            "elapsed_s": round(elapsed, 2),
            "events_per_s": round(len(records) / elapsed, 1),
            "send_s": round(sent_s, 2),
            "worker_cpu_s": round(cpu, 2),
            "worker_cpu_ms_per_1k_events": round(1e6 * cpu / len(records), 1),
            "lists": len(reader.published) - 1,
            "load_average": load,
        }
        console.print(
            f"  metrics {row['metrics']:>3}: {row['events_per_s']:,.0f} events/s ({row['elapsed_s']} s), "
            f"worker CPU {row['worker_cpu_ms_per_1k_events']} ms / 1k events, load {load}"
        )
        return row
    finally:
        reader.close()
        producer.close()
        worker.stop()


def ingest_cpu(events: int, users: int) -> float:
    """In this process (the switch was read at import): CPU seconds of the ingest step over the
    workload, batches of 500 as a worker polls them, with app.py's per-batch metric calls."""
    import asyncio

    from stream import metrics
    from stream.worker.ingest import IngestProcessor, SourceRecord

    workload = shopping_workload(n_events=events, shift_at=None, n_users=users, n_items=N_ITEMS, seed=3)
    vectors = np.random.default_rng(0).standard_normal((len(workload.items), 384)).astype(np.float32)
    index = ItemIndex(dim=384)
    index.upsert(workload.items, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    table: dict[bytes, bytes] = {}

    async def discard(*args) -> None:
        pass

    proc = IngestProcessor(Settings(), index, table, discard, discard, "bench")
    ts = int(time.time() * 1000)
    raw = [
        json.dumps(
            {"event_id": f"e{i}", "user_id": e.user_id, "item_id": e.item_id, "type": e.type, "ts": ts},
            separators=(",", ":"),
        ).encode()
        for i, e in enumerate(workload.events)
    ]
    batches = [
        [SourceRecord(r, "events", 0, start + n) for n, r in enumerate(raw[start : start + 500])]
        for start in range(0, len(raw), 500)
    ]

    async def run() -> float:
        cpu = time.process_time()
        for records in batches:
            started = time.perf_counter()
            await proc.process(records)
            metrics.observe_batch(time.perf_counter() - started, len(records))
            metrics.USERS_IN_STATE.set(len(table))
        return time.process_time() - cpu

    return asyncio.run(run())


def ingest_runs(events: int, users: int, repeats: int, console: Console) -> list[dict]:
    """Child processes, switch on / off alternating: CPU microseconds per event of the ingest step."""
    rows = []
    for r in range(repeats):
        for metrics_on in (True, False) if r % 2 == 0 else (False, True):
            env = dict(os.environ, STREAMREC_METRICS_ENABLED=str(metrics_on).lower(), OMP_NUM_THREADS="1")
            out = subprocess.run(
                [sys.executable, __file__, "--ingest-child", "--events", str(events), "--users", str(users)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            cpu = float(out.strip().splitlines()[-1])
            rows.append(
                {
                    "metrics": "on" if metrics_on else "off",
                    "events": events,
                    "cpu_s": round(cpu, 3),
                    "cpu_us_per_event": round(1e6 * cpu / events, 1),
                    "load_average": load_average(),
                }
            )
            console.print(
                f"  ingest step, metrics {rows[-1]['metrics']:>3}: {rows[-1]['cpu_us_per_event']} "
                f"CPU us / event, load {rows[-1]['load_average']}"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=30_000, help="events per run")
    parser.add_argument("--users", type=int, default=10_000, help="synthetic users the events come from")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side (metrics on, metrics off)")
    parser.add_argument("--skip-worker", action="store_true", help="only the in-process ingest-step measure")
    parser.add_argument("--ingest-child", action="store_true", help=argparse.SUPPRESS)  # one in-process run
    parser.add_argument("--out", type=Path, default=Path("reports/bench-metrics-overhead.json"))
    args = parser.parse_args()
    if args.events < 1 or args.users < 1 or args.repeats < 1:
        parser.error("--events, --users and --repeats must be at least 1")
    if args.ingest_child:
        logging.getLogger("stream.worker.ingest").setLevel(logging.ERROR)  # drift warnings
        print(ingest_cpu(args.events, args.users))
        return

    console = Console()
    result = {
        "date": dt.date.today().isoformat(),
        "machine": describe(),
        "events": args.events,
        "users": args.users,
        "repeats": args.repeats,
        "load_average_start": load_average(),
    }
    worker_cpu_ms = None
    if not args.skip_worker:
        result["worker"] = worker = worker_runs(args, console)
        worker_cpu_ms = worker["median"]["off"]["worker_cpu_ms_per_1k_events"]
    ingest = ingest_runs(args.events, args.users, args.repeats, console)
    on, off = (
        statistics.median(r["cpu_us_per_event"] for r in ingest if r["metrics"] == side) for side in ("on", "off")
    )
    result["ingest_step"] = {
        "median_cpu_us_per_event": {"on": on, "off": off},
        "metrics_cpu_us_per_event": round(on - off, 1),
        "cpu_ratio_on_over_off": round(on / off, 4),
        "metrics_share_of_worker_cpu": None if worker_cpu_ms is None else round((on - off) / worker_cpu_ms, 4),
        "runs": ingest,
    }
    result["load_average_end"] = load_average()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    console.print(
        f"\n[bold]{result['date']} - {result['machine']}[/]; load average {result['load_average_start']} "
        f"-> {result['load_average_end']}"
    )
    if not args.skip_worker:
        for side in ("on", "off"):
            each = ", ".join(f"{r['events_per_s']:,.0f}" for r in worker["runs"] if r["metrics"] == side)
            m = worker["median"][side]
            console.print(
                f"| worker, metrics {side} | median {m['events_per_s']:,.0f} events/s (runs: {each}) | "
                f"worker CPU median {m['worker_cpu_ms_per_1k_events']} ms / 1k events |"
            )
        console.print(
            f"worker events/s with metrics = {worker['throughput_ratio_on_over_off']:.3f} x without; "
            f"worker CPU per event with metrics = {worker['cpu_ratio_on_over_off']:.3f} x without"
        )
    each = ", ".join(f"{r['metrics']} {r['cpu_us_per_event']}" for r in ingest)
    share = (
        ""
        if worker_cpu_ms is None
        else f", {100 * result['ingest_step']['metrics_share_of_worker_cpu']:.1f}% of the worker's CPU per event"
    )
    console.print(
        f"ingest step CPU per event: metrics on {on} us, off {off} us (runs: {each}); the metrics cost "
        f"{on - off:.1f} us per event ({100 * (on / off - 1):.1f}% of the ingest step{share})"
    )
    console.print(f"written to {args.out}")


def worker_runs(args, console: Console) -> dict:
    """The end-to-end runs on a real broker and worker, alternating metrics on / off."""
    workload = shopping_workload(n_events=args.events, shift_at=None, n_users=args.users, n_items=N_ITEMS, seed=3)
    workdir = Path(tempfile.mkdtemp(prefix="bench-metrics-"))
    broker = EmbeddedBroker("noida", data_dir=workdir / "broker").start()
    runs: list[dict] = []
    try:
        for r in range(args.repeats):
            for metrics_on in (True, False) if r % 2 == 0 else (False, True):
                runs.append(one_run(broker, workdir, len(runs), metrics_on, workload, console))
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    median = {
        side: {
            key: statistics.median(r[key] for r in runs if r["metrics"] == side)
            for key in ("events_per_s", "worker_cpu_ms_per_1k_events")
        }
        for side in ("on", "off")
    }
    return {
        "median": median,
        "runs": runs,
        "throughput_ratio_on_over_off": round(median["on"]["events_per_s"] / median["off"]["events_per_s"], 4),
        "cpu_ratio_on_over_off": round(
            median["on"]["worker_cpu_ms_per_1k_events"] / median["off"]["worker_cpu_ms_per_1k_events"], 4
        ),
    }


if __name__ == "__main__":
    main()
