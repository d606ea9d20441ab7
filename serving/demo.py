"""``streamrec demo``: the whole path on one machine, on the embedded broker, with MovieLens-100K.

Broker -> topics -> worker -> catalogue (1,682 movies) -> ratings replayed in time order as
events -> refreshed top-K lists read back -> summary. Ratings become events as follows:
every rating is an event of type ``rating`` with ``value`` = the stars (1..5), ``event_id`` =
``ml100k-<row>``, ``ts`` = the moment it is sent (the replay plays the log as live traffic, in
its original order; the worker weighs a rating by ``stars - 2.5``).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import defaultdict, deque
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from model.datasets import Movie, Rating, load_movies, load_ratings
from serving.sdk import EventProducer
from stream.broker import EmbeddedBroker, free_port
from stream.config import Settings, topic_name
from stream.metrics import metric_sum, scrape
from stream.schemas import Event, Item
from stream.stream_process import StreamProcess
from stream.topics import create_topics


def movie_item(movie: Movie) -> Item:
    """A movie as a catalogue item: "Title (year)", first genre as category, the rest as tags."""
    return Item(item_id=movie.item_id, title=movie.display_title, category=movie.category, tags=movie.tags)


def rating_event(row: int, rating: Rating, ts: int) -> Event:
    return Event(event_id=f"ml100k-{row}", user_id=rating.user_id, item_id=rating.item_id, type="rating",
                 value=rating.rating, ts=ts)


# -- reading the recommendations back ----------------------------------------------------------
class RecommendationTally:
    """Consumer-side view of the published lists: per-event latency and the online hit rate.

    The sender registers each event before sending it. A list for a user covers all that user's
    events up to its ``trigger_event_id`` (a worker folds a user's events of one poll into one
    list), so each of them gets its latency (published_ts - its ts) and a hit check against the
    list that user had been served before.
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self.received = 0
        self.hits = 0
        self.checked = 0
        self.latencies_ms: list[float] = []
        self.last_list: dict[str, list[str]] = {}
        self.unserved: dict[str, deque] = defaultdict(deque)  # user -> (event_id, item_id, ts)
        self.last_received_at = 0.0
        self.last_model_version: str | None = None

    def sent(self, event: Event) -> None:
        self.unserved[event.user_id].append((event.event_id, event.item_id, event.ts))

    def add(self, rec: dict) -> None:
        self.received += 1
        self.last_received_at = time.monotonic()
        user = rec["user_id"]
        previous = self.last_list.get(user)
        queue = self.unserved[user]
        while queue:
            event_id, item_id, ts = queue.popleft()
            self.latencies_ms.append(rec["published_ts"] - ts)
            if previous is not None:
                self.checked += 1
                self.hits += item_id in previous[: self.k]
            if event_id == rec["trigger_event_id"]:
                break
        self.last_list[user] = [i["item_id"] for i in rec["items"]]
        self.last_model_version = rec["model_version"]


def follow_recommendations(settings: Settings, tally: RecommendationTally, stop: threading.Event) -> None:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic_name(settings, "recommendations"), bootstrap_servers=settings.bootstrap,
                             group_id=None, auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        while not stop.is_set():
            batch = consumer.poll(timeout_ms=0, max_records=5000)
            if not batch:  # noida-db answers fetches at once: pause instead of spinning
                time.sleep(0.01)
            for messages in batch.values():
                for m in messages:
                    if m.value is not None:
                        tally.add(json.loads(m.value))
    finally:
        consumer.close()


# -- the demo -------------------------------------------------------------------------------------
def run_demo(events: int | None = None, rate: float | None = None, json_summary: Path | None = None,
             broker_kind: str = "noida", work_dir: Path = Path(".streamrec/demo"), k: int = 10,
             with_learner: bool = True, console: Console | None = None) -> dict:
    console = console or Console()
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    with console.status("loading MovieLens-100K (recbole 1.2.1 wheel)"):
        movies, ratings = load_movies(), load_ratings()
    ratings = ratings[:events] if events else ratings

    broker = EmbeddedBroker(broker_kind, data_dir=work_dir / "broker")
    worker = learner = None
    stop_reader = threading.Event()
    try:
        with console.status(f"starting the embedded {broker_kind} broker"):
            broker.start()
        settings = Settings(bootstrap=broker.bootstrap, metrics_port=free_port(), k=k,
                            data_dir=str(work_dir / "worker"), model_store=str(work_dir / "models"))
        create_topics(settings)
        console.print(f"[green]broker[/] {broker.bootstrap} ({broker_kind}), topics created "
                      f"with prefix '{settings.topic_prefix}'")
        worker = StreamProcess(settings, work_dir / "worker.log")
        worker.start()
        console.print(f"[green]worker[/] pid {worker.process.pid}, metrics on "
                      f"http://127.0.0.1:{settings.metrics_port}/metrics, log {work_dir / 'worker.log'}")

        if with_learner:
            learner = StreamProcess(settings, work_dir / "learner.log", module="stream.learner")
            learner.start()
            console.print(f"[green]learner[/] pid {learner.process.pid} (CF + trending, snapshots in "
                          f"{settings.model_store}), log {work_dir / 'learner.log'}")

        producer = EventProducer(settings)
        for movie in movies:
            producer.send_item(movie_item(movie))
        producer.flush()
        _wait_for(console, f"worker indexing {len(movies)} movies with all-MiniLM-L6-v2",
                  lambda s: metric_sum(s, "streamrec_items_indexed"), len(movies), settings, worker)

        tally = RecommendationTally(k)
        reader = threading.Thread(target=follow_recommendations, args=(settings, tally, stop_reader), daemon=True)
        reader.start()

        started = time.monotonic()
        with _progress(console) as progress:
            task = progress.add_task("replaying ratings", total=len(ratings), rate="")
            for i, rating in enumerate(ratings):
                if rate:
                    delay = started + i / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                event = rating_event(i, rating, int(time.time() * 1000))
                tally.sent(event)
                producer.send(event)
                if i % 500 == 499 or i == len(ratings) - 1:
                    elapsed = time.monotonic() - started
                    progress.update(task, completed=i + 1, rate=f"{(i + 1) / elapsed:,.0f} ev/s sent, "
                                                                 f"{tally.received:,} lists back")
            producer.flush()
        sent_done = time.monotonic() - started

        def settled(samples):
            return metric_sum(samples, "streamrec_events_total")
        _wait_for(console, "worker processing the replay", settled, len(ratings), settings, worker, timeout_s=900)
        samples = scrape(settings.metrics_port)
        published = metric_sum(samples, "streamrec_recommendations_published_total")
        deadline = time.monotonic() + 60
        while tally.received < published and time.monotonic() < deadline:  # let the reader catch up
            time.sleep(0.1)
        elapsed = max(tally.last_received_at - started, sent_done)
        producer.close()

        lat = np.array(tally.latencies_ms) if tally.latencies_ms else np.zeros(1)
        hits = metric_sum(samples, "streamrec_online_hit_checks_total", hit="true")
        checks = metric_sum(samples, "streamrec_online_hit_checks_total")
        processed = metric_sum(samples, "streamrec_events_total", outcome="processed")
        summary = {
            "dataset": "movielens-100k",
            "broker": broker_kind,
            "rate_limit": rate,
            "learner": with_learner,
            "events_sent": len(ratings),
            "events_processed": int(processed),
            "dlq": int(metric_sum(samples, "streamrec_dlq_total")),
            "duplicates": int(metric_sum(samples, "streamrec_events_total", outcome="duplicate")),
            "pending_item": int(metric_sum(samples, "streamrec_pending_events")),
            "recommendations_published": int(published),
            "recommendations_received": tally.received,
            "latency_ms": {f"p{q}": round(float(np.percentile(lat, q)), 1) for q in (50, 95, 99)},
            "online_hit_rate_at_10": round(hits / checks, 4) if checks else None,
            "online_hit_rate_at_10_consumer_side": round(tally.hits / tally.checked, 4) if tally.checked else None,
            "elapsed_s": round(elapsed, 2),
            "events_per_s": round(processed / elapsed, 1) if elapsed else None,
            "worker_peak_rss_mb": worker.peak_rss_mb(),
            "items_indexed": int(metric_sum(samples, "streamrec_items_indexed")),
            "model_swaps": int(metric_sum(samples, "streamrec_model_swaps_total", outcome="ok")),
            "model_version": tally.last_model_version,
            "k": k,
        }
        _print_summary(console, summary)
        if json_summary:
            Path(json_summary).parent.mkdir(parents=True, exist_ok=True)
            Path(json_summary).write_text(json.dumps(summary, indent=2) + "\n")
            console.print(f"summary written to {json_summary}")
        return summary
    finally:
        stop_reader.set()
        with console.status("stopping worker and broker"):
            for process in (worker, learner):
                if process:
                    process.stop()
            broker.stop()


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)


def _wait_for(console: Console, what: str, read, target: float, settings: Settings, worker: StreamProcess,
              timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    with _progress(console) as progress:
        task = progress.add_task(what, total=target, rate="")
        while True:
            if not worker.alive():
                raise RuntimeError(f"the worker exited; see {worker.log_path}")
            try:
                value = read(scrape(settings.metrics_port))
            except OSError:  # endpoint not up yet
                value = 0
            progress.update(task, completed=min(value, target))
            if value >= target:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: {value:.0f} of {target:.0f} after {timeout_s:.0f}s; see {worker.log_path}")
            time.sleep(0.25)


def _print_summary(console: Console, summary: dict) -> None:
    table = Table(title="streamrec demo summary", show_header=False)
    for key, value in summary.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    console.print(table)
