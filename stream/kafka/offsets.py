"""Process every offset of a partition, in order, and commit only what was processed.

Offsets of the ``events`` topic are contiguous, so a worker that keeps a partition must
process offset n + 1 right after offset n. faust-streaming 0.15 breaks this in three ways,
both found by tests/integration/test_recovery.py:

- after a rejoin (a broker restart), the record at the committed offset could be fetched,
  dropped with the agent's queue and never fetched again, while the records after it were
  processed and committed: Faust's "gap at the head" check is off by one;
- records dropped inside the consumer count as acknowledged ("gaps", meant for
  transaction markers), so a commit could pass events no agent ever saw; after a kill -9 they
  were lost (34 of 1,800 events in one run);
- a worker restarted before its group had committed anything could have the records fetched
  during its start-up recovery dropped, and go on after them (seen: offsets 0-486 skipped).

So the worker keeps its own position per partition (:class:`OffsetTracker`): the next offset
it must process, starting where the group resumes (:func:`resume_offsets`) when it gets a
partition. A batch
that starts past it, or skips offsets, has a gap; the worker reads those records itself
(:func:`read_offsets`) and applies them first (a user's events stay in order; one applied
already is a duplicate and changes nothing). Commits take the tracker's position instead of
Faust's acknowledgements (:func:`install_contiguous_commits`), so no offset is committed
before every event below it was processed.

Producers of ``events`` must not use transactions: their markers would read as gaps (each is
read again, finding no record, and the position moves on).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gap:
    """Offsets ``start`` (inclusive) to ``end`` (exclusive) of a partition were never processed."""

    partition: int
    start: int
    end: int


class OffsetTracker:
    """The next offset to process in each partition this worker has.

    >>> tracker = OffsetTracker()
    >>> tracker.processed([(0, 5), (0, 6)])   # (partition, offset) in the order processed
    >>> tracker.gaps([(0, 9), (0, 10)])
    [Gap(partition=0, start=7, end=9)]
    >>> tracker.processed([(0, 9)])           # a hole that was not filled stops the position
    >>> tracker.next_offset
    {0: 7}
    >>> tracker.gaps([(0, 3)])                # a redelivery (a seek back) is no gap
    []
    """

    def __init__(self) -> None:
        self.next_offset: dict[int, int] = {}

    def gaps(self, records: Iterable[tuple[int, int]]) -> list[Gap]:
        """Holes before or inside a batch of (partition, offset), one per hole."""
        found = []
        for partition, offsets in _by_partition(records).items():
            expected = self.next_offset.get(partition)
            for offset in offsets:
                if expected is not None and offset > expected:
                    found.append(Gap(partition, expected, offset))
                expected = offset + 1 if expected is None else max(expected, offset + 1)
        return found

    def processed(self, records: Iterable[tuple[int, int]], read_again: Iterable[Gap] = ()) -> None:
        """Move each position over the offsets processed, as far as they are contiguous; the
        offsets of gaps ``read_again`` in full count as processed (those without a record are
        transaction markers or gone)."""
        covered = [(gap.partition, offset) for gap in read_again for offset in range(gap.start, gap.end)]
        for partition, offsets in _by_partition([*records, *covered]).items():
            position = self.next_offset.get(partition)
            for offset in offsets:
                if position is None or offset == position:
                    position = offset + 1
                elif offset > position:
                    log.error(
                        "offsets %d-%d of partition %d were never processed; position stays at %d",
                        position,
                        offset - 1,
                        partition,
                        position,
                    )
                    break
            assert position is not None  # each partition of _by_partition has at least one offset
            self.next_offset[partition] = position

    def unknown(self, partitions: Iterable[int]) -> set[int]:
        """The partitions among ``partitions`` that have no position yet."""
        return set(partitions) - self.next_offset.keys()

    def start_at(self, committed: Mapping[int, int | None]) -> None:
        """Partitions without a position start at the group's committed offset (if it has one).

        >>> tracker = OffsetTracker()
        >>> tracker.start_at({0: 212, 1: None})
        >>> tracker.gaps([(0, 244), (1, 5)])
        [Gap(partition=0, start=212, end=244)]
        """
        for partition, offset in committed.items():
            if offset is not None:
                self.next_offset.setdefault(partition, offset)

    def assigned(self, committed: Mapping[int, int | None]) -> None:
        """After a rebalance, ``committed`` maps the partitions now held to the group's committed
        offset. Each starts there (or at its first record when there is none), except where this
        worker already processed further (a partition kept: the consumer seeks back, and what it
        delivers again is a duplicate).

        >>> tracker = OffsetTracker()
        >>> tracker.processed([(0, 10), (1, 20)])
        >>> tracker.assigned({1: 15, 2: 7})   # 0 given away, 1 kept, 2 new
        >>> tracker.next_offset
        {1: 21, 2: 7}
        """
        positions = {}
        for partition, offset in committed.items():
            candidates = [o for o in (offset, self.next_offset.get(partition)) if o is not None]
            if candidates:
                positions[partition] = max(candidates)
        self.next_offset = positions


def _by_partition(records: Iterable[tuple[int, int]]) -> dict[int, list[int]]:
    """(partition, offset) pairs as each partition's offsets, sorted."""
    grouped: dict[int, list[int]] = {}
    for partition, offset in records:
        grouped.setdefault(partition, []).append(offset)
    return {partition: sorted(offsets) for partition, offsets in grouped.items()}


async def read_offsets(client_config: Mapping, topic: str, gap: Gap, timeout_s: float = 30.0) -> tuple[list, bool]:
    """The records of ``gap`` (aiokafka ConsumerRecords, in offset order), read with a consumer of
    no group, and whether the read got to its end (fewer records when some are transaction
    markers or gone)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    tp = TopicPartition(topic, gap.partition)
    consumer = AIOKafkaConsumer(**client_config, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    records: list = []
    try:
        consumer.assign([tp])
        consumer.seek(tp, gap.start)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while await consumer.position(tp) < gap.end and loop.time() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=500)
            records.extend(r for r in batch.get(tp, []) if gap.start <= r.offset < gap.end)
        complete = await consumer.position(tp) >= gap.end
        if not complete:
            log.error(
                "could not read offsets %d-%d of %s[%d] within %.0fs",
                gap.start,
                gap.end - 1,
                topic,
                gap.partition,
                timeout_s,
            )
    finally:
        await consumer.stop()
    return records, complete


async def resume_offsets(
    client_config: Mapping, group_id: str, topic: str, partitions: Iterable[int], timeout_s: float = 15.0
) -> dict[int, int | None]:
    """Where the group resumes each partition: its committed offset, or the partition's first
    offset when it has none (the worker starts at the earliest). Read with a consumer that does
    not join the group; None for all when the broker cannot be asked within ``timeout_s`` (a
    broker that is restarting: the first batch after a rebalance waits on this answer)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    partitions = list(partitions)
    consumer = AIOKafkaConsumer(**client_config, group_id=group_id, enable_auto_commit=False)

    async def ask() -> dict[int, int | None]:
        await consumer.start()
        offsets = {p: await consumer.committed(TopicPartition(topic, p)) for p in partitions}
        fresh = [TopicPartition(topic, p) for p, offset in offsets.items() if offset is None]
        if fresh:
            offsets.update({tp.partition: offset for tp, offset in (await consumer.beginning_offsets(fresh)).items()})
        return offsets

    try:
        return await asyncio.wait_for(ask(), timeout_s)
    except Exception as exc:  # the worker goes on; positions then start at the first record delivered
        log.warning("could not read where the group resumes %s: %r", topic, exc)
        return dict.fromkeys(partitions)
    finally:
        await consumer.stop()


_installed: list[bool] = []


def install_contiguous_commits() -> None:
    """Make Faust commit, for the topic of ``app.streamrec_offsets`` (a (topic, tracker) pair),
    the tracker's positions instead of its own acknowledgements (idempotent, per process)."""
    if _installed:
        return
    from faust.transport.consumer import Consumer

    faust_committable = Consumer._filter_committable_offsets

    def filter_committable_offsets(self, tps):
        tracked = getattr(self.app, "streamrec_offsets", None)
        if tracked is None:
            return faust_committable(self, tps)
        topic, tracker = tracked
        others = [tp for tp in tps if tp.topic != topic]
        offsets = faust_committable(self, others) if others else {}
        for tp in tps:
            if tp.topic != topic:
                continue
            position = tracker.next_offset.get(tp.partition)
            committed = self._committed_offset[tp]
            if position is not None and (committed is None or position > committed):
                offsets[tp] = position
            # Faust's own bookkeeping of acknowledgements is not used: keep it from growing
            acked = self._acked[tp]
            if position is not None:
                acked[:] = [o for o in acked if o >= position]
                self._acked_index[tp].intersection_update(acked)
            self._gap.pop(tp, None)
        return offsets

    # monkey-patching faust's consumer on purpose (see the docstring)
    Consumer._filter_committable_offsets = filter_committable_offsets  # type: ignore[method-assign]
    _installed.append(True)
