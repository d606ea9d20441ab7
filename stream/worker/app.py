"""The Faust worker: topics, the user-state table and the ingest agent, in one short module.

Agents stay thin: records go to :class:`stream.worker.ingest.IngestProcessor`, the catalogue is
followed by :class:`stream.worker.catalogue.CatalogueFollower`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, cast

import faust
import numpy as np

from model.embedding.encoder import DEFAULT_MODEL, TextEncoder
from model.user.review import ReviewReader
from stream import metrics
from stream.config import Settings, topic_name
from stream.kafka.durable_flush import install_durable_flush
from stream.kafka.empty_assignment import install_rejoin_on_empty_assignment
from stream.kafka.fetch_backoff import install_fetch_backoff
from stream.kafka.follow import TopicFollower
from stream.kafka.offsets import Gap, OffsetTracker, install_contiguous_commits, read_offsets, resume_offsets
from stream.learner.adapter_training import prepare_adapter_space
from stream.model_updates import ModelUpdates, VerifiedVersion
from stream.schemas import InvalidEvent, dead_letter, now_ms
from stream.worker import user_store
from stream.worker.catalogue import CatalogueFollower
from stream.worker.ingest import IngestProcessor, SourceRecord
from stream.worker.user_store import WarmMemoryStore

log = logging.getLogger(__name__)

RAW: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


def create_app(settings: Settings) -> faust.App:
    """Build the worker app for ``settings`` (broker, topics, table, agent, catalogue task)."""
    install_durable_flush()  # no offset is committed ahead of the user state it changed...
    install_contiguous_commits()  # ...nor ahead of an event that was not processed
    install_rejoin_on_empty_assignment()  # a member the leader missed joins again, not dies
    broker = ";".join(f"kafka://{hp.strip()}" for hp in settings.bootstrap.split(","))
    app = faust.App(
        settings.app_id,
        broker=broker,
        store="memory://",  # the user table has its own store (user_store); rebuilt from the changelog on restart
        datadir=settings.data_dir,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(1.0, settings.session_timeout_s / 6),  # a survivor learns of a death soon
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        consumer_group_instance_id=settings.instance_id,
        table_standby_replicas=settings.standby_replicas,
        # The check compares the store's offsets (read or written by this process, see
        # user_store) with ListOffsets, which tansu 0.6 answers with the last batch's first offset.
        recovery_consistency_check=False,
        producer_linger=0.005,
        producer_max_batch_size=1024 * 1024,  # a batch holds hundreds of lists and user states
        producer_acks=1,
        broker_credentials=settings.faust_credentials(),
    )
    events = app.topic(topic_name(settings, "events"), partitions=settings.partitions, **RAW)
    recommendations = app.topic(topic_name(settings, "recommendations"), partitions=settings.partitions, **RAW)
    dlq = app.topic(topic_name(settings, "events.dlq"), partitions=settings.partitions, **RAW)
    # use_partitioner: the changelog partition follows the key (murmur2, as on `events`), so
    # batches and the catalogue task may write any local user, not only the current event's.
    # The store keeps standby copies warm and knows which users this worker owns (user_store).
    users = app.Table(
        "user-state",
        partitions=settings.partitions,
        use_partitioner=True,
        key_type=bytes,
        value_type=bytes,
        store=user_store.register(),
    )

    def owned_users():
        return cast(WarmMemoryStore, users.data).owned_keys()

    @users.on_recover
    async def users_recovered() -> None:  # after each rebalance, once the table is up to date
        if "processor" in processor_box:
            processor_box["processor"].own(owned_users())

    async def send_dead_letter(raw, error: InvalidEvent, topic: str, partition: int, offset: int) -> None:
        metrics.DLQ.labels(error.reason).inc()
        record = dead_letter(raw, error, topic, partition, offset)
        await dlq.send(key=None, value=record.model_dump_json().encode())

    async def publish(key: bytes, value: bytes | None) -> None:
        await recommendations.send(key=key, value=value)

    drift_signals = app.topic(topic_name(settings, "drift-signals"), partitions=1, **RAW)

    async def forward(key: bytes, value: bytes, partition: int) -> None:
        await events.send(key=key, value=value, partition=partition)

    async def signal_drift(detection) -> None:
        await drift_signals.send(
            key=detection.detector.encode(),
            value=json.dumps(
                {"detector": detection.detector, "n": detection.n, "statistic": detection.statistic, "ts": now_ms()}
            ).encode(),
        )

    encoder_name = DEFAULT_MODEL if settings.encoder_dir is None else settings.encoder_dir
    processor_box: dict[str, IngestProcessor] = {}

    async def on_new_items(item_ids: list[str]) -> None:
        if "processor" in processor_box:
            await processor_box["processor"].on_new_items(item_ids)

    catalogue = CatalogueFollower(
        settings.aiokafka_config(),
        topic_name(settings, "items"),
        encoder_factory=lambda: TextEncoder(settings.encoder_dir),
        dead_letter=send_dead_letter,
        on_new_items=on_new_items,
        exact_search_below=settings.exact_search_below,
        vector_dtype=np.float16 if settings.item_vectors_float16 else np.float32,
    )

    async def processor_started() -> IngestProcessor:
        while "processor" not in processor_box:
            await asyncio.sleep(0.1)
        return processor_box["processor"]

    def prepare_adapter(verified: VerifiedVersion):
        encoder, index = prepare_adapter_space(
            verified.files, verified.manifest.metrics, catalogue.base_encoder, catalogue.index, dict(catalogue.texts)
        )
        return verified.version, encoder, index

    def use_adapter(prepared) -> None:  # on the event loop, between two batches
        version, encoder, index = prepared
        catalogue.use_space(encoder, index)
        assert catalogue.index is not None  # use_space just set it
        processor_box["processor"].use_space(version, catalogue.index)

    model_updates = ModelUpdates(
        {
            "global": (
                lambda verified: processor_box["processor"].prepare_global_models(verified),
                lambda prepared: processor_box["processor"].use_global_models(prepared),
            ),
            "adapter": (prepare_adapter, use_adapter),
        }
    )

    @app.task
    async def follow_catalogue() -> None:
        await catalogue.run()

    @app.task
    async def follow_model_updates() -> None:
        await processor_started()
        await TopicFollower(
            settings.aiokafka_config(),
            {topic_name(settings, "model-updates"): model_updates},
            client_id="streamrec-model-updates",
        ).run()

    offsets = OffsetTracker()  # the next offset to process in each partition of `events` held
    # what commits take (stream.kafka.offsets reads it off the app); not an attribute faust declares
    app.streamrec_offsets = (events.get_topic_name(), offsets)  # type: ignore[attr-defined]
    assignment: dict[str, asyncio.Task] = {}

    # faust types a receiver as (sender, *args, signal=...); it calls this one with the assigned set
    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def follow_assignment(sender, assigned, **kwargs) -> None:
        partitions = sorted(tp.partition for tp in assigned if tp.topic == events.get_topic_name())
        assignment["resume"] = asyncio.get_running_loop().create_task(
            resume_offsets(settings.aiokafka_config(), settings.app_id, events.get_topic_name(), partitions)
        )

    async def with_skipped_records(records: list[SourceRecord]) -> tuple[list[SourceRecord], list[Gap]]:
        """``records`` with the records the consumer skipped before or among them, if any, and the
        gaps read again in full."""
        if "resume" in assignment:  # the first batch since a rebalance
            offsets.assigned(await assignment.pop("resume"))
        unknown = offsets.unknown(rec.partition for rec in records)
        if unknown:  # a partition's first batch may come before the rebalance signal
            offsets.start_at(
                await resume_offsets(settings.aiokafka_config(), settings.app_id, events.get_topic_name(), unknown)
            )
        missing, read_again = [], []
        for gap in offsets.gaps((rec.partition, rec.offset) for rec in records):
            found, complete = await read_offsets(settings.aiokafka_config(), events.get_topic_name(), gap)
            log.warning(
                "the consumer skipped offsets %d-%d of %s[%d]; %d records read again",
                gap.start,
                gap.end - 1,
                events.get_topic_name(),
                gap.partition,
                len(found),
            )
            metrics.SKIPPED_RECORDS_REREAD.inc(len(found))
            missing += [SourceRecord(r.value, r.topic, r.partition, r.offset) for r in found]
            if complete:
                read_again.append(gap)
        if missing:  # a user's events in order
            records = sorted(missing + records, key=lambda rec: (rec.partition, rec.offset))
        return records, read_again

    @app.timer(interval=settings.lag_interval_s)
    async def export_consumer_lag() -> None:
        """streamrec_consumer_lag_records per assigned partition of ``events``: end offset minus
        the next offset to process."""
        from aiokafka.errors import KafkaError  # IllegalStateError among them

        assigned = [tp for tp in app.consumer.assignment() if tp.topic == events.get_topic_name()]
        if not assigned:
            return
        try:
            ends = await app.consumer.highwaters(*assigned)
            for tp in assigned:
                position = offsets.next_offset.get(tp.partition)
                if position is None:
                    position = await app.consumer.position(tp)
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, ends[tp] - (position or 0)))
        except KafkaError as err:  # a rebalance took a partition meanwhile: next tick
            log.debug("consumer lag not exported this time: %s", err)
            return
        metrics.forget_partitions_except({(tp.topic, str(tp.partition)) for tp in assigned})

    @app.timer(interval=max(1.0, min(settings.user_ttl_s / 10, 60.0)) if settings.user_ttl_s else 3600.0)
    async def expire_idle_users() -> None:
        if "processor" in processor_box:
            expired = processor_box["processor"].expire_idle()
            if expired:
                log.info("%d idle users expired from the state", expired)

    @app.agent(events)
    async def ingest(stream):
        for noisy in ("aiokafka", "faust.transport", "faust.topics"):  # per-request debug records are costly
            logging.getLogger(noisy).setLevel(max(logging.getLogger().level, logging.INFO))
        try:
            await asyncio.wait_for(catalogue.ready.wait(), timeout=settings.catalogue_wait_s)
        except TimeoutError:
            log.warning(
                "catalogue not caught up after %.0fs; serving with %d items",
                settings.catalogue_wait_s,
                0 if catalogue.index is None else len(catalogue.index),
            )
        while catalogue.index is None:
            await asyncio.sleep(0.1)
        processor = processor_box.setdefault(
            "processor",
            IngestProcessor(
                settings,
                catalogue.index,
                users,
                publish,
                send_dead_letter,
                encoder_name,
                signal_drift,
                # a review's text in the space the items are served from (base, or the adapter's)
                reviews=ReviewReader(lambda texts: cast(TextEncoder, catalogue.encoder).encode(texts)),
                forward=forward,
            ),
        )
        processor.own(owned_users())  # if the table was recovered before the processor existed
        async for batch in stream.take_events(settings.batch_max, within=settings.batch_within_s):
            records, read_again = await with_skipped_records(
                [SourceRecord(e.message.value, e.message.topic, e.message.partition, e.message.offset) for e in batch]
            )
            started = time.perf_counter()
            await processor.process_isolating_failures(records)
            metrics.observe_batch(time.perf_counter() - started, len(records))
            offsets.processed(((rec.partition, rec.offset) for rec in records), read_again)
            metrics.USERS_IN_STATE.set(len(processor.last_active))

    return app


def run_worker(settings: Settings, loglevel: str | None = None) -> None:
    """Start the metrics endpoint and run the worker in the foreground until stopped."""
    from faust.worker import Worker

    install_fetch_backoff(settings.empty_fetch_backoff_s)
    metrics.serve_metrics(settings.metrics_host, settings.metrics_port)
    app = create_app(settings)
    Worker(app, loglevel=loglevel or settings.log_level, quiet=True).execute_from_commandline()
