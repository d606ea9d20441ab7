"""The ingest step on its own (a dict as the table): replays change nothing, idle users expire,
forget_user erases, and the size of a user's state."""

from __future__ import annotations

import asyncio
import json

import numpy as np

from model.embedding.item_index import ItemIndex, ItemInfo
from model.user.review import ReviewReader
from model.user.state import UserState
from stream.config import Settings
from stream.worker.ingest import IngestProcessor, SourceRecord


def processor(**overrides) -> tuple[IngestProcessor, dict, list]:
    index = ItemIndex(dim=4)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(20, 4)).astype(np.float32)
    index.upsert(
        [ItemInfo(f"i{n}", f"Item {n}") for n in range(20)], vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    )
    table: dict[bytes, bytes] = {}
    published: list = []

    async def publish(key, value):
        published.append((key, value))

    async def dead_letter(*args):
        published.append(("dlq", args))

    return IngestProcessor(Settings(k=5, **overrides), index, table, publish, dead_letter, "test"), table, published


def records(events: list[dict]) -> list[SourceRecord]:
    return [SourceRecord(json.dumps(e).encode(), "events", 0, n) for n, e in enumerate(events)]


EVENTS = [
    {"event_id": f"e{n}", "user_id": f"u{n % 3}", "item_id": f"i{n % 20}", "type": "click", "ts": 1000 * n}
    for n in range(30)
]


def test_replaying_the_same_events_changes_no_state_and_publishes_nothing():
    proc, table, published = processor()
    asyncio.run(proc.process(records(EVENTS)))
    before, lists = dict(table), len(published)
    asyncio.run(proc.process(records(EVENTS)))  # at-least-once delivery: the same batch again
    asyncio.run(proc.process(records(EVENTS[5:17])))  # and a part of it
    assert table == before
    assert len(published) == lists


def test_idle_users_expire_after_the_ttl_and_a_returning_user_starts_afresh():
    proc, table, _ = processor(user_ttl_s=60.0)
    asyncio.run(proc.process(records(EVENTS)))
    assert len(table) == 3
    t0 = max(proc.last_active.values())
    proc.last_active[b"u0"] = t0 - 120  # u0 has been idle for two minutes
    assert proc.expire_idle(now=t0 + 1) == 1
    assert sorted(table) == [b"u1", b"u2"]
    assert proc.expire_idle(now=t0 + 30) == 0
    asyncio.run(
        proc.process(records([{"event_id": "back", "user_id": "u0", "item_id": "i1", "type": "view", "ts": 99_000}]))
    )
    assert len(UserState.from_bytes(table[b"u0"]).history) == 1
    assert proc.expire_idle(now=t0 + 10_000) == 3  # everyone idle past the TTL


def test_after_a_rebalance_only_owned_users_expire_or_get_their_parked_events():
    proc, table, published = processor(user_ttl_s=60.0)
    asyncio.run(proc.process(records(EVENTS)))  # u0, u1, u2 were this worker's
    standby_copy = UserState.new(4, 3600.0, 50)
    standby_copy.pending.append({"event_id": "p", "user_id": "s", "item_id": "new", "type": "view", "ts": 5})
    table[b"s"] = standby_copy.to_bytes()  # another worker's user, in the table as a standby copy
    parked = UserState.from_bytes(table[b"u1"])
    parked.pending.append({"event_id": "q", "user_id": "u1", "item_id": "new", "type": "view", "ts": 6})
    table[b"u1"] = parked.to_bytes()  # recovered from the changelog with an event parked
    t0 = max(proc.last_active.values())
    proc.own([b"u1", b"u2"], now=t0)  # u0's partition moved away
    assert sorted(proc.last_active) == [b"u1", b"u2"]
    assert proc.expire_idle(now=t0 + 61) == 2  # u0 and the standby copy are not ours to expire
    assert b"u0" in table and b"s" in table

    proc, table, published = processor()  # restarted: the table is recovered, nothing processed yet
    table[b"s"], table[b"u1"] = standby_copy.to_bytes(), parked.to_bytes()
    proc.own([b"u1"])
    proc.index.upsert([ItemInfo("new", "New")], np.eye(4, dtype=np.float32)[:1])
    proc._started, before = True, len(published)
    asyncio.run(proc.on_new_items(["new"]))
    assert [key for key, _ in published[before:]] == [b"u1"]  # the owner's list, not the standby's
    assert UserState.from_bytes(table[b"s"]).pending  # left for its owner


def test_forget_user_erases_the_state_and_publishes_a_tombstone():
    proc, table, published = processor()
    asyncio.run(proc.process(records([*EVENTS, {"event_id": "f", "user_id": "u1", "type": "forget_user", "ts": 1}])))
    assert b"u1" not in table and b"u1" not in proc.last_active
    assert (b"u1", None) in published


def test_bytes_of_state_per_user():
    """Documents the size a user's state takes in the table (see docs/BENCHMARKS.md)."""
    proc, table, _ = processor()
    many = [
        {"event_id": f"{n:032x}", "user_id": "heavy", "item_id": f"i{n % 20}", "type": "view", "ts": n}
        for n in range(400)
    ]  # 32-character event ids, as the SDK makes them
    asyncio.run(proc.process(records(many)))
    heavy = len(table[b"heavy"])
    state = UserState.from_bytes(table[b"heavy"])
    assert len(state.history) == 50 and len(state.seen_event_ids) == 256  # bounded, however active
    assert heavy < 13_000, heavy  # 12.7 KB: the dedupe window's ids take 70 % (docs/BENCHMARKS.md)


def test_a_drift_detection_is_counted_and_signalled_to_the_learner():
    from model.drift import CentroidShift, DriftMonitor
    from stream.metrics import DRIFT_DETECTED

    signals = []

    async def signal(detection):
        signals.append(detection)

    proc, _, _ = processor()
    proc.signal_drift = signal
    proc.drift = DriftMonitor(
        centroid=CentroidShift(fast_half_life=5, slow_half_life=100, threshold=0.1, min_events=20)
    )
    before = DRIFT_DETECTED.labels("centroid_shift")._value.get()
    # Everyone looks at items i0..i4 for a while, then only at i10..i14: tastes moved.
    old = [
        {"event_id": f"o{n}", "user_id": f"u{n % 7}", "item_id": f"i{n % 5}", "type": "view", "ts": n}
        for n in range(60)
    ]
    new = [
        {"event_id": f"n{n}", "user_id": f"u{n % 7}", "item_id": f"i{10 + n % 5}", "type": "view", "ts": 100 + n}
        for n in range(30)
    ]
    asyncio.run(proc.process(records(old)))
    assert signals == []
    asyncio.run(proc.process(records(new)))
    assert [s.detector for s in signals] == ["centroid_shift"]
    assert DRIFT_DETECTED.labels("centroid_shift")._value.get() == before + 1


def test_a_failing_event_goes_to_the_dlq_alone_and_the_rest_of_its_batch_is_served():
    proc, table, published = processor()
    sent = []

    async def publish(key, value):
        if key == b"u1" and value is not None:
            raise RuntimeError("the broker refused this record")
        sent.append(key)

    proc.publish = publish
    asyncio.run(proc.process_isolating_failures(records(EVENTS[:9])))  # users u0, u1, u2
    assert sorted(set(sent)) == [b"u0", b"u2"]
    dlq = [args for key, args in published if key == "dlq"]
    assert len(dlq) == 3 and all(args[1].reason == "processing_error" for args in dlq)  # u1's three events
    assert sorted(table) == [b"u0", b"u2"]
    assert len(UserState.from_bytes(table[b"u0"]).history) == 3


def test_a_review_s_words_move_the_user_s_vector_by_the_stars_they_read_as():
    """A starless review is read: a complaint pushes the user away from the item and from what
    the text is about (here: the vector of i5), praise pulls; a text-blind worker would count
    both as +2. Stars given win over the text; a parked review is read once its item arrives."""
    proc, table, _ = processor()
    about = proc.index.vector_of("i5")
    proc.reviews = ReviewReader(lambda texts: np.repeat(about[None, :], len(texts), axis=0))
    bought = {"user_id": "u", "item_id": "i1", "type": "purchase", "ts": 1000}
    complaint = {"user_id": "u", "item_id": "i1", "type": "review", "ts": 1000, "text": "Terrible, broke at once."}
    asyncio.run(proc.process(records([{**bought, "event_id": "p"}, {**complaint, "event_id": "r"}])))
    state = UserState.from_bytes(table[b"u"])
    w = state.history[-1].weight
    assert w < 0  # read as about 1.6 stars
    e1 = proc.index.vector_of("i1")
    np.testing.assert_allclose(state.preference.vector, 5 * e1 + w * e1 + w * about, rtol=1e-4, atol=1e-5)

    praise = {"user_id": "v", "item_id": "i2", "type": "review", "ts": 1000, "text": "Love it, perfect!", "value": 2}
    late = {"user_id": "v", "item_id": "new", "type": "review", "ts": 2000, "text": "Love it, perfect gift!"}
    asyncio.run(proc.process(records([{**praise, "event_id": "s"}, {**late, "event_id": "l"}])))
    state = UserState.from_bytes(table[b"v"])
    assert state.history[-1].weight == -0.5  # the 2 stars given, not the glowing words
    assert len(state.pending) == 1
    proc.index.upsert([ItemInfo("new", "New")], about[None, :])
    proc._started = True
    asyncio.run(proc.on_new_items(["new"]))
    state = UserState.from_bytes(table[b"v"])
    assert not state.pending and state.history[-1].weight > 2  # read as about 4.7 stars
