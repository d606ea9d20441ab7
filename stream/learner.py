"""The learner: its own reader of every event; keeps the global models (item co-occurrence CF,
trending popularity) fresh and ships them to the workers as versioned snapshots.

Loop: read ``events`` (all partitions, no consumer group: on restart it relearns from the
start of the topic's retention) -> learn -> every ``snapshot_every_events`` events or
``snapshot_every_s`` seconds with news: save a snapshot in the model store (manifest + sha256)
and announce it on ``model-updates``. Workers swap to it atomically.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import OrderedDict

from model.cooccurrence import ItemCooccurrence
from model.global_snapshot import GlobalSnapshot
from model.preference import REJECTING_TYPES
from model.trending import TrendingPopularity
from stream.config import Settings, topic_name
from stream.model_store import ModelStore
from stream.schemas import InvalidEvent, parse_event

log = logging.getLogger(__name__)


class GlobalLearner:
    """CF + trending learned from events, with item rows of its own and event-id dedupe.

    >>> learner = GlobalLearner()
    >>> for i, item in enumerate(["a", "b", "a"]):
    ...     _ = learner.learn(f"e{i}", "u1" if i < 2 else "u2", item, "click", ts=0)
    >>> learner.learn("e0", "u1", "a", "click", ts=0)  # a redelivered event
    False
    >>> learner.item_ids, learner.events
    (['a', 'b'], 3)
    """

    def __init__(self, half_life_s: float = 7 * 24 * 3600.0, dedupe_window: int = 200_000) -> None:
        self.cf = ItemCooccurrence()
        self.trending = TrendingPopularity(half_life_s)
        self.item_ids: list[str] = []
        self._rows: dict[str, int] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.dedupe_window = dedupe_window
        self.events = 0

    def learn(self, event_id: str, user_id: str, item_id: str | None, event_type: str, ts: int) -> bool:
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        if len(self._seen) > self.dedupe_window:
            self._seen.popitem(last=False)
        if event_type == "forget_user":
            self.cf.recent.pop(user_id, None)  # the global counts keep no user identity
            return True
        if item_id is None or event_type in REJECTING_TYPES:
            return True
        row = self._rows.get(item_id)
        if row is None:
            row = self._rows[item_id] = len(self.item_ids)
            self.item_ids.append(item_id)
        self.cf.learn_one(user_id, row, ts)
        self.trending.learn_one(row, ts)
        self.events += 1
        return True

    def snapshot(self) -> GlobalSnapshot:
        return GlobalSnapshot.capture(self.item_ids, self.cf, self.trending)


def announce(store: ModelStore, version: str, producer, topic: str) -> dict:
    """Tell the workers to serve ``version`` of ``store`` (a new snapshot, or a rollback)."""
    manifest = store.manifest(version)
    announcement = {"version": version, "uri": f"{store.uri.rstrip('/')}/{version}",
                    "sha256": store.manifest_sha256(version), "created_ts": manifest.created_ts,
                    "metrics": manifest.metrics}
    producer.send(topic, key=b"global", value=json.dumps(announcement).encode())
    producer.flush()
    return announcement


def publish_snapshot(learner: GlobalLearner, store: ModelStore, producer, topic: str, keep_versions: int = 20) -> dict:
    """Store a snapshot, announce it, and keep only the newest ``keep_versions``."""
    manifest = store.save({"global.npz": learner.snapshot().to_bytes()},
                          metrics={"events_learned": learner.events, "items": len(learner.item_ids)})
    announcement = announce(store, manifest.version, producer, topic)
    store.prune(keep=keep_versions)
    return announcement


def run_learner(settings: Settings, stop_after_s: float | None = None) -> None:
    """Learn from ``events`` forever (or ``stop_after_s``), snapshotting as configured."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    if settings.learner_nice:  # background work: let the workers and the broker go first
        os.nice(settings.learner_nice)
    learner = GlobalLearner(settings.trending_half_life_s)
    store = ModelStore(settings.model_store)
    events_topic = topic_name(settings, "events")
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap.split(","), group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    partitions = consumer.partitions_for_topic(events_topic) or set()
    while not partitions:
        time.sleep(0.5)
        partitions = consumer.partitions_for_topic(events_topic) or set()
    consumer.assign([TopicPartition(events_topic, p) for p in sorted(partitions)])
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap.split(","))
    updates_topic = topic_name(settings, "model-updates")
    started = last_snapshot = time.monotonic()
    since_snapshot = 0
    log.info("learner reading %s, store %s", events_topic, store.uri)
    try:
        while stop_after_s is None or time.monotonic() - started < stop_after_s:
            batch = consumer.poll(timeout_ms=0, max_records=5000)
            if not batch:
                time.sleep(0.02)  # noida-db answers fetches at once: pause instead of spinning
            for records in batch.values():
                for record in records:
                    try:
                        event = parse_event(record.value, settings.max_event_bytes)
                    except InvalidEvent:
                        continue  # the workers send it to the DLQ
                    if learner.learn(event.event_id, event.user_id, event.item_id, event.type, event.ts):
                        since_snapshot += 1
            due = (since_snapshot >= settings.snapshot_every_events
                   or (since_snapshot and time.monotonic() - last_snapshot >= settings.snapshot_every_s))
            if due:
                announcement = publish_snapshot(learner, store, producer, updates_topic, settings.keep_versions)
                log.info("snapshot %s: %s", announcement["version"], announcement["metrics"])
                since_snapshot, last_snapshot = 0, time.monotonic()
    finally:
        consumer.close()
        producer.close()


if __name__ == "__main__":  # python -m stream.learner, configured from STREAMREC_* variables
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s learner: %(message)s")
    run_learner(Settings())
