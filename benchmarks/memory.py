"""Worker memory: bytes of state per user, and the RSS of a real worker with 100k / 1M users.

  1. State per user, in process (no broker): the events of a light (1 event), a typical
     (10 events) and a heavy user (300 events: history and dedupe window full) go through the
     worker's own ingest step (stream.worker.ingest.IngestProcessor, a dict as the table, 384-d item
     vectors as all-MiniLM-L6-v2's); the size of the bytes the table holds for the user
     (UserState.to_bytes) with its breakdown: JSON meta (history, seen event ids, consumed,
     last list, pending) and the float32 vector; plus a bound with every buffer at its limit,
     and the Python heap per user of the ingest step's structures (tracemalloc: table value,
     decoded-state cache, last-activity entry).
  2. RSS of a real worker: a noida-db broker on loopback, fresh topics, `python -m stream.worker`
     (content-only, no learner), a catalogue of 200 synthetic items; then --users distinct
     synthetic users with --events-per-user events each are sent through the SDK in steps
     (--checkpoints). At 0 users and at each checkpoint, once the worker has processed every
     event sent: its current RSS (/proc VmRSS), peak RSS (VmHWM), users in its state
     (streamrec_users_in_state), and the broker's RSS and data on disk. MB per 100k users is
     the RSS slope between checkpoints.
  3. With --ttl-s S the worker runs with STREAMREC_USER_TTL_S=S: after the last checkpoint the
     script waits until the idle users have expired (streamrec_users_in_state back to 0), reads
     the RSS, then sends a second wave of as many new users and reads it again (freed memory
     is reused by Python rather than given back to the OS).
Writes reports/bench-memory.json (or --out) and prints the rows for docs/BENCHMARKS.md.

    .venv/bin/python benchmarks/memory.py                                  # 100k users
    .venv/bin/python benchmarks/memory.py --users 1000000                  # checkpoints 10k .. 1M
    .venv/bin/python benchmarks/memory.py --users 100000 --ttl-s 120       # idle-user expiry
    .venv/bin/python benchmarks/memory.py --state-only                     # part 1 alone, no broker
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import random
import shutil
import tempfile
import time
import tracemalloc
import uuid
from itertools import pairwise
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress

from model.embedding.item_index import ItemIndex, ItemInfo
from model.evaluation.synthetic import EVENT_TYPE_P, EVENT_TYPES, shopping_workload
from model.user.state import UserState
from serving.demo import progress_bar
from serving.sdk import EventProducer
from stream.broker import EmbeddedBroker, free_port
from stream.config import Settings
from stream.kafka.topics import create_topics
from stream.metrics import metric_sum, scrape
from stream.process import StreamProcess
from stream.schemas import Event
from stream.worker.ingest import IngestProcessor, SourceRecord

from common import describe, dir_mb, load_average, mem_available_mb, proc_status_mb, product_item

DIM = 384  # all-MiniLM-L6-v2, the worker's default encoder
N_ITEMS = 200


# -- 1. state per user, in process ---------------------------------------------------------------
def catalogue(n_items: int = N_ITEMS) -> list[ItemInfo]:
    """The synthetic shopping catalogue (model.evaluation.synthetic): ids sku-0.., titles, categories."""
    return shopping_workload(n_events=1, shift_at=None, n_items=n_items).items


def ingest_step(infos: list[ItemInfo], cache_size: int | None = None) -> tuple[IngestProcessor, dict]:
    """The worker's ingest step over a dict table and random unit item vectors of DIM dimensions."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((len(infos), DIM)).astype(np.float32)
    index = ItemIndex(dim=DIM)
    index.upsert(infos, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    table: dict[bytes, bytes] = {}

    async def discard(*args) -> None:
        pass

    proc = IngestProcessor(Settings(), index, table, discard, discard, "bench")
    if cache_size is not None:
        proc.cache_size = cache_size
    return proc, table


def synthetic_events(user: str, n: int, rng: random.Random, infos: list[ItemInfo], ts: int) -> list[dict]:
    """``n`` events of one user: SDK-style event ids (uuid4 hex), the synthetic type mix."""
    return [
        {
            "event_id": uuid.UUID(int=rng.getrandbits(128), version=4).hex,
            "user_id": user,
            "item_id": rng.choice(infos).item_id,
            "type": rng.choices(EVENT_TYPES, EVENT_TYPE_P)[0],
            "ts": ts + 1000 * i,
        }
        for i in range(n)
    ]


def process(proc: IngestProcessor, events: list[dict], batch: int = 500) -> None:
    for start in range(0, len(events), batch):
        records = [
            SourceRecord(json.dumps(e).encode(), "events", 0, start + n)
            for n, e in enumerate(events[start : start + batch])
        ]
        asyncio.run(proc.process(records))


def breakdown(raw: bytes) -> dict:
    """Bytes of one table value: 4-byte header, JSON meta by field, float32 vector."""
    state = UserState.from_bytes(raw)
    n = int.from_bytes(raw[:4], "little")
    meta = json.loads(raw[4 : 4 + n])
    fields = {name: len(json.dumps(value, separators=(",", ":"))) for name, value in meta.items()}
    return {
        "total": len(raw),
        "vector": state.preference.vector.nbytes,
        "json": n,
        "history": fields["history"],
        "seen_event_ids": fields["seen"],
        "consumed": fields["consumed"],
        "last_list": fields["last"],
        "pending": fields["pending"],
        "entries": {
            "history": len(state.history),
            "seen": len(state.seen_event_ids),
            "consumed": len(state.consumed),
            "last_list": len(state.last_recommended),
            "pending": len(state.pending),
        },
    }


def state_sizes(heap_users: int) -> dict:
    infos = catalogue()
    rng = random.Random(1)
    proc, table = ingest_step(infos)
    ts = int(time.time() * 1000)
    sizes = {}
    for name, n in (("light", 1), ("typical", 10), ("heavy", 300)):
        process(proc, synthetic_events(name, n, rng, infos, ts))
        sizes[name] = breakdown(table[name.encode()])
    # Every buffer at its limit: 50 history, 256 seen ids, 2,000 consumed, 200 pending events.
    full = UserState.from_bytes(table[b"heavy"])
    many = [ItemInfo(f"sku-{j}", f"Item {j}") for j in range(full.consumed_limit)]
    full.consumed = [i.item_id for i in many]
    full.pending = synthetic_events("heavy", full.pending_limit, rng, many, ts)  # as parked: the event's fields
    sizes["every_buffer_full"] = breakdown(full.to_bytes())
    sizes["python_heap_per_light_user"] = {
        "users": heap_users,
        "with_decoded_cache": heap_per_user(infos, heap_users, cache_size=None),
        "table_and_last_active_only": heap_per_user(infos, heap_users, cache_size=0),
    }
    return sizes


def heap_per_user(infos: list[ItemInfo], users: int, cache_size: int | None) -> int:
    """Python heap (tracemalloc) per light user of the ingest step: the table value, the
    last-activity entry and, unless ``cache_size`` is 0 (as for users beyond the 100,000
    entries of the cache), the decoded state in the cache."""
    rng = random.Random(2)
    proc, _ = ingest_step(infos, cache_size)
    ts = int(time.time() * 1000)
    process(proc, synthetic_events("warm-up", 1, rng, infos, ts))  # first-batch allocations are not per user
    events = [e for u in range(users) for e in synthetic_events(f"user-{u:07d}", 1, rng, infos, ts)]
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    process(proc, events)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    return round(sum(s.size_diff for s in after.compare_to(before, "filename")) / users)


# -- 2. a real worker ------------------------------------------------------------------------------
class WorkerRun:
    """Broker + topics + a worker + the catalogue; sends users and measures memory."""

    def __init__(self, workdir: Path, ttl_s: float | None, console: Console, min_available_mb: float) -> None:
        self.workdir = workdir
        self.min_available_mb = min_available_mb
        self.console = console
        self.broker = EmbeddedBroker("noida", data_dir=workdir / "broker").start()
        overrides = {"user_ttl_s": ttl_s} if ttl_s is not None else {}
        self.settings = Settings(
            bootstrap=self.broker.bootstrap,
            topic_prefix="bench-memory.",
            app_id="bench-memory",
            metrics_port=free_port(),
            data_dir=str(workdir / "worker"),
            model_store=str(workdir / "models"),
            **overrides,
        )
        create_topics(self.settings)
        self.worker = StreamProcess(self.settings, workdir / "worker.log")
        self.producer = EventProducer(self.settings)
        self.infos = catalogue()
        self.rng = random.Random(7)
        self.sent = 0
        self.users = 0

    def start(self) -> None:
        self.worker.start()
        for info in self.infos:
            self.producer.send_item(product_item(info))
        self.producer.flush()
        self.worker.wait_ready(len(self.infos))

    def samples(self, patience_s: float = 60.0):
        """The worker's /metrics; a busy worker on a loaded machine may miss a 2 s scrape: retry."""
        deadline = time.monotonic() + patience_s
        while True:
            try:
                return scrape(self.settings.metrics_port)
            except OSError:
                if time.monotonic() > deadline or not self.worker.alive():
                    raise
                time.sleep(1.0)

    def metric(self, name: str, **labels) -> float:
        return metric_sum(self.samples(), name, **labels)

    def measure(self, label: str) -> dict:
        time.sleep(2.0)  # let the producer buffers and timers settle
        pid = self.worker.process.pid
        samples = self.samples()
        row = {
            "point": label,
            "users_sent": self.users,
            "events_sent": self.sent,
            "users_in_state": int(metric_sum(samples, "streamrec_users_in_state")),
            "users_expired": int(metric_sum(samples, "streamrec_users_expired_total")),
            "worker_rss_mb": round(proc_status_mb(pid, "VmRSS"), 1),
            "worker_rss_anon_mb": round(proc_status_mb(pid, "RssAnon"), 1),
            "worker_peak_rss_mb": round(self.worker.peak_rss_mb(), 1),
            "broker_rss_mb": round(proc_status_mb(self.broker.process.pid, "VmRSS"), 1),
            "broker_rss_anon_mb": round(proc_status_mb(self.broker.process.pid, "RssAnon"), 1),
            "broker_data_mb": round(dir_mb(self.workdir / "broker"), 1),
            "load_average": load_average(),
        }
        self.console.print(
            f"  {label}: users in state {row['users_in_state']:,}, worker RSS "
            f"{row['worker_rss_mb']:,.0f} MB (anon {row['worker_rss_anon_mb']:,.0f}, peak "
            f"{row['worker_peak_rss_mb']:,.0f}), broker RSS {row['broker_rss_mb']:,.0f} MB (anon "
            f"{row['broker_rss_anon_mb']:,.0f}), broker data {row['broker_data_mb']:,.0f} MB"
        )
        return row

    def send_users(self, n_users: int, events_per_user: int, progress: Progress) -> float:
        """Send ``n_users`` new users, wait until the worker processed everything; seconds taken."""
        started = time.monotonic()
        before = self.sent
        ts = int(time.time() * 1000)
        task = progress.add_task(
            f"sending users {self.users:,}..{self.users + n_users:,}", total=n_users * events_per_user, rate=""
        )
        for u in range(self.users, self.users + n_users):
            for e in synthetic_events(f"user-{u:07d}", events_per_user, self.rng, self.infos, ts):
                self.producer.send(Event(**e))
            self.sent += events_per_user
            if u % 2000 == 0:
                progress.update(task, completed=(u - self.users + 1) * events_per_user)
                if mem_available_mb() < self.min_available_mb:  # the machine is shared: stop before it swaps
                    raise MemoryError(f"stopped at user {u:,}: under {self.min_available_mb:,.0f} MB of memory left")
        self.producer.flush()
        self.users += n_users
        progress.update(task, completed=n_users * events_per_user)
        task = progress.add_task("worker processing", total=self.sent, rate="")
        deadline = time.monotonic() + 600 + self.sent / 200
        while True:
            if not self.worker.alive():
                raise RuntimeError(f"the worker exited; see {self.worker.log_path}")
            done = self.metric("streamrec_events_total")
            elapsed = time.monotonic() - started
            progress.update(task, completed=done, rate=f"{(done - before) / elapsed:,.0f} events/s")
            if done >= self.sent:
                return elapsed
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker processed {done:,.0f} of {self.sent:,} events; see {self.worker.log_path}")
            time.sleep(1.0)

    def wait_expired(self, timeout_s: float) -> float:
        started = time.monotonic()
        with self.console.status("waiting for idle users to expire") as status:
            while self.metric("streamrec_users_in_state") > 0:
                if time.monotonic() - started > timeout_s:
                    raise TimeoutError(f"users still in state after {timeout_s:.0f}s; see {self.worker.log_path}")
                status.update(f"waiting for idle users to expire: {self.metric('streamrec_users_in_state'):,.0f} left")
                time.sleep(1.0)
        return time.monotonic() - started

    def close(self) -> None:
        self.producer.close()
        self.worker.stop()
        self.broker.stop()


def worker_rss(args, console: Console) -> dict:
    checkpoints = sorted({c for c in args.checkpoints if 0 < c < args.users} | {args.users})
    workdir = Path(tempfile.mkdtemp(prefix="bench-memory-", dir=args.workdir))
    run = WorkerRun(workdir, args.ttl_s, console, args.min_available_mb)
    rows, steps = [], []
    try:
        t0 = time.monotonic()
        with console.status("starting the worker and indexing the catalogue (all-MiniLM-L6-v2)"):
            run.start()
        rows.append(run.measure("0 users (catalogue indexed)"))
        with progress_bar(console) as progress:
            for c in checkpoints:
                n = c - run.users
                seconds = run.send_users(n, args.events_per_user, progress)
                steps.append(
                    {
                        "users": n,
                        "events": n * args.events_per_user,
                        "seconds": round(seconds, 1),
                        "events_per_s": round(n * args.events_per_user / seconds),
                    }
                )
                rows.append(run.measure(f"{c:,} users"))
        expiry = None
        if args.ttl_s is not None:
            waited = run.wait_expired(timeout_s=args.ttl_s * 3 + 120)
            rows.append(run.measure(f"after expiry (waited {waited:.0f} s)"))
            with progress_bar(console) as progress:
                run.send_users(args.users, args.events_per_user, progress)
            rows.append(run.measure(f"second wave: {args.users:,} new users"))
            expiry = {"ttl_s": args.ttl_s, "waited_s": round(waited)}
        return {
            "events_per_user": args.events_per_user,
            "ttl_s": args.ttl_s,
            "rows": rows,
            "steps": steps,
            "expiry": expiry,
            "wall_s": round(time.monotonic() - t0),
        }
    finally:
        run.close()
        shutil.rmtree(workdir, ignore_errors=True)


def slopes(rows: list[dict]) -> list[dict]:
    """RSS growth per 100k users between consecutive checkpoints of the ingest phase."""
    points = [r for r in rows if r["users_in_state"] == r["users_sent"]]
    return [
        {
            "from_users": a["users_sent"],
            "to_users": b["users_sent"],
            "mb_per_100k_users": round(
                (b["worker_rss_mb"] - a["worker_rss_mb"]) * 100_000 / (b["users_sent"] - a["users_sent"]), 1
            ),
        }
        for a, b in pairwise(points)
        if b["users_sent"] > a["users_sent"]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000, help="distinct synthetic users sent to the worker")
    parser.add_argument("--events-per-user", type=int, default=1, help="events of each user")
    parser.add_argument(
        "--checkpoints",
        default="10000,100000,250000,500000",
        help="comma-separated user counts to measure at on the way (plus --users)",
    )
    parser.add_argument(
        "--ttl-s",
        type=float,
        default=None,
        help="run the worker with this idle-user TTL, wait for expiry, send a second wave",
    )
    parser.add_argument("--heap-users", type=int, default=20_000, help="users of the in-process heap measure")
    parser.add_argument("--state-only", action="store_true", help="part 1 only (no broker, no worker)")
    parser.add_argument(
        "--min-available-mb",
        type=float,
        default=3000,
        help="stop sending when the machine has less memory available than this",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where the broker's data goes (default: /tmp)")
    parser.add_argument("--out", type=Path, default=Path("reports/bench-memory.json"))
    args = parser.parse_args()
    args.checkpoints = [int(c) for c in args.checkpoints.split(",") if c.strip()]
    if args.users < 1 or args.events_per_user < 1:
        parser.error("--users and --events-per-user must be at least 1")

    console = Console()
    logging.getLogger("stream.worker.ingest").setLevel(logging.ERROR)  # drift warnings of the in-process ingest step
    result = {"date": dt.date.today().isoformat(), "machine": describe(), "load_average_start": load_average()}
    with console.status("state per user (in process)"):
        result["state_bytes"] = sizes = state_sizes(args.heap_users)
    console.print("[bold]bytes of state per user[/] (UserState.to_bytes: header 4 + JSON + float32 vector)")
    for name in ("light", "typical", "heavy", "every_buffer_full"):
        s = sizes[name]
        console.print(
            f"| {name} | {s['total']:,} | vector {s['vector']:,} | JSON {s['json']:,}: history "
            f"{s['history']:,} ({s['entries']['history']}), seen ids {s['seen_event_ids']:,} "
            f"({s['entries']['seen']}), consumed {s['consumed']:,} ({s['entries']['consumed']}), last list "
            f"{s['last_list']:,}, pending {s['pending']:,} ({s['entries']['pending']}) |"
        )
    heap = sizes["python_heap_per_light_user"]
    console.print(
        f"Python heap per light user ({heap['users']:,} users): {heap['with_decoded_cache']:,} B with the "
        f"decoded-state cache, {heap['table_and_last_active_only']:,} B without"
    )
    if not args.state_only:
        result["worker"] = worker = worker_rss(args, console)
        worker["mb_per_100k_users"] = slopes(worker["rows"])
        console.print("\n[bold]worker RSS[/]")
        for r in worker["rows"]:
            console.print(
                f"| {r['point']} | {r['users_in_state']:,} in state | RSS {r['worker_rss_mb']:,.0f} MB | "
                f"anon {r['worker_rss_anon_mb']:,.0f} MB | peak {r['worker_peak_rss_mb']:,.0f} MB | "
                f"broker RSS {r['broker_rss_mb']:,.0f} MB (anon {r['broker_rss_anon_mb']:,.0f}), "
                f"data {r['broker_data_mb']:,.0f} MB | load {r['load_average']} |"
            )
        for s in worker["mb_per_100k_users"]:
            console.print(f"{s['from_users']:,} -> {s['to_users']:,} users: {s['mb_per_100k_users']} MB per 100k users")
        for s in worker["steps"]:
            console.print(f"step of {s['users']:,} users: {s['seconds']} s, {s['events_per_s']:,} events/s")
    result["load_average_end"] = load_average()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(
        f"{result['date']} - {result['machine']}; load average {result['load_average_start']} -> "
        f"{result['load_average_end']}\nwritten to {args.out}"
    )


if __name__ == "__main__":
    main()
