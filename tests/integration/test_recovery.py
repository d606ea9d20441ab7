"""Crash recovery: kill -9 a worker in the middle of a replay (and restart the broker from its
data directory): nothing is lost, nothing counted twice, every user's vector as if nothing happened."""

from __future__ import annotations

import copy
import json
import random
import re
import time
import uuid
from collections.abc import Callable

import numpy as np
import pytest

from model.user.state import UserState
from serving.sdk import EventProducer
from stream.broker import EmbeddedBroker, free_port
from stream.config import Settings, topic_name
from stream.kafka.topics import create_topics
from stream.metrics import metric_sum
from stream.process import StreamProcess
from tests.conftest import states
from tests.integration.test_worker import KITCHEN, SHOES, publish_catalogue

pytestmark = pytest.mark.integration

ITEMS = [*SHOES, *KITCHEN]
TYPES = ["view", "click", "add_to_cart", "purchase", "dislike", "rating"]


def workload(n_users: int = 150, per_user: int = 12, seed: int = 7) -> tuple[list[dict], list[bytes]]:
    """Good events (in a shuffled but per-user ordered stream) and malformed records."""
    rng = random.Random(seed)
    queues = [
        [
            {
                "event_id": f"u{u}-{n}",
                "user_id": f"u{u}",
                "item_id": rng.choice(ITEMS),
                "type": (t := rng.choice(TYPES)),
                "ts": 1_700_000_000_000 + 60_000 * n + u,
                **({"value": rng.randint(1, 5)} if t == "rating" else {}),
            }
            for n in range(per_user)
        ]
        for u in range(n_users)
    ]
    good = []
    while any(queues):
        queue = rng.choice([q for q in queues if q])
        good.append(queue.pop(0))
    bad = [f'{{"event_id": "bad{n}", "user_id": "u{n}", "type": "teleport", "ts": 1}}'.encode() for n in range(20)]
    return good, bad


def settings_for(bootstrap: str, tmp_path, name: str) -> Settings:
    name = re.sub(r"[^a-zA-Z0-9]+", "-", name) + "-" + uuid.uuid4().hex[:6]
    s = Settings(
        bootstrap=bootstrap,
        topic_prefix=f"{name}.",
        app_id=f"worker-{name}",
        metrics_port=free_port(),
        data_dir=str(tmp_path / name),
        partitions=2,
        lag_interval_s=0.5,
    )
    create_topics(s)
    return s


def send(settings: Settings, good: list[dict], bad: list[bytes]) -> None:
    with EventProducer(settings) as producer:
        for n, event in enumerate(good):
            producer.send(**event)
            if n % 100 == 50 and bad:
                producer.send_raw(bad.pop(), key=b"bad")
        for raw in bad:
            producer.send_raw(raw, key=b"bad")
        producer.flush()


def log_tail(path, lines: int = 40) -> str:
    """The last ``lines`` of a worker log, without the connection errors of a broker outage."""
    noise = ("Unable connect", "Unable to update metadata", "Failed fetch", "NodeNotReady", "Connect call failed")
    kept = [line for line in path.read_text(errors="replace").splitlines() if not any(n in line for n in noise)]
    return "\n".join(kept[-lines:])


def wait_until_applied(
    settings: Settings, event_ids: set[str], timeout_s: float = 180.0, worker_log=None
) -> dict[str, UserState]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = states(settings)
        applied = {e for state in found.values() for e in state.seen_event_ids}
        if applied >= event_ids:
            return found
        assert time.monotonic() < deadline, (
            f"{len(event_ids - applied)} events never applied: {where(settings, event_ids - applied)}"
            + (f"\nworker log:\n{log_tail(worker_log)}" if worker_log is not None else "")
        )
        time.sleep(1.0)


def where(settings: Settings, event_ids: set[str]) -> dict[str, object]:
    """Where the missing events are in the ``events`` topic (partition, offset), or None if absent."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic_name(settings, "events"),
        bootstrap_servers=settings.bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=2000,
    )
    found: dict[str, object] = dict.fromkeys(sorted(event_ids)[:10])
    for message in consumer:
        try:
            event_id = json.loads(message.value).get("event_id")
        except ValueError:
            continue
        if event_id in found:
            found[event_id] = (message.partition, message.offset)
    consumer.close()
    return found


def dlq_offsets(settings: Settings, n: int) -> set[tuple[int, int]]:
    from tests.conftest import read_topic

    return {
        (d["partition"], d["offset"])
        for d in read_topic(settings, "events.dlq", lambda v: len({(x["partition"], x["offset"]) for x in v}) >= n)
    }


def assert_same_vectors(
    expected: dict[str, UserState], got: dict[str, UserState], vectors_of_space: Callable[[str], Callable] | None = None
) -> int:
    """Each user's state in ``got`` equals ``expected``'s: the same events in the same order and the
    same vector. A state the worker moved into an adapter's space (a promotion mid-run) is compared
    with ``expected`` rebuilt in that space, ``vectors_of_space(version)`` giving its item vectors.
    Returns how many states were compared that way."""
    assert sorted(got) == sorted(expected)
    respaced = 0
    for user, state in expected.items():
        found = got[user]
        assert list(found.history) == list(state.history), user
        if found.space != state.space:
            assert vectors_of_space is not None, f"{user}'s state is in space {found.space!r}, not {state.space!r}"
            state = copy.deepcopy(state)
            state.rebuild(found.space, vectors_of_space(found.space))
            respaced += 1
        np.testing.assert_allclose(found.preference.vector, state.preference.vector, rtol=1e-5, atol=1e-6, err_msg=user)
        assert found.consumed == state.consumed
    return respaced


@pytest.fixture(scope="module")
def uninterrupted(broker, tmp_path_factory) -> dict[str, UserState]:
    """Every user's final state after the same workload on a worker that never stopped."""
    tmp_path = tmp_path_factory.mktemp("uninterrupted")
    good, bad = workload()
    settings = settings_for(broker.bootstrap, tmp_path, "calm")
    with EventProducer(settings) as producer:
        publish_catalogue(producer)
    worker = StreamProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        worker.wait_ready(items=12)
        send(settings, good, list(bad))
        return wait_until_applied(settings, {e["event_id"] for e in good}, worker_log=worker.log_path)
    finally:
        worker.stop()


def test_kill_9_in_the_middle_of_a_replay_loses_nothing_and_double_counts_nothing(broker, tmp_path, uninterrupted):
    good, bad = workload()
    settings = settings_for(broker.bootstrap, tmp_path, "crash")
    # Static group membership: the restarted worker is the killed one coming back, and takes its
    # partitions at once (noida-db never evicts a killed dynamic member; see README).
    settings.instance_id = "crash-worker-0"
    with EventProducer(settings) as producer:
        publish_catalogue(producer)
    first = StreamProcess(settings, tmp_path / "worker-0.log")
    first.start()
    first.wait_ready(items=12)
    send(settings, good, list(bad))
    deadline = time.monotonic() + 120
    while metric_sum(first.metrics(), "streamrec_events_total", outcome="processed") < len(good) // 3:
        assert time.monotonic() < deadline, "the worker processed too little before the crash"
        time.sleep(0.05)
    first.kill()  # SIGKILL: no clean shutdown, no final commit

    second = StreamProcess(settings, tmp_path / "worker-1.log")
    second.start()
    try:
        second.wait_ready(items=12)
        found = wait_until_applied(settings, {e["event_id"] for e in good}, worker_log=second.log_path)
        # sent = processed + DLQ: every good event is in exactly one user's state...
        applied = [e for state in found.values() for e in state.seen_event_ids]
        assert sorted(applied) == sorted(e["event_id"] for e in good)
        # ...every malformed record is in the DLQ (a redelivered one may be there twice, with
        # the same source offset)...
        assert len(dlq_offsets(settings, len(bad))) == len(bad)
        # ...and no event was applied twice: each vector equals that of the uninterrupted run.
        assert_same_vectors(uninterrupted, found)
        assert second.alive()
    finally:
        second.stop()


def test_a_broker_restart_from_its_data_directory_loses_nothing(tmp_path, uninterrupted):
    good, bad = workload()
    port = free_port()
    own = EmbeddedBroker("noida", port=port, data_dir=tmp_path / "broker").start()
    worker = None
    try:
        settings = settings_for(own.bootstrap, tmp_path, "restart")
        settings.instance_id = "restart-worker-0"  # rejoins its group at once after the broker is back
        with EventProducer(settings) as producer:
            publish_catalogue(producer)
        worker = StreamProcess(settings, tmp_path / "worker.log")
        worker.start()
        worker.wait_ready(items=12)
        half = len(good) // 2
        send(settings, good[:half], [])
        wait_until_applied(settings, {e["event_id"] for e in good[:half]}, worker_log=worker.log_path)
        own.stop()
        time.sleep(2.0)
        own = EmbeddedBroker("noida", port=port, data_dir=tmp_path / "broker").start()
        send(settings, good[half:], list(bad))
        found = wait_until_applied(settings, {e["event_id"] for e in good}, worker_log=worker.log_path)
        assert len(dlq_offsets(settings, len(bad))) == len(bad)
        assert_same_vectors(uninterrupted, found)
        assert worker.alive()
    finally:
        if worker is not None:
            worker.stop()
        own.stop()
