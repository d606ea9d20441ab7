"""Fixtures: a real Kafka-protocol broker (noida-db) on a free loopback port, and workers."""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest

from model.user.state import UserState
from stream.broker import EmbeddedBroker, free_port
from stream.config import Settings, topic_name
from stream.kafka.follow import consumer_from_start
from stream.kafka.topics import create_topics
from stream.process import StreamProcess


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    embedded = EmbeddedBroker("noida", data_dir=tmp_path_factory.mktemp("broker")).start()
    yield embedded
    embedded.stop()


@pytest.fixture
def settings(broker, request, tmp_path) -> Settings:
    """Settings with topics and a consumer group of this test's own."""
    name = re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name)[:40] + "-" + uuid.uuid4().hex[:6]
    s = Settings(
        bootstrap=broker.bootstrap,
        topic_prefix=f"{name}.",
        app_id=f"worker-{name}",
        metrics_port=free_port(),
        learner_metrics_port=free_port(),
        data_dir=str(tmp_path / "worker"),
        partitions=2,
        model_store=str(tmp_path / "models"),
        snapshot_every_events=8,
        snapshot_every_s=1.0,
        lag_interval_s=0.5,
    )
    create_topics(s)
    return s


@pytest.fixture
def start_worker(settings, tmp_path):
    workers: list[StreamProcess] = []

    def start(items: int) -> StreamProcess:
        worker = StreamProcess(settings, tmp_path / f"worker-{len(workers)}.log")
        worker.start()
        workers.append(worker)
        worker.wait_ready(items)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def start_learner(settings, tmp_path):
    learners: list[StreamProcess] = []

    def start() -> StreamProcess:
        learner = StreamProcess(settings, tmp_path / f"learner-{len(learners)}.log", module="stream.learner")
        learner.start()
        learners.append(learner)
        return learner

    yield start
    for learner in learners:
        learner.stop()


def read_topic(settings: Settings, name: str, until, timeout_s: float = 60.0) -> list:
    """Decoded JSON values of a topic, read from the start until ``until(values)`` holds."""
    consumer = consumer_from_start(settings, [topic_name(settings, name)])
    values: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=0)
            for messages in batch.values():
                values.extend(None if m.value is None else json.loads(m.value) for m in messages)
            if until(values):
                return values
            if not batch:
                time.sleep(0.05)
    finally:
        consumer.close()
    raise AssertionError(f"{name}: condition not met after {timeout_s}s; got {len(values)} records: {values[-3:]}")


def states(settings: Settings) -> dict[str, UserState]:
    """Each user's latest state from the table's changelog topic."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        f"{settings.app_id}-user-state-changelog",
        bootstrap_servers=settings.bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=2000,
    )
    latest: dict[str, bytes | None] = {}
    for message in consumer:
        latest[message.key.decode()] = message.value
    consumer.close()
    return {user: UserState.from_bytes(raw) for user, raw in latest.items() if raw is not None}
