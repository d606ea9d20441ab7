"""Follow whole topics from their start, without a consumer group: every worker needs the whole
catalogue and every model announcement, every API replica every list. :class:`TopicFollower`
does it on aiokafka (the worker and the API, on their event loop), :func:`consumer_from_start`
on kafka-python (the learner, the demo, tests and benchmarks)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

log = logging.getLogger(__name__)


class TopicHandler(Protocol):
    async def apply(self, records: list) -> None: ...  # one batch of one topic, in offset order

    async def caught_up(self) -> None: ...  # once: the topic was read up to its end offsets at start


class TopicFollower:
    """One aiokafka consumer, no group, reading whole topics from their start and handing each
    batch of records to its topic's handler (``apply``; ``caught_up`` once the topic has been
    read up to the end offsets seen at the first start). Waits for topics that do not exist
    yet, reconnects after errors from where it was, and (``probe_interval_s``) checks that the
    broker answers. ``client_config``: :meth:`KafkaConnection.aiokafka_config`."""

    def __init__(
        self,
        client_config: dict,
        handlers: dict[str, TopicHandler],
        probe_interval_s: float | None = None,
        client_id: str = "streamrec-follower",
        max_records: int = 2000,
    ) -> None:
        self.client_config = client_config
        self.handlers = handlers
        self.probe_interval_s = probe_interval_s
        self.client_id = client_id
        self.max_records = max_records
        self.positions: dict = {}
        self.end_offsets: dict | None = None
        self.pending_topics = set(handlers)
        self.broker_seen_at = float("-inf")

    @property
    def caught_up(self) -> bool:
        return not self.pending_topics

    @property
    def broker_reachable(self) -> bool:
        """The broker answered within the last three probes (needs ``probe_interval_s``)."""
        if not self.probe_interval_s:
            return False
        return time.monotonic() - self.broker_seen_at < 3 * self.probe_interval_s

    async def run(self) -> None:
        while True:
            try:
                await self._follow()
            except Exception:  # broker gone at start, authorisation, ...: log, then resume
                log.exception("reading %s failed; retrying in 1 s", ", ".join(self.handlers))
                await asyncio.sleep(1.0)

    async def _follow(self) -> None:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            **self.client_config,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id=self.client_id,
        )
        try:
            await consumer.start()
            tps = await self._partitions(consumer)
            consumer.assign(tps)
            for tp in tps:
                if tp in self.positions:
                    consumer.seek(tp, self.positions[tp])
                else:
                    await consumer.seek_to_beginning(tp)
            if self.end_offsets is None:
                self.end_offsets = await consumer.end_offsets(tps)
            self.broker_seen_at = time.monotonic()
            probe = asyncio.create_task(self._probe(consumer, tps)) if self.probe_interval_s else None
            try:
                await self._check_caught_up(consumer, tps)
                while True:
                    batch = await consumer.getmany(timeout_ms=500, max_records=self.max_records)
                    for tp, records in batch.items():
                        await self.handlers[tp.topic].apply(records)
                        self.positions[tp] = records[-1].offset + 1
                    if self.pending_topics:
                        await self._check_caught_up(consumer, tps)
            finally:
                if probe is not None:
                    probe.cancel()
        finally:
            await consumer.stop()

    async def _partitions(self, consumer) -> list:
        from aiokafka import TopicPartition

        waited = 0.0
        while True:
            found = {t: consumer.partitions_for_topic(t) for t in self.handlers}
            missing = [t for t, parts in found.items() if not parts]
            if not missing:
                return [TopicPartition(t, p) for t, parts in found.items() for p in sorted(parts)]
            if waited % 10 == 0:
                log.warning("waiting for topics %s (create them with `streamrec topics create`)", ", ".join(missing))
            await consumer._client.force_metadata_update()  # the topics may be created later
            await asyncio.sleep(0.5)
            waited += 0.5

    async def _check_caught_up(self, consumer, tps) -> None:
        assert self.end_offsets is not None  # _follow reads them before the first check
        for topic in sorted(self.pending_topics):
            mine = [tp for tp in tps if tp.topic == topic]
            if all([await consumer.position(tp) >= self.end_offsets[tp] for tp in mine]):
                self.pending_topics.discard(topic)
                await self.handlers[topic].caught_up()

    async def _probe(self, consumer, tps) -> None:
        while True:
            assert self.probe_interval_s is not None  # _follow starts the probe only with an interval
            await asyncio.sleep(self.probe_interval_s)
            try:
                await asyncio.wait_for(consumer.end_offsets(tps), timeout=self.probe_interval_s)
                self.broker_seen_at = time.monotonic()
            except Exception as exc:  # any failure means "not reachable now"
                log.warning("broker probe failed: %s", type(exc).__name__)


def consumer_from_start(connection, topics: list[str], poll_s: float = 0.5, **kafka_config):
    """A kafka-python consumer (no group, no commits) assigned to every partition of ``topics``
    at their start; waits for topics that do not exist yet. ``connection``: a
    :class:`~stream.kafka.connection.KafkaConnection` (e.g. ``Settings``). The caller closes it."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        **connection.kafka_python_config(),
        **kafka_config,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        assignment = []
        for topic in topics:
            partitions = consumer.partitions_for_topic(topic) or set()
            if not partitions:
                log.warning("waiting for topic %s (create the topics: streamrec topics create)", topic)
            while not partitions:
                time.sleep(poll_s)
                partitions = consumer.partitions_for_topic(topic) or set()
            assignment += [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assignment)
        consumer.seek_to_beginning(*assignment)
    except BaseException:
        consumer.close()
        raise
    return consumer
