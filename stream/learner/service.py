"""The learner: its own reader of every event; keeps the global models (item co-occurrence CF,
trending popularity) fresh, fine-tunes the encoder's LoRA adapter, and ships both to the
workers as versioned, checksummed model versions.

Loop: read ``items`` (item texts), ``model-updates`` (the adapter in service) and ``events``
(all partitions, no consumer group: on restart it relearns from the start of the topic's
retention) -> learn CF + trending, cut (history -> next item) training examples -> every
``snapshot_every_events`` events or ``snapshot_every_s`` seconds with news: save a snapshot in
the model store and announce it on ``model-updates``; per :class:`CycleTrigger`: a guarded
fine-tune cycle in a thread (:mod:`stream.learner.adapter_training`). Workers swap atomically.
"""

from __future__ import annotations

import json
import logging
import os
import time

import numpy as np

from model.drift import DETECTORS
from model.embedding.encoder import TextEncoder
from model.finetune.cycle import FinetuneSchedule
from model.finetune.examples import NextItemExamples
from model.scoring.global_learner import GlobalLearner
from stream import metrics
from stream.config import Settings, topic_name
from stream.kafka.follow import consumer_from_start
from stream.learner.adapter_training import AdapterTrainer
from stream.learner.checkpoint import LearnerCheckpoint, newest_checkpoint, save_checkpoint
from stream.model_store import ModelStore
from stream.model_updates import announcement_kind, newest_usable
from stream.schemas import InvalidEvent, parse_event, parse_json_object, read_item_record

log = logging.getLogger(__name__)


def announce(store: ModelStore, version: str, producer, topic: str) -> dict:
    """Tell the workers to serve ``version`` of ``store`` (a new version, or a rollback); the
    record is keyed by the version's kind (global, adapter)."""
    manifest = store.manifest(version)
    announcement = {
        "version": version,
        "kind": manifest.kind,
        "uri": f"{store.uri.rstrip('/')}/{version}",
        "sha256": store.manifest_sha256(version),
        "created_ts": manifest.created_ts,
        "metrics": manifest.metrics,
    }
    producer.send(topic, key=manifest.kind.encode(), value=json.dumps(announcement).encode())
    producer.flush()
    return announcement


def publish_snapshot(learner: GlobalLearner, store: ModelStore, producer, topic: str, keep_versions: int = 20) -> dict:
    """Store a snapshot, announce it, and keep only the newest ``keep_versions`` of each kind."""
    started = time.perf_counter()
    snapshot = learner.snapshot()
    data = snapshot.to_bytes()
    build_s = time.perf_counter() - started
    manifest = store.save(
        {"global.npz": data},
        metrics={
            "events_learned": learner.events,
            "items": len(learner.item_ids),
            "cf_items": int((np.diff(snapshot.neighbours.indptr) > 0).sum()),
            "cf_neighbour_pairs": len(snapshot.neighbours.indices),
            "bytes": len(data),
            "build_seconds": round(build_s, 3),
        },
    )
    announcement = announce(store, manifest.version, producer, topic)
    store.prune(keep=keep_versions)
    metrics.LEARNER_SNAPSHOTS.inc()
    metrics.record_model_version("global", manifest.version, manifest.created_ts)
    return announcement


class CycleTrigger:
    """When the learner starts a fine-tune cycle: every ``schedule.every_events`` events
    learned, or after ``schedule.every_s`` seconds if any came in, or as soon as a drift
    detector asks (:meth:`request`) and something new came in; never while a cycle runs (the
    caller checks).

    >>> trigger = CycleTrigger(FinetuneSchedule(every_events=100, every_s=60.0), now=0.0)
    >>> trigger.due(events=50, now=10.0), trigger.due(events=100, now=11.0)
    (None, 'every 100 events')
    >>> trigger.started(events=100, now=11.0); trigger.request("drift: hit_rate_adwin")
    >>> trigger.due(events=101, now=12.0)
    'drift: hit_rate_adwin'
    """

    def __init__(self, schedule: FinetuneSchedule, now: float) -> None:
        self.every_events = schedule.every_events
        self.every_s = schedule.every_s
        self._last_events = 0
        self._last_time = now
        self._requested: str | None = None

    def request(self, reason: str) -> None:
        self._requested = self._requested or reason

    def due(self, events: int, now: float) -> str | None:
        fresh = events - self._last_events
        if self._requested and fresh > 0:
            return self._requested
        if fresh >= self.every_events:
            return f"every {self.every_events} events"
        if fresh > 0 and now - self._last_time >= self.every_s:
            return f"every {self.every_s:.0f}s"
        return None

    def started(self, events: int, now: float) -> None:
        self._last_events, self._last_time, self._requested = events, now, None

    @property
    def last_events(self) -> int:
        """Events learned when the last cycle started (a checkpoint keeps it)."""
        return self._last_events

    @property
    def requested(self) -> str | None:
        return self._requested


def adapter_trainer(settings: Settings, store: ModelStore, announce, base_encoder=None) -> AdapterTrainer:
    """The learner's fine-tuning: cycles on ``settings.finetune_schedule()`` (the schedule
    ``streamrec evaluate`` replays), the encoder loaded on first need unless given."""
    return AdapterTrainer(
        store,
        announce,
        base_encoder or (lambda: TextEncoder(settings.encoder_dir)),
        settings.finetune_schedule(),
        half_life_s=settings.half_life_s,
        content_weight=settings.weight_content,
        threads=settings.finetune_threads,
    )


def learner_main(settings: Settings) -> None:
    """The learner as a process (``python -m stream.learner``, ``streamrec learner``): logs to
    stderr, stops cleanly on SIGTERM or SIGINT (consumer and producer closed, cycle awaited)."""
    from stream.process import stop_on_signals

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s learner: %(message)s")
    stop_on_signals()
    try:
        run_learner(settings)
    except KeyboardInterrupt as stopped:
        log.info("stopped (%s)", stopped)


def run_learner(settings: Settings, stop_after_s: float | None = None) -> None:
    """Learn from ``events`` forever (or ``stop_after_s``): CF + trending snapshots as
    configured, and (``settings.finetune``) guarded adapter fine-tune cycles in a thread."""
    from kafka import KafkaProducer

    if settings.learner_nice:  # background work: let the workers and the broker go first
        os.nice(settings.learner_nice)
    metrics.serve_metrics(settings.metrics_host, settings.learner_metrics_port)
    schedule = settings.finetune_schedule()
    weights = settings.hybrid_weights()
    store = ModelStore(settings.model_store)
    topics = {name: topic_name(settings, name) for name in ("items", "model-updates", "drift-signals", "events")}
    state = resume(store, settings)
    learner, examples, catalogue = state.learner, state.examples, state.catalogue
    catalogue_order = tuple(sorted(catalogue))  # what examples' priors are over (rebuilt when it changes)
    consumer = consumer_from_start(settings, list(topics.values()))
    seek_to(consumer, state.positions)  # model-updates is read from the start: the adapter in service
    producer = KafkaProducer(**settings.kafka_python_config())
    trainer = None
    if settings.finetune:
        trainer = adapter_trainer(
            settings, store, lambda version: announce(store, version, producer, topics["model-updates"])
        )
    started = last_snapshot = last_checkpoint = time.monotonic()
    trigger = CycleTrigger(schedule, started)
    trigger.started(state.cycle_events, started)
    if state.cycle_requested:
        trigger.request(state.cycle_requested)
    since_snapshot, published = 0, False
    log.info("learner reading %s, store %s, fine-tuning %s", topics["events"], store.uri, "on" if trainer else "off")
    try:
        while stop_after_s is None or time.monotonic() - started < stop_after_s:
            batch = consumer.poll(timeout_ms=0, max_records=5000)
            if not batch:
                time.sleep(0.02)  # noida-db answers fetches at once: pause instead of spinning
            by_topic: dict[str, list] = {}
            for tp, records in batch.items():
                by_topic.setdefault(tp.topic, []).extend(records)
            if by_topic.get(topics["items"]):
                follow_catalogue(catalogue, by_topic[topics["items"]])
                catalogue_order = tuple(sorted(catalogue))
            if trainer is not None:
                follow_adapters(trainer, by_topic.get(topics["model-updates"], []))
            for signal in (parse_json_object(r.value) for r in by_topic.get(topics["drift-signals"], [])):
                if signal and signal.get("detector") in DETECTORS:
                    metrics.DRIFT_SIGNALS.labels(signal["detector"]).inc()
                    trigger.request(f"drift: {signal['detector']}")
            for record in by_topic.get(topics["events"], []):
                try:
                    event = parse_event(record.value, settings.max_event_bytes)
                except InvalidEvent:
                    continue  # the workers send it to the DLQ
                if learner.has_seen(event.event_id):
                    continue
                if event.type == "forget_user":
                    examples.forget(event.user_id)
                elif event.item_id is not None:  # its prior: CF + trending before the event is learned

                    def prior(
                        user: str = event.user_id, order: tuple[str, ...] = catalogue_order
                    ) -> tuple[np.ndarray, tuple[str, ...]]:
                        return learner.prior(user, order, weights), order

                    examples.observe(event.user_id, event.item_id, event.type, event.value, event.ts, prior=prior)
                learner.learn(event.event_id, event.user_id, event.item_id, event.type, event.ts)
                since_snapshot += 1
                metrics.LEARNER_EVENTS.inc()
            due = since_snapshot >= settings.snapshot_every_events or (
                since_snapshot and time.monotonic() - last_snapshot >= settings.snapshot_every_s
            )
            caught_up = since_snapshot and not batch and not published  # the first: once the backlog is read
            if due or caught_up:
                announcement = publish_snapshot(
                    learner, store, producer, topics["model-updates"], settings.keep_versions
                )
                log.info("snapshot %s: %s", announcement["version"], announcement["metrics"])
                since_snapshot, last_snapshot, published = 0, time.monotonic(), True
            if trainer is not None and not trainer.busy and len(examples.buffer) >= schedule.min_examples:
                reason = trigger.due(learner.events, time.monotonic())
                if reason and trainer.start_cycle(list(examples.buffer), catalogue, reason, learner.events):
                    trigger.started(learner.events, time.monotonic())
            if settings.checkpoint_every_s and time.monotonic() - last_checkpoint >= settings.checkpoint_every_s:
                positions = {
                    (tp.topic, tp.partition): consumer.position(tp)
                    for tp in consumer.assignment()
                    if tp.topic != topics["model-updates"]
                }
                if positions != state.positions:  # something was read since the last one
                    state = LearnerCheckpoint(
                        learner, examples, catalogue, positions, trigger.last_events, trigger.requested
                    )
                    version, size, took_s = save_checkpoint(store, state)
                    metrics.LEARNER_CHECKPOINT_SECONDS.observe(took_s)
                    log.info("checkpoint %s: %d events, %.1f MB in %.2f s", version, learner.events, size / 1e6, took_s)
                last_checkpoint = time.monotonic()
    finally:
        if trainer is not None:
            trainer.wait(timeout=5)
        consumer.close()
        producer.close()


def resume(store: ModelStore, settings: Settings) -> LearnerCheckpoint:
    """The newest checkpoint in ``store`` (checkpoints on), else a learner that starts from nothing."""
    found = newest_checkpoint(store) if settings.checkpoint_every_s else None
    if found is not None:
        version, checkpoint = found
        log.info(
            "resuming from checkpoint %s: %d events learned, %d items",
            version,
            checkpoint.learner.events,
            len(checkpoint.catalogue),
        )
        return checkpoint
    learner = GlobalLearner(
        settings.trending_half_life_s,
        cf_min_item_count=settings.cf_min_item_count,
        cf_neighbours=settings.cf_neighbours,
    )
    examples = NextItemExamples(settings.finetune_schedule().buffer_size, settings.history_size)
    return LearnerCheckpoint(learner, examples, catalogue={}, positions={})


def seek_to(consumer, positions: dict[tuple[str, int], int]) -> None:
    """Move ``consumer`` (assigned, at the start) to a checkpoint's positions."""
    from kafka import TopicPartition

    assigned = consumer.assignment()
    for (topic, partition), offset in positions.items():
        tp = TopicPartition(topic, partition)
        if tp in assigned:
            consumer.seek(tp, offset)


def follow_catalogue(catalogue: dict[str, str], records) -> None:
    """Keep item_id -> text current from ``items`` records (tombstones and deletions remove;
    the workers dead-letter malformed ones)."""
    for record in records:
        try:
            change = read_item_record(record.key, record.value)
        except InvalidEvent:
            continue
        if change is None:
            continue
        if change.item is None:
            catalogue.pop(change.item_id, None)
        else:
            catalogue[change.item_id] = change.item.text


def follow_adapters(trainer: AdapterTrainer, records) -> None:
    """Fine-tune on top of the newest usable adapter the workers were told to serve (after a
    restart or a rollback): it must pass its checksums."""
    adapters = [
        a for a in map(parse_json_object, (r.value for r in records)) if a and announcement_kind(a) == "adapter"
    ]
    found = newest_usable(adapters, lambda verified: verified)
    if found is not None:
        trainer.follow(found[0].version)
