"""Read a whole topic from its start, without a consumer group (every worker needs all of it)."""

from __future__ import annotations

import asyncio


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
