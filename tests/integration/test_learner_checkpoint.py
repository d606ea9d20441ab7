"""A learner killed mid-replay resumes from its newest checkpoint: its next snapshot equals an
uninterrupted learner's, without re-reading the events topic from the start."""

from __future__ import annotations

import time

import numpy as np
import pytest

from model.scoring.snapshot import GlobalSnapshot
from model.user.preference import REJECTING_TYPES
from serving.sdk import EventProducer
from stream.broker import free_port
from stream.model_store import ModelStore
from stream.process import StreamProcess
from tests.integration.test_recovery import send, workload
from tests.integration.test_worker import publish_catalogue

pytestmark = pytest.mark.integration


def newest(store: ModelStore, kind: str) -> tuple[int, str | None]:
    """events_learned and version of the newest version of ``kind`` (0, None: none yet)."""
    for version in reversed(store.versions()):
        manifest = store.manifest(version)
        if manifest.kind == kind:
            return int(manifest.metrics["events_learned"]), version
    return 0, None


def wait_for(store: ModelStore, kind: str, events: int, process: StreamProcess, timeout_s: float = 120.0) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        learned, version = newest(store, kind)
        if learned >= events and version is not None:
            return version
        assert process.alive(), f"learner exited; see {process.log_path}"
        assert time.monotonic() < deadline, f"no {kind} with {events} events (newest: {learned}); {process.log_path}"
        time.sleep(0.2)


def by_item(store: ModelStore, version: str) -> tuple[dict[str, float], dict[tuple[str, str], float], dict]:
    """A snapshot's trending counts, CF neighbour scores and re-buying rows, keyed by item id
    (item rows follow the order a learner first saw the items, which the topic's partitions decide)."""
    snapshot = GlobalSnapshot.from_bytes(store.load(version)["global.npz"])
    ids, nb = snapshot.item_ids, snapshot.neighbours
    trending = dict(zip(ids, snapshot.trending.tolist(), strict=True))
    cf = {}
    for a in range(len(ids)):
        span = slice(nb.indptr[a], nb.indptr[a + 1])
        for b, v in zip(nb.indices[span].tolist(), nb.values[span].tolist(), strict=True):
            cf[ids[a], ids[b]] = v
    repurchase = {} if snapshot.repurchase is None else dict(zip(ids, snapshot.repurchase.T.tolist(), strict=True))
    return trending, cf, repurchase


def assert_same(expected: dict, got: dict) -> None:
    assert expected.keys() == got.keys()
    keys = sorted(expected)
    np.testing.assert_allclose([got[k] for k in keys], [expected[k] for k in keys], rtol=1e-5, atol=1e-6)


def test_a_learner_killed_mid_replay_resumes_from_its_checkpoint_and_equals_an_uninterrupted_one(settings, tmp_path):
    good, bad = workload(n_users=150, per_user=12)
    half = len(good) // 2
    learned_first = sum(e["type"] not in REJECTING_TYPES for e in good[:half])  # turn-downs teach CF nothing
    learned_all = sum(e["type"] not in REJECTING_TYPES for e in good)
    resumed = settings.model_copy(update={"model_store": str(tmp_path / "resumed"), "checkpoint_every_s": 0.5})
    straight = settings.model_copy(
        update={
            "model_store": str(tmp_path / "straight"),
            "checkpoint_every_s": 0.0,
            "learner_metrics_port": free_port(),
        }
    )
    resumed_store, straight_store = ModelStore(resumed.model_store), ModelStore(straight.model_store)

    with EventProducer(settings) as producer:
        publish_catalogue(producer)
    send(settings, good[:half], bad[:10])
    first = StreamProcess(resumed, tmp_path / "learner-0.log", module="stream.learner").start()
    try:
        wait_for(resumed_store, "checkpoint", learned_first, first)
    finally:
        first.kill()  # kill -9: no clean shutdown
    send(settings, good[half:], bad[10:])

    restarted_at = time.monotonic()
    second = StreamProcess(resumed, tmp_path / "learner-1.log", module="stream.learner").start()
    straight_learner = StreamProcess(straight, tmp_path / "straight.log", module="stream.learner").start()
    try:
        got = wait_for(resumed_store, "global", learned_all, second)
        restart_to_snapshot_s = time.monotonic() - restarted_at
        expected = wait_for(straight_store, "global", learned_all, straight_learner)
    finally:
        second.stop()
        straight_learner.stop()
    assert "resuming from checkpoint" in second.log_path.read_text()
    assert newest(resumed_store, "global")[0] == learned_all  # every event learned once: none lost, none twice
    for want, have in zip(by_item(straight_store, expected), by_item(resumed_store, got), strict=True):
        assert_same(want, have)
    print(f"restart -> snapshot with every event: {restart_to_snapshot_s:.1f} s")
