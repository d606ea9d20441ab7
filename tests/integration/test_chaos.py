"""Chaos, in the manner of Kafka's streams_eos_test: three workers and the learner on a real broker
while a replay with malformed records and duplicates flows, and six disruptions at random moments:
kill -9 of a worker and its restart, a graceful stop and restart, scale 3 -> 2 -> 3, kill -9 of the
learner and its restart, another kill -9. The verifier then checks:

- events sent = applied + dead-lettered: every good event is in exactly one user's state, once;
- each user's final state equals an uninterrupted single-worker run's (float tolerance);
- each user's last published list was made after their last event;
- the learner's newest snapshot covers every event it should learn.

Sized by STREAMREC_CHAOS_USERS (default 200), STREAMREC_CHAOS_PER_USER (10) and STREAMREC_CHAOS_SEED
(0). ``benchmarks/chaos_loop.py`` runs it many times at the issue's size (20,000 events of 1,000 users).
"""

from __future__ import annotations

import functools
import json
import os
import random
import time

import pytest
from kafka import KafkaConsumer

from model.user.preference import REJECTING_TYPES
from serving.sdk import EventProducer
from stream.broker import free_port
from stream.config import Settings, topic_name
from stream.kafka.topics import create_topics
from stream.learner.adapter_training import EMBEDDINGS_FILE, embeddings_from_bytes
from stream.model_store import ModelStore
from stream.process import StreamProcess
from tests.integration.test_recovery import (
    assert_same_vectors,
    dlq_offsets,
    send,
    settings_for,
    wait_until_applied,
    workload,
)
from tests.integration.test_worker import publish_catalogue

pytestmark = pytest.mark.integration

USERS = int(os.environ.get("STREAMREC_CHAOS_USERS", "200"))
PER_USER = int(os.environ.get("STREAMREC_CHAOS_PER_USER", "10"))
SEED = int(os.environ.get("STREAMREC_CHAOS_SEED", "0"))


def last_lists(settings: Settings) -> dict[str, str]:
    """Each user's last published list's trigger event (the topic's order per user)."""
    consumer = KafkaConsumer(
        topic_name(settings, "recommendations"),
        bootstrap_servers=settings.bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
    )
    last: dict[str, str] = {}
    for message in consumer:
        if message.value is not None:
            last[message.key.decode()] = json.loads(message.value)["trigger_event_id"]
    consumer.close()
    return last


class Cluster:
    """Three workers (static members: a restarted one takes its partitions back at once) and the learner."""

    def __init__(self, settings: Settings, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.settings = [
            settings.model_copy(
                update={
                    "instance_id": f"chaos-worker-{w}",
                    "metrics_port": free_port(),
                    "data_dir": str(tmp_path / f"worker-{w}"),
                }
            )
            for w in range(3)
        ]
        self.learner_settings = settings.model_copy(update={"checkpoint_every_s": 1.0})
        self.workers: list[StreamProcess | None] = [None, None, None]
        self.learner: StreamProcess | None = None
        self.starts = 0
        self.log: list[str] = []

    def start_worker(self, w: int, wait: bool = True) -> None:
        self.starts += 1
        worker = StreamProcess(self.settings[w], self.tmp_path / f"worker-{w}-{self.starts}.log").start()
        self.workers[w] = worker
        if wait:
            worker.wait_ready(items=12)

    def start_learner(self) -> None:
        self.starts += 1
        path = self.tmp_path / f"learner-{self.starts}.log"
        self.learner = StreamProcess(self.learner_settings, path, module="stream.learner").start()

    def disrupt(self, kind: str, rng: random.Random) -> None:
        up = [w for w, p in enumerate(self.workers) if p is not None and p.alive()]
        if kind == "kill a worker":
            w = rng.choice(up)
            self.workers[w].kill()  # type: ignore[union-attr]
            self.start_worker(w)
        elif kind == "stop a worker":
            w = rng.choice(up)
            self.workers[w].stop()  # type: ignore[union-attr]
            self.start_worker(w)
        elif kind == "scale 3 -> 2":
            w = rng.choice(up)
            self.workers[w].stop()  # type: ignore[union-attr]
            self.workers[w] = None
        elif kind == "scale 2 -> 3":
            self.start_worker(self.workers.index(None))
        elif kind == "kill the learner":
            assert self.learner is not None
            self.learner.kill()
            self.start_learner()
        self.log.append(kind)

    def stop(self) -> None:
        for process in [*self.workers, self.learner]:
            if process is not None:
                process.stop()


def adapter_vectors(store: ModelStore):
    """``version -> (item_id -> vector)`` from an adapter version's stored item embeddings: the
    space a worker moves its users into when the learner promotes that adapter mid-run."""

    @functools.cache  # one load per version, not one per user
    def vectors_of_space(version: str):
        return embeddings_from_bytes(store.load(version)[EMBEDDINGS_FILE]).get

    return vectors_of_space


def uninterrupted(broker, tmp_path, good: list[dict]):
    settings = settings_for(broker.bootstrap, tmp_path, "chaos-reference")
    with EventProducer(settings) as producer:
        publish_catalogue(producer)
    worker = StreamProcess(settings, tmp_path / "reference.log").start()
    try:
        worker.wait_ready(items=12)
        send(settings, good, [])
        return wait_until_applied(settings, {e["event_id"] for e in good}, timeout_s=600, worker_log=worker.log_path)
    finally:
        worker.stop()


@pytest.mark.timeout(3000)  # ~4 minutes at the default size; benchmarks/chaos_loop.py runs it at 10x
def test_three_workers_and_the_learner_through_six_disruptions_lose_nothing_and_double_nothing(broker, tmp_path):
    rng = random.Random(SEED)
    good, bad = workload(n_users=USERS, per_user=PER_USER, seed=SEED)
    bad = bad[:10]
    duplicates = rng.sample(good, len(good) // 20)  # redelivered by a producer that retried
    reference = uninterrupted(broker, tmp_path, good)

    settings = Settings(
        bootstrap=broker.bootstrap,
        topic_prefix=f"chaos-{SEED}-{time.time_ns()}.",
        app_id=f"worker-chaos-{SEED}-{time.time_ns()}",
        partitions=6,  # two per worker
        learner_metrics_port=free_port(),
        model_store=str(tmp_path / "models"),
        snapshot_every_s=1.0,
        lag_interval_s=0.5,
    )
    create_topics(settings)
    with EventProducer(settings) as producer:
        publish_catalogue(producer)
    cluster = Cluster(settings, tmp_path)
    try:
        for w in range(3):
            cluster.start_worker(w, wait=False)
        for worker in cluster.workers:
            worker.wait_ready(items=12)  # type: ignore[union-attr]
        cluster.start_learner()
        disruptions = ["kill a worker", "stop a worker", "kill the learner", "kill a worker"]
        rng.shuffle(disruptions)
        at = rng.randrange(len(disruptions) + 1)
        disruptions[at:at] = ["scale 3 -> 2", "scale 2 -> 3"]
        size = -(-len(good) // (len(disruptions) + 1))
        chunks = [good[i : i + size] for i in range(0, len(good), size)]
        for chunk in chunks:  # a retried send: a copy right after the chunk that held the original
            ids = {e["event_id"] for e in chunk}
            chunk += [e for e in duplicates if e["event_id"] in ids]
        for n, chunk in enumerate(chunks):
            send(settings, chunk, bad[n :: len(chunks)])
            if n < len(disruptions):
                time.sleep(rng.uniform(0.0, 3.0))  # a random moment while the chunk is being processed
                cluster.disrupt(disruptions[n], rng)
        assert None not in cluster.workers and len(cluster.log) == 6, cluster.log

        found = wait_until_applied(settings, {e["event_id"] for e in good}, timeout_s=600)
        applied = [e for state in found.values() for e in state.seen_event_ids]
        assert sorted(applied) == sorted(e["event_id"] for e in good), "an event applied twice or to two users"
        assert len(dlq_offsets(settings, len(bad))) == len(bad)  # sent = applied + DLQ
        respaced = assert_same_vectors(reference, found, adapter_vectors(ModelStore(settings.model_store)))
        print(f"chaos verifier: {len(found)} users equal, {respaced} of them in a promoted adapter's space")
        last_event = {e["user_id"]: e["event_id"] for e in sorted(good, key=lambda e: e["ts"])}
        deadline = time.monotonic() + 120
        while (
            stale := {u for u, t in last_lists(settings).items() if t != last_event[u]}
        ) and time.monotonic() < deadline:
            time.sleep(1.0)
        assert not stale, f"{len(stale)} users' last list was made before their last event"
        learned = sum(e["type"] not in REJECTING_TYPES for e in good)
        store, deadline = ModelStore(settings.model_store), time.monotonic() + 120
        while time.monotonic() < deadline:
            globals_ = [v for v in store.versions() if store.manifest(v).kind == "global"]
            if globals_ and store.manifest(globals_[-1]).metrics["events_learned"] == learned:
                break
            time.sleep(1.0)
        else:
            pytest.fail(f"the learner's newest snapshot does not cover the {learned} events it should learn")
    finally:
        cluster.stop()
