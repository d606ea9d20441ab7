"""Make Faust's producer flush wait until every buffered message is in the Kafka client.

A table write (``users[key] = state``) puts the changelog record in Faust's producer buffer,
which a background task hands to aiokafka. Before committing offsets Faust flushes the
producer, so that no offset is committed ahead of the state it produced. But in
faust-streaming 0.15 ``ProducerBuffer.flush`` returns as soon as 0.1 s pass without a message
sent, and it does not see the message the background task is sending. On a busy worker the
commit then overtook the state: after a kill -9 the restarted worker resumed after events
whose state changes were never written (1 run in 1 on a loaded 2-core machine: 131 of 1,800
events lost, consecutive events of single users).

This flush waits until the buffer is empty and no send is in flight, keeping the single
sender (the background task), so the records of one key stay in order. If the producer stops,
it raises as Faust's does.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)

_installed: list[bool] = []


def install_durable_flush(warn_after_s: float = 30.0) -> None:
    """Patch ``faust.transport.producer.ProducerBuffer`` once per process (idempotent)."""
    if _installed:
        return
    from faust.transport.producer import ProducerBuffer

    send_pending = ProducerBuffer._send_pending

    async def counted_send_pending(self, fut) -> None:
        self._streamrec_in_flight = getattr(self, "_streamrec_in_flight", 0) + 1
        try:
            await send_pending(self, fut)
        finally:
            self._streamrec_in_flight -= 1
            self.message_sent.set()  # also after a failed send: a flush re-checks

    async def flush(self) -> None:
        """Return once every message put so far has been handed to the Kafka client."""
        waited = 0.0
        while self.size or getattr(self, "_streamrec_in_flight", 0):
            if self.state != "running" and self.size:
                raise RuntimeError("Cannot flush: Producer not Running")
            self.message_sent.clear()
            try:
                await asyncio.wait_for(self.message_sent.wait(), timeout=1.0)
            except TimeoutError:
                waited += 1.0
                if waited % warn_after_s == 0:
                    log.warning("producer flush still waiting after %.0fs (%d buffered)", waited, self.size)

    # monkey-patching faust's producer buffer on purpose (see the module docstring)
    ProducerBuffer._send_pending = counted_send_pending  # type: ignore[method-assign]
    ProducerBuffer.flush = flush  # type: ignore[method-assign]
    _installed.append(True)
