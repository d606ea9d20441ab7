"""Prometheus metrics of a worker (prometheus-client). Labels are bounded: never user or item ids."""

from __future__ import annotations

import os
import urllib.request

from prometheus_client import (
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.parser import text_string_to_metric_families

disable_created_metrics()  # no *_created series: they double the scrape for no insight

EVENTS = Counter(
    "streamrec_events",
    "Events seen by the ingest agent, by type and outcome (processed, duplicate, pending_item, dlq, forgotten)",
    ["type", "outcome"],
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
    "streamrec_batch_processing_seconds",
    "Wall time of processing one poll's batch of events",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
EVENT_PROCESSING = Histogram(
    "streamrec_event_processing_seconds",
    "Worker processing time per event: a batch's time over its events",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
)
USERS_IN_STATE = Gauge("streamrec_users_in_state", "Users whose state this worker holds (its partitions)")
USERS_EXPIRED = Counter("streamrec_users_expired", "Users dropped from the worker's state after the idle TTL")
ONLINE_HIT_RATE = Gauge(
    "streamrec_online_hit_rate", "Share of the last 1,000 hit checks whose item was in the user's last list", ["k"]
)
EVENTS_REPARTITIONED = Counter(
    "streamrec_events_repartitioned",
    "Events that came on another partition than their user's (a producer partitioning by another hash) "
    "and were sent on to the owning partition before touching state",
)
SKIPPED_RECORDS_REREAD = Counter(
    "streamrec_skipped_records_reread",
    "Events the consumer skipped (an offset gap) that the worker read again and applied",
)
CONSUMER_LAG = Gauge(
    "streamrec_consumer_lag_records", "Events not yet processed, per assigned partition", ["topic", "partition"]
)
MODEL_SWAPS = Counter(
    "streamrec_model_swaps",
    "Model versions announced to this process, by outcome (ok, missing, corrupt, incompatible)",
    ["outcome"],
)
MODEL_VERSION = Info("streamrec_model_version", "Model version in use, by kind (global, adapter)", ["kind"])
MODEL_CREATED = Gauge(
    "streamrec_model_created_timestamp_seconds", "Creation time of the model version in use, by kind", ["kind"]
)
BATCH_SIZE = Histogram(
    "streamrec_batch_events",
    "Events processed together per poll",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
)


# -- the learner ---------------------------------------------------------------------------
LEARNER_EVENTS = Counter("streamrec_learner_events", "Events learned by the learner (CF, trending, examples)")
LEARNER_SNAPSHOTS = Counter("streamrec_learner_snapshots", "Global-model snapshots stored and announced")
LEARNER_CHECKPOINT_SECONDS = Histogram(
    "streamrec_learner_checkpoint_seconds",
    "Wall time of saving one learner checkpoint (state + topic positions) to the model store",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30),
)
FINETUNE_SECONDS = Histogram(
    "streamrec_finetune_seconds",
    "Wall time of one micro-fine-tune cycle (training + holdout + re-embedding)",
    buckets=(1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200),
)
FINETUNE_LOSS = Gauge(
    "streamrec_finetune_loss", "training loss (hybrid cross-entropy) of the last step of the last cycle"
)
FINETUNE_EXAMPLES = Counter("streamrec_finetune_examples", "Training examples fed to fine-tune steps")
FINETUNE_CYCLES = Counter(
    "streamrec_finetune_cycles", "Fine-tune cycles, by outcome (promoted, rejected, failed)", ["outcome"]
)
for _outcome in ("promoted", "rejected", "failed"):  # every series exists from the start (alerts, dashboards)
    FINETUNE_CYCLES.labels(_outcome)

# -- drift (workers detect, the learner may fine-tune on it) --------------------------------
DRIFT_DETECTED = Counter("streamrec_drift_detected", "Drift detections, by detector", ["detector"])
DRIFT_STATISTIC = Gauge(
    "streamrec_drift_statistic",
    "Current statistic of each drift detector (hit-rate "
    "estimate, standardised mean list score, centroid cosine distance)",
    ["detector"],
)
DRIFT_SIGNALS = Counter(
    "streamrec_learner_drift_signals", "Drift detections received by the learner, by detector", ["detector"]
)
for _detector in ("hit_rate_adwin", "score_page_hinkley", "centroid_shift"):
    DRIFT_DETECTED.labels(_detector)


def observe_batch(seconds: float, events: int) -> None:
    """One batch: its wall time, and the per-event share for each of its events."""
    BATCH_SECONDS.observe(seconds)
    per_event = seconds / max(1, events)
    for _ in range(events):
        EVENT_PROCESSING.observe(per_event)


def forget_partitions_except(assigned: set[tuple[str, str]]) -> None:
    """Drop lag series of partitions this worker no longer holds (after a rebalance)."""
    for labels in [tuple(s.labels.values()) for m in CONSUMER_LAG.collect() for s in m.samples]:
        if labels not in assigned:
            CONSUMER_LAG.remove(*labels)


def record_model_version(kind: str, version: str, created_ts_ms: int | None) -> None:
    """Export the version in use of one kind of model (and when it was made)."""
    MODEL_VERSION.labels(kind).info({"version": version})
    if created_ts_ms:
        MODEL_CREATED.labels(kind).set(created_ts_ms / 1000.0)


class _NoMetric:
    """Stands in for every metric when metrics are off (``STREAMREC_METRICS_ENABLED=false``)."""

    def labels(self, *args, **kwargs) -> _NoMetric:
        return self

    def inc(self, *args) -> None: ...
    def dec(self, *args) -> None: ...
    def set(self, *args) -> None: ...
    def observe(self, *args) -> None: ...
    def info(self, *args) -> None: ...
    def remove(self, *args) -> None: ...

    def collect(self) -> list:
        return []

    def time(self):
        import contextlib

        return contextlib.nullcontext()


#: Off only to measure what metrics cost (benchmarks/metrics_overhead.py); read once, at import.
METRICS_ENABLED = os.environ.get("STREAMREC_METRICS_ENABLED", "true").strip().lower() not in ("0", "false", "no", "off")
if not METRICS_ENABLED:
    for _name, _value in list(globals().items()):
        if isinstance(_value, (Counter, Gauge, Histogram, Info)):
            globals()[_name] = _NoMetric()


def serve_metrics(host: str, port: int) -> None:
    """Expose /metrics on host:port (default 127.0.0.1:9108); port 0, or metrics off, expose nothing."""
    if port and METRICS_ENABLED:
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
