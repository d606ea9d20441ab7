"""The user-state store: a warm standby copy survives recoveries and resumes from its offset,
and the worker sees only the users of the partitions it owns."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from faust.types import TP

from stream.worker.ingest import owning_partition
from stream.worker.user_store import WarmMemoryStore

CHANGELOG = "streamrec-user-state-changelog"
PARTITIONS = 4


def store() -> WarmMemoryStore:
    table = SimpleNamespace(name="user-state", partitions=PARTITIONS)
    return WarmMemoryStore("streamrec-memory://", app=None, table=table)


def user_on(partition: int, n: int = 0) -> bytes:
    """The n-th user key that murmur2 puts on ``partition``."""
    keys = (f"u{i}".encode() for i in range(10_000))
    return [k for k in keys if owning_partition(k, PARTITIONS) == partition][n]


def changelog_record(key: bytes, value: bytes | None, partition: int, offset: int):
    message = SimpleNamespace(tp=TP(CHANGELOG, partition), partition=partition, offset=offset, value=value)
    return SimpleNamespace(key=key, value=value, message=message)


def replay(s: WarmMemoryStore, *records) -> None:
    s.apply_changelog_batch(records, to_key=lambda k: k, to_value=lambda v: v)


def recovered(s: WarmMemoryStore, active: set[int], standby: set[int]) -> None:
    tps = lambda ps: {TP(CHANGELOG, p) for p in ps}  # noqa: E731
    asyncio.run(s.on_recovery_completed(tps(active), tps(standby)))


def test_a_standby_copy_survives_recovery_and_resumes_from_its_last_offset():
    s = store()
    mine, backed_up = user_on(0), user_on(1)
    replay(s, changelog_record(mine, b"a", 0, 10), changelog_record(backed_up, b"b1", 1, 20))
    replay(s, changelog_record(backed_up, b"b2", 1, 21))
    recovered(s, active={0}, standby={1})
    assert s[backed_up] == b"b2"  # faust's memory store dropped every key but the active ones here
    assert s.persisted_offset(TP(CHANGELOG, 1)) == 21  # taken over, partition 1 replays from 21 on
    assert sorted(s.owned_keys()) == [mine]  # the standby copy is not this worker's to serve


def test_partitions_neither_owned_nor_backed_up_are_dropped_with_their_offsets():
    s = store()
    gone = user_on(2)
    replay(s, changelog_record(gone, b"x", 2, 5), changelog_record(user_on(0), b"a", 0, 1))
    recovered(s, active={0}, standby=set())
    assert gone not in s
    assert s.persisted_offset(TP(CHANGELOG, 2)) is None  # if it comes back: replayed from the start


def test_users_written_here_follow_their_partition_through_a_rebalance():
    s = store()
    recovered(s, active={0, 3}, standby=set())
    kept, moved = user_on(0), user_on(3)
    replay(s, changelog_record(user_on(3, 1), b"r", 3, 6))  # recovered with partition 3
    s[kept], s[moved] = b"k", b"m"  # written by this worker while it owned both partitions
    s.set_persisted_offset(TP(CHANGELOG, 3), 7)  # the table's callback once the write is in the log
    assert sorted(s.owned_keys()) == sorted([kept, moved, user_on(3, 1)])
    recovered(s, active={0}, standby={3})  # partition 3 moved to another worker; we back it up
    assert sorted(s.owned_keys()) == [kept]
    assert s[moved] == b"m" and s.persisted_offset(TP(CHANGELOG, 3)) == 7  # our write: not replayed
    recovered(s, active={0}, standby=set())
    assert moved not in s


def test_a_tombstone_removes_the_user():
    s = store()
    user = user_on(1)
    replay(s, changelog_record(user, b"a", 1, 1), changelog_record(user, None, 1, 2))
    recovered(s, active={1}, standby=set())
    assert user not in s and list(s.owned_keys()) == []
    assert s.persisted_offset(TP(CHANGELOG, 1)) == 2
