"""Contiguous offsets: the worker notices records its consumer skipped, reads them again, and
commits only positions below which every event was processed."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from stream.kafka.offsets import Gap, OffsetTracker, install_contiguous_commits, read_offsets, resume_offsets


def test_a_record_dropped_at_the_committed_offset_after_a_rejoin_is_a_gap():
    tracker = OffsetTracker()
    tracker.processed([(0, 551), (0, 552), (1, 345), (1, 346)])
    tracker.assigned({0: 553, 1: 347})  # the same partitions come back after the rejoin
    # the consumer resumes partition 1 at 348: offset 347 was dropped (the broker-restart loss)
    assert tracker.gaps([(0, 553), (1, 348), (0, 554), (1, 349)]) == [Gap(1, 347, 348)]


def test_a_restarted_worker_starts_at_the_committed_offset():
    tracker = OffsetTracker()  # a fresh process: nothing processed yet
    tracker.assigned({0: 212, 1: None})
    assert tracker.gaps([(0, 244), (1, 5)]) == [Gap(0, 212, 244)]  # 1 has no commit: no gap


def test_holes_inside_a_batch_are_gaps_and_redeliveries_are_not():
    tracker = OffsetTracker()
    tracker.processed([(0, 9)])
    assert tracker.gaps([(0, 10), (0, 13), (0, 14), (0, 20)]) == [Gap(0, 11, 13), Gap(0, 15, 20)]
    assert tracker.gaps([(0, 4), (0, 5), (0, 10)]) == []  # a seek back to the committed offset
    tracker.processed([(0, 4), (0, 5)])
    assert tracker.next_offset == {0: 10}  # a redelivery does not move the position back


def test_the_position_stops_at_a_hole_unless_the_hole_was_read_again_in_full():
    tracker = OffsetTracker()
    tracker.processed([(0, 9), (0, 12), (0, 13)])
    assert tracker.next_offset == {0: 10}  # 10-11 unprocessed: commits must not pass them
    tracker = OffsetTracker()
    tracker.processed([(0, 9)])
    assert tracker.gaps([(0, 14)]) == [Gap(0, 10, 14)]
    # read again in full: records at 10 and 12 only (11 and 13 are transaction markers)
    tracker.processed([(0, 10), (0, 12), (0, 14)], read_again=[Gap(0, 10, 14)])
    assert tracker.next_offset == {0: 15}


def test_a_partition_given_away_and_back_starts_at_the_new_committed_offset():
    tracker = OffsetTracker()
    tracker.processed([(3, 1000)])
    tracker.assigned({1: 0})  # partition 3 went to another worker, who processed 1001-4999
    tracker.assigned({1: 0, 3: 5000})
    assert tracker.gaps([(3, 5000)]) == []
    tracker.processed([(3, 900)])
    tracker.assigned({3: 5000})  # a stale position below the committed offset is not kept
    assert tracker.next_offset == {3: 5000}


def test_commits_take_the_tracked_position_not_faust_acknowledgements():
    from faust.transport.consumer import Consumer
    from faust.types import TP

    install_contiguous_commits()
    tracker = OffsetTracker()
    tracker.processed([(0, n) for n in range(0, 212)])
    tp = TP("events", 0)
    consumer = SimpleNamespace(
        app=SimpleNamespace(streamrec_offsets=("events", tracker)),
        _committed_offset={tp: 100},
        _acked={tp: [150, 244, 245, 246]},
        _acked_index={tp: {150, 244, 245, 246}},
        _gap={tp: "Faust counted 212-243 as acknowledged"},
    )
    # Faust would commit 247 (its "gap" 212-243 plus 244-246); 212-243 were never processed
    assert Consumer._filter_committable_offsets(consumer, [tp]) == {tp: 212}
    assert consumer._acked[tp] == [244, 245, 246] and tp not in consumer._gap  # bookkeeping stays bounded
    consumer._committed_offset[tp] = 212
    assert Consumer._filter_committable_offsets(consumer, [tp]) == {}  # nothing new to commit


@pytest.mark.integration
def test_read_offsets_reads_exactly_the_missing_records(broker, settings):
    from serving.sdk import EventProducer
    from stream.config import topic_name

    with EventProducer(settings) as producer:
        for n in range(10):
            producer.send_raw(f"record {n}".encode(), key=b"one key")  # one key: one partition
        producer.flush()
    topic = topic_name(settings, "events")
    found, complete = asyncio.run(
        read_offsets(settings.aiokafka_config(), topic, Gap(_partition_of(settings, topic), 3, 7))
    )
    assert complete
    assert [(r.offset, r.value) for r in found] == [(n, f"record {n}".encode()) for n in range(3, 7)]


@pytest.mark.integration
def test_a_group_resumes_at_its_committed_offset_or_else_at_the_first_offset(broker, settings):
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    from serving.sdk import EventProducer
    from stream.config import topic_name

    topic = topic_name(settings, "events")
    with EventProducer(settings) as producer:
        for n in range(10):
            producer.send_raw(f"record {n}".encode(), key=b"one key")
        producer.flush()
    partition = _partition_of(settings, topic)
    group = f"{settings.app_id}-resume"
    assert asyncio.run(resume_offsets(settings.aiokafka_config(), group, topic, [partition])) == {partition: 0}
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=group, enable_auto_commit=False)
    consumer.commit({TopicPartition(topic, partition): OffsetAndMetadata(6, "", -1)})
    consumer.close()
    assert asyncio.run(resume_offsets(settings.aiokafka_config(), group, topic, [partition])) == {partition: 6}


def _partition_of(settings, topic: str) -> int:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
    )
    try:
        return next(iter(consumer)).partition
    finally:
        consumer.close()
