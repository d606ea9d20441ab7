"""Faust's producer flush, as patched by stream.kafka.durable_flush: it returns only once every
buffered record has been handed to the Kafka client, in order, however slow the sends are."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from faust.transport.producer import ProducerBuffer

from stream.kafka.durable_flush import install_durable_flush


class SlowChannel:
    """Stands in for a topic: each publish takes ``delay_s`` before the record is in the client."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.published: list[int] = []

    async def publish_message(self, fut, wait: bool = False) -> None:
        await asyncio.sleep(self.delay_s)
        self.published.append(fut.message.value)


def test_flush_waits_for_every_buffered_record_even_when_sends_are_slow():
    install_durable_flush()
    channel = SlowChannel(delay_s=0.25)  # Faust's own flush gave up after 0.1 s without a send

    async def scenario() -> tuple[list[int], list[int]]:
        buffer = ProducerBuffer()
        buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))
        await buffer.start()
        try:
            for n in range(4):
                buffer.put(SimpleNamespace(message=SimpleNamespace(channel=channel, value=n)))
            await asyncio.sleep(0.01)  # the background task has taken the first record: in flight
            await buffer.flush()
            return list(channel.published), list(range(4))
        finally:
            await buffer.stop()

    published, expected = asyncio.run(scenario())
    assert published == expected  # all of them, in the order they were put
