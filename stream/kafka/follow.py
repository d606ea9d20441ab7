"""Read whole topics from their start, without a consumer group (every worker and API replica
needs all of them): :func:`open_from_start` for one topic, :class:`TopicFollower` for several
with a handler each."""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger(__name__)


async def open_from_start(client_config: dict, topic: str, retry_s: float = 0.5):
    """A started aiokafka consumer assigned to every partition of ``topic`` at offset 0, and
    those partitions. ``client_config``: :meth:`Settings.aiokafka_config` (address, security).
    Waits for the topic to exist. The caller stops the consumer."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**client_config, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        while not partitions:  # the topic may be created later
            await consumer._client.force_metadata_update()
            await asyncio.sleep(retry_s)
            partitions = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
    except BaseException:
        await consumer.stop()
        raise
    return consumer, tps


class TopicFollower:
    """One consumer, no group, reading whole topics from their start and handing each batch of
    records to its topic's handler (``apply``; ``caught_up`` once the topic has been read up to
    the end offsets seen at the first start). Reconnects after errors from where it was, and
    checks every ``probe_interval_s`` that the broker answers."""

    def __init__(self, client_config: dict, handlers: dict, probe_interval_s: float) -> None:
        self.client_config = client_config
        self.handlers = handlers
        self.probe_interval_s = probe_interval_s
        self.positions: dict = {}
        self.end_offsets: dict | None = None
        self.pending_topics = set(handlers)
        self.broker_seen_at = float("-inf")

    @property
    def caught_up(self) -> bool:
        return not self.pending_topics

    @property
    def broker_reachable(self) -> bool:
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

        consumer = AIOKafkaConsumer(**self.client_config, group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest", client_id="streamrec-api-view")
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
            probe = asyncio.create_task(self._probe(consumer, tps))
            try:
                await self._check_caught_up(consumer, tps)
                while True:
                    batch = await consumer.getmany(timeout_ms=500, max_records=2000)
                    for tp, records in batch.items():
                        await self.handlers[tp.topic].apply(records)
                        self.positions[tp] = records[-1].offset + 1
                    if self.pending_topics:
                        await self._check_caught_up(consumer, tps)
            finally:
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
            await consumer._client.force_metadata_update()  # as stream.kafka.follow does
            await asyncio.sleep(0.5)
            waited += 0.5

    async def _check_caught_up(self, consumer, tps) -> None:
        for topic in sorted(self.pending_topics):
            mine = [tp for tp in tps if tp.topic == topic]
            if all([await consumer.position(tp) >= self.end_offsets[tp] for tp in mine]):
                self.pending_topics.discard(topic)
                await self.handlers[topic].caught_up()

    async def _probe(self, consumer, tps) -> None:
        while True:
            await asyncio.sleep(self.probe_interval_s)
            try:
                await asyncio.wait_for(consumer.end_offsets(tps), timeout=self.probe_interval_s)
                self.broker_seen_at = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - any failure means "not reachable now"
                log.warning("broker probe failed: %s", type(exc).__name__)
