"""Any producer's partitioner: events keyed by user but placed by librdkafka's default
partitioner (CRC32, what confluent-kafka and kcat use), not by murmur2 like the user-state table,
reach their user's owner before they touch state. Two workers, restarted between two halves,
so each recovers only its own partitions of the table."""

from __future__ import annotations

import json
import time

import pytest

from stream.broker import free_port
from stream.config import topic_name
from stream.metrics import metric_sum
from stream.process import StreamProcess
from stream.worker.ingest import owning_partition
from tests.integration.test_recovery import wait_until_applied
from tests.integration.test_worker import KITCHEN, SHOES, publish_catalogue

pytestmark = pytest.mark.integration

USERS = [f"shopper-{u}" for u in range(60)]
ITEMS = [*SHOES, *KITCHEN]


def events(phase: int) -> list[dict]:
    return [
        {
            "event_id": f"{user}-{phase}-{n}",
            "user_id": user,
            "item_id": ITEMS[(u * 5 + phase * 3 + n) % len(ITEMS)],
            "type": "click",
            "ts": 1_700_000_000_000 + 60_000 * (phase * 10 + n) + u,
        }
        for u, user in enumerate(USERS)
        for n in range(3)
    ]


def send_with_librdkafka(settings, batch: list[dict]) -> dict[str, int]:
    """Produce ``batch`` keyed by user id with confluent-kafka's default partitioner; returns
    each event's partition as delivered."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": settings.bootstrap})  # partitioner: consistent_random (CRC32)
    delivered: dict[str, int] = {}

    def on_delivery(err, msg) -> None:
        assert err is None, err
        delivered[json.loads(msg.value())["event_id"]] = msg.partition()

    for event in batch:
        producer.produce(
            topic_name(settings, "events"),
            key=event["user_id"].encode(),
            value=json.dumps(event),
            on_delivery=on_delivery,
        )
    assert producer.flush(30) == 0
    return delivered


def repartitioned(workers: list[StreamProcess], expected: int, timeout_s: float = 60.0) -> float:
    deadline = time.monotonic() + timeout_s
    while (total := sum(metric_sum(w.metrics(), "streamrec_events_repartitioned_total") for w in workers)) < expected:
        assert time.monotonic() < deadline, f"{total} of {expected} events sent on to their owner"
        time.sleep(0.2)
    return total


def test_events_placed_by_librdkafka_s_partitioner_reach_their_user_s_owner(settings, tmp_path):
    with_ports = [
        settings.model_copy(update={"metrics_port": free_port(), "data_dir": str(tmp_path / f"worker-{w}")})
        for w in range(2)
    ]
    from serving.sdk import EventProducer

    with EventProducer(settings) as producer:
        publish_catalogue(producer)
    sent: list[dict] = []
    for phase in range(2):
        workers = [StreamProcess(s, tmp_path / f"worker-{w}-{phase}.log").start() for w, s in enumerate(with_ports)]
        try:
            for worker in workers:
                worker.wait_ready(items=12)
            batch = events(phase)
            delivered = send_with_librdkafka(settings, batch)
            elsewhere = sum(
                delivered[e["event_id"]] != owning_partition(e["user_id"], settings.partitions) for e in batch
            )
            assert elsewhere > len(batch) // 4  # CRC32 and murmur2 disagree on many users
            sent += batch
            found = wait_until_applied(settings, {e["event_id"] for e in sent}, worker_log=workers[0].log_path)
            assert repartitioned(workers, elsewhere) == elsewhere  # each sent on once, counted
        finally:
            for worker in workers:
                worker.stop()  # both restart: each then recovers only its own table partitions
    # Each user's state holds all six of their events: none was applied to a state its worker
    # did not own (which a restart would have lost).
    for user in USERS:
        assert sorted(found[user].seen_event_ids) == sorted(e["event_id"] for e in sent if e["user_id"] == user)
