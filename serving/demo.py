"""``streamrec demo``: the whole path on one machine, on the embedded broker, with MovieLens-100K.

Broker -> topics -> worker -> catalogue (1,682 movies) -> ratings replayed in time order as
events -> refreshed top-K lists read back -> summary. Ratings become events as follows:
every rating is an event of type ``rating`` with ``value`` = the stars (1..5), ``event_id`` =
``ml100k-<row>``, ``ts`` = the moment it is sent (the replay plays the log as live traffic, in
its original order; the worker weighs a rating by ``stars - 2.5``).

Next to them it runs the HTTP API (``streamrec api``, with a random read key) and, on request,
a local Prometheus (the Debian binary) configured from ops/prometheus/ against the demo's ports;
at the end it reads one user's list through the API and a few key series through Prometheus.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

import numpy as np
from rich.columns import Columns
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from model.evaluation.datasets import Movie, Rating, load_movies, load_ratings
from serving.local_prometheus import OPS_PROMETHEUS, start_prometheus
from serving.sdk import EventProducer
from stream.broker import EmbeddedBroker, free_port
from stream.config import Settings, topic_name
from stream.kafka.follow import consumer_from_start
from stream.kafka.topics import create_topics
from stream.metrics import metric_sum, scrape
from stream.process import ChildProcess, StreamProcess, http_get
from stream.schemas import Event, Item


def movie_item(movie: Movie) -> Item:
    """A movie as a catalogue item: "Title (year)", first genre as category, the rest as tags."""
    return Item(item_id=movie.item_id, title=movie.display_title, category=movie.category, tags=movie.tags)


def rating_event(row: int, rating: Rating, ts: int) -> Event:
    return Event(
        event_id=f"ml100k-{row}",
        user_id=rating.user_id,
        item_id=rating.item_id,
        type="rating",
        value=rating.rating,
        ts=ts,
    )


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
    consumer = consumer_from_start(settings, [topic_name(settings, "recommendations")])
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


# -- the API next to the stream processes ------------------------------------------------------
def start_api(settings: Settings, read_key: str, log_path: Path) -> tuple[ChildProcess, int]:
    """``streamrec api`` on a free loopback port, with ``read_key`` as its only key (read scope)."""
    port = free_port()
    env = dict(
        os.environ,
        **settings.env(),
        STREAMREC_API_HOST="127.0.0.1",
        STREAMREC_API_PORT=str(port),
        STREAMREC_API_READ_KEYS=read_key,
        STREAMREC_API_WRITE_KEYS="",
        STREAMREC_API_ALLOW_ANONYMOUS="false",
    )
    env.setdefault("OMP_NUM_THREADS", "1")
    return ChildProcess("the API", [sys.executable, "-m", "serving.cli", "api"], log_path, env).start(), port


def read_through_api(
    api_url: str, read_key: str, user_id: str, expected: list[str] | None, timeout_s: float = 10.0
) -> dict:
    """The API's answer for ``user_id``, asked again until it is ``expected`` (the list last read from
    the topic; the API's view follows the topic on its own) or ``timeout_s`` passed."""
    url = f"{api_url}/v1/users/{urllib.parse.quote(user_id, safe='')}/recommendations"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            status, body = http_get(url, {"Authorization": f"Bearer {read_key}"})
        except OSError:  # the API went away: the check fails, the demo goes on
            status, body = None, b""
        answer = json.loads(body) if status == 200 else {}
        items = [i["item_id"] for i in answer.get("items", [])]
        if items == expected or time.monotonic() > deadline:
            return {
                "user_id": user_id,
                "http_status": status,
                "fallback": answer.get("fallback"),
                "model_version": answer.get("model_version"),
                "items": items,
                "same_as_topic": items == expected,
                "answer": answer,
            }
        time.sleep(0.2)


# -- the demo -------------------------------------------------------------------------------------
def run_demo(
    events: int | None = None,
    rate: float | None = None,
    json_summary: Path | None = None,
    broker_kind: str = "noida",
    work_dir: Path = Path(".streamrec/demo"),
    k: int = 10,
    with_learner: bool = True,
    with_api: bool = True,
    with_prometheus: bool = False,
    console: Console | None = None,
) -> dict:
    console = console or Console()
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    with console.status("loading MovieLens-100K (recbole 1.2.1 wheel)"):
        movies, ratings = load_movies(), load_ratings()
    ratings = ratings[:events] if events else ratings

    broker = EmbeddedBroker(broker_kind, data_dir=work_dir / "broker")
    worker = learner = api = prometheus = None
    stop_reader = threading.Event()
    try:
        with console.status(f"starting the embedded {broker_kind} broker"):
            broker.start()
        settings = Settings(
            bootstrap=broker.bootstrap,
            metrics_port=free_port(),
            learner_metrics_port=free_port(),
            k=k,
            data_dir=str(work_dir / "worker"),
            model_store=str(work_dir / "models"),
            instance_id="demo-worker-0",
        )
        create_topics(settings)
        console.print(
            f"[green]broker[/] {broker.bootstrap} ({broker_kind}), topics created with prefix '{settings.topic_prefix}'"
        )
        worker = StreamProcess(settings, work_dir / "worker.log")
        worker.start()
        assert worker.process is not None  # start() sets it
        console.print(f"[green]worker[/] pid {worker.process.pid}, log {work_dir / 'worker.log'}")
        ports = {"streamrec-worker": settings.metrics_port}

        if with_learner:
            learner = StreamProcess(settings, work_dir / "learner.log", module="stream.learner")
            learner.start()
            assert learner.process is not None  # start() sets it
            ports["streamrec-learner"] = settings.learner_metrics_port
            console.print(
                f"[green]learner[/] pid {learner.process.pid} (CF + trending, snapshots in "
                f"{settings.model_store}), log {work_dir / 'learner.log'}"
            )

        api_url = read_key = None
        if with_api:
            read_key = secrets.token_urlsafe(16)
            api, ports["streamrec-api"] = start_api(settings, read_key, work_dir / "api.log")
            api_url = f"http://127.0.0.1:{ports['streamrec-api']}"
            assert api.process is not None  # start_api starts it
            console.print(
                f"[green]API[/] pid {api.process.pid} on {api_url} (docs {api_url}/docs), read key "
                f"[bold]{read_key}[/] (this run only), log {work_dir / 'api.log'}\n"
                f"    try: curl -H 'Authorization: Bearer {read_key}' "
                f"{api_url}/v1/users/{ratings[0].user_id}/recommendations"
            )

        metrics_urls = {
            name.removeprefix("streamrec-"): f"http://127.0.0.1:{port}/metrics" for name, port in ports.items()
        }
        console.print("[green]metrics[/] " + ", ".join(f"{name} {url}" for name, url in metrics_urls.items()))
        if with_prometheus:
            prometheus = start_prometheus(console, work_dir / "prometheus", ports)
            if prometheus:
                console.print(
                    f"[green]Prometheus[/] {prometheus.url} (scraping {', '.join(ports)} every second, "
                    f"alert rules of {OPS_PROMETHEUS / 'alerts.yml'}), log {prometheus.child.log_path}"
                )

        producer = EventProducer(settings)
        for movie in movies:
            producer.send_item(movie_item(movie))
        producer.flush()
        _wait_for(
            console,
            f"worker indexing {len(movies)} movies with all-MiniLM-L6-v2",
            lambda s: metric_sum(s, "streamrec_items_indexed"),
            len(movies),
            settings,
            worker,
        )
        if api:
            with console.status("waiting for the API to be ready (/readyz)"):
                api.wait_ok(f"{api_url}/readyz", timeout_s=120)

        tally = RecommendationTally(k)
        reader = threading.Thread(target=follow_recommendations, args=(settings, tally, stop_reader), daemon=True)
        reader.start()

        started = time.monotonic()
        with progress_bar(console) as progress:
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
                    progress.update(
                        task, completed=i + 1, rate=f"{(i + 1) / elapsed:,.0f} ev/s sent, {tally.received:,} lists back"
                    )
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
        summary: dict[str, Any] = {
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
            "metrics_urls": metrics_urls,
            "api_url": api_url,
            "api_check": None,
        }
        side = []
        if api:  # the user of the last rating: their list reflects the very end of the replay
            assert api_url is not None and read_key is not None  # set with the API
            user = ratings[-1].user_id
            check = read_through_api(api_url, read_key, user, tally.last_list.get(user))
            summary["api_check"] = {key: value for key, value in check.items() if key != "answer"}
            side.append(_api_table(api_url, check, {m.item_id: m.display_title for m in movies}))
        if with_prometheus:
            summary["prometheus_url"] = prometheus.url if prometheus else None
            summary["prometheus"] = None
            if prometheus:
                try:
                    with console.status("reading key series from Prometheus"):
                        summary["prometheus"] = prometheus.readings(time.monotonic() - started, len(ratings))
                    side.append(_prometheus_table(prometheus.url, summary["prometheus"]))
                except (OSError, RuntimeError, ValueError) as err:
                    console.print(f"[yellow]Prometheus queries failed: {err}[/]")
        console.print(Columns([_summary_table(summary), *side]))
        if json_summary:
            Path(json_summary).parent.mkdir(parents=True, exist_ok=True)
            Path(json_summary).write_text(json.dumps(summary, indent=2) + "\n")
            console.print(f"summary written to {json_summary}")
        return summary
    finally:
        stop_reader.set()
        with console.status("stopping Prometheus, API, worker, learner and broker"):
            if prometheus:
                prometheus.stop()
            for process in (api, worker, learner):
                if process:
                    process.stop()
            broker.stop()


def progress_bar(console: Console) -> Progress:
    """The progress bar of long runs: description, bar, n of N, rate, elapsed, remaining."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _wait_for(
    console: Console, what: str, read, target: float, settings: Settings, worker: StreamProcess, timeout_s: float = 300
) -> None:
    deadline = time.monotonic() + timeout_s
    with progress_bar(console) as progress:
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


def _summary_table(summary: dict) -> Table:
    table = Table(title="streamrec demo summary", show_header=False)
    for key, value in summary.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    return table


def _api_table(api_url: str, check: dict, titles: dict[str, str]) -> Table:
    answer = check["answer"]
    table = Table(
        "#",
        "movie",
        "score",
        "why",
        title=f"GET /v1/users/{check['user_id']}/recommendations",
        caption=f"{api_url}: HTTP {check['http_status']}, model {check['model_version']}, "
        f"{'same list as' if check['same_as_topic'] else 'differs from'} the topic's last",
    )
    for rank, item in enumerate(answer.get("items", []), 1):
        table.add_row(
            str(rank),
            titles.get(item["item_id"], item["item_id"]),
            f"{item['score']:.3f}",
            "; ".join(item["reasons"][:1]),
        )
    return table


def _prometheus_table(url: str, readings: dict) -> Table:
    table = Table("series", "value", title="Prometheus", caption=url)
    table.add_row(f"events/s (over the last {readings['window']})", str(readings["events_per_s"]))
    table.add_row("p99 event -> list, ms", str(readings["latency_p99_ms"]))
    table.add_row("online hit rate @10 (last 1,000)", str(readings["online_hit_rate_at_10"]))
    table.add_row("alert rules loaded", str(readings["alert_rules"]))
    table.add_row("alerts pending / firing", ", ".join(f"{n} ({s})" for n, s in readings["alerts"].items()) or "none")
    return table
