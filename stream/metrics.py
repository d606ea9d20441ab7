"""Prometheus metrics of a worker (prometheus-client). Labels are bounded: never user or item ids."""

from __future__ import annotations

import urllib.request

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics, start_http_server
from prometheus_client.parser import text_string_to_metric_families

disable_created_metrics()  # no *_created series: they double the scrape for no insight

EVENTS = Counter(
    "streamrec_events", "Events seen by the ingest agent, by type and outcome "
    "(processed, duplicate, pending_item, dlq, forgotten)", ["type", "outcome"]
)
DLQ = Counter("streamrec_dlq", "Records sent to the dead-letter topic, by reason", ["reason"])
EVENT_TO_RECOMMENDATION = Histogram(
    "streamrec_event_to_recommendation_seconds",
    "From the event's own time (ts) to the publication of the refreshed list",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RECOMMENDATIONS_PUBLISHED = Counter("streamrec_recommendations_published", "Recommendation lists published")
ITEMS_INDEXED = Gauge("streamrec_items_indexed", "Items in the worker's index that may be served")
PENDING_EVENTS = Gauge("streamrec_pending_events", "Events waiting for their item to reach the catalogue")
ONLINE_HIT_CHECKS = Counter(
    "streamrec_online_hit_checks", "Events of users who had a list: was the item in the last list served?", ["hit"]
)
BATCH_SECONDS = Histogram(
    "streamrec_batch_processing_seconds", "Wall time of processing one poll's batch of events",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
MODEL_SWAPS = Counter(
    "streamrec_model_swaps", "Global-model versions announced to this worker, by outcome (ok, missing, corrupt)",
    ["outcome"],
)
BATCH_SIZE = Histogram(
    "streamrec_batch_events", "Events processed together per poll",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
)


def serve_metrics(host: str, port: int) -> None:
    """Expose /metrics on host:port (default 127.0.0.1:9108); port 0 exposes nothing."""
    if port:
        start_http_server(port, addr=host)


Samples = list[tuple[str, dict[str, str], float]]


def scrape(port: int, host: str = "127.0.0.1") -> Samples:
    """Read a /metrics page as (sample name, labels, value) triples."""
    text = urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=2).read().decode()
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def metric_sum(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``.

    >>> metric_sum([("x_total", {"hit": "true"}, 2.0), ("x_total", {"hit": "false"}, 3.0)], "x_total", hit="true")
    2.0
    """
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == w for k, w in labels.items()))
