"""Hostile input at a running worker (property-based): malformed, oversize, wrong-type, non-UTF-8
and extreme-value records never stop it, each one lands in ``events.dlq`` with a reason and its
source offset, the good events around them are served, and no user id reaches the worker's log.

Every bad record is bad by construction (no oracle): it is a valid event broken in one way.
Good records are valid events at the edges of the schema (ids of 256 characters, ``ts`` 0 and
10^14, ``value`` +-1e9, 10,000-character texts, exactly ``max_event_bytes`` bytes, unicode ids).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from serving.sdk import EventProducer
from stream.config import Settings, topic_name
from stream.schemas import EVENT_TYPES, InvalidEvent, parse_event
from tests.conftest import read_topic
from tests.integration.test_worker import KITCHEN, SHOES, publish_catalogue

pytestmark = pytest.mark.integration

ITEMS = sorted([*SHOES, *KITCHEN])
GOOD_TYPES = [t for t in EVENT_TYPES if t != "forget_user"]  # forget_user answers with a tombstone
REQUIRED = ["event_id", "user_id", "item_id", "type", "ts"]
MAX_ID, MAX_TEXT, MAX_TS, MAX_VALUE = 256, 10_000, 10**14, 1e9  # the bounds of stream.schemas.Event
DLQ_RAW_BYTES = 100_000  # how much of a rejected record its dead letter keeps
#: In every user id of this test, and nowhere else: the worker's log must never contain it.
USER_MARK = "hostileuser" + uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class Record:
    """One record to send: ``kind`` is "good" or what is wrong with it."""

    kind: str
    key: bytes | None
    payload: bytes | None
    event: dict | None = None  # good records: the event

    def __repr__(self) -> str:
        size = -1 if self.payload is None else len(self.payload)
        return f"Record({self.kind}, {size} bytes, {None if self.payload is None else self.payload[:100]!r})"

    def _repr_pretty_(self, printer, cycle) -> None:  # how hypothesis shows a failing example
        printer.text(repr(self))


def dumps(event: dict, ascii_only: bool = False) -> bytes:
    return json.dumps(event, ensure_ascii=ascii_only).encode()


def with_field(event: dict, field: str, literal: str) -> bytes:
    """``event`` with ``field`` set to a raw JSON literal (which json.dumps cannot write)."""
    rest = dumps({k: v for k, v in event.items() if k != field})
    return rest[:-1] + f', "{field}": {literal}}}'.encode()


# -- good events at the edges of the schema ------------------------------------------------
# Good events are valid UTF-8: lone surrogates cannot be encoded (non-UTF-8 bytes are a breaker below).
CHARACTER = st.characters(codec="utf-8")
TS = st.one_of(st.integers(0, MAX_TS), st.sampled_from([0, 1, MAX_TS]))
VALUE = st.one_of(
    st.floats(-MAX_VALUE, MAX_VALUE),
    st.integers(-(10**9), 10**9),
    st.sampled_from([-MAX_VALUE, MAX_VALUE, 0.0, -0.0, 2.5, 5e-324]),
)
TEXT = st.one_of(st.text(max_size=30), CHARACTER.map(lambda c: c * MAX_TEXT))
JSON_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=10)
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
NOT_A_STRING = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
)


def user_id(draw, prefix: str) -> str:
    user = prefix + draw(st.text(max_size=12))
    if draw(st.booleans()):  # the longest id there may be
        user += draw(CHARACTER) * (MAX_ID - len(user))
    return user


def good_event(draw, user: str, event_id: str, long_text: bool = True) -> dict:
    event = {
        "event_id": event_id,
        "user_id": user,
        "item_id": draw(st.sampled_from(ITEMS)),
        "type": draw(st.sampled_from(GOOD_TYPES)),
        "ts": draw(TS),
    }
    if draw(st.booleans()):
        event["value"] = draw(VALUE)
    if draw(st.booleans()):
        event["text"] = draw(TEXT if long_text else st.text(max_size=30))
    if draw(st.booleans()):
        event["session_id"] = draw(st.one_of(st.text(max_size=20), CHARACTER.map(lambda c: c * MAX_ID)))
    if draw(st.booleans()):
        event["a field of a later schema"] = draw(JSON_VALUE)  # unknown fields are ignored
    return event


def good_record(draw, user: str, event_id: str, max_bytes: int) -> Record:
    event = good_event(draw, user, event_id)
    payload = dumps(event)
    if draw(st.booleans()) and len(payload) + 20 <= max_bytes:  # exactly as large as allowed
        event["pad"] = ""
        event["pad"] = "x" * (max_bytes - len(dumps(event)))
        payload = dumps(event)
        assert len(payload) == max_bytes
    return Record("good", user.encode(), payload, event)


# -- bad records: a valid event broken in one way, and the reasons they may be given --------
def truncated_json(draw, event, max_bytes):  # cut between two characters: still UTF-8
    text = json.dumps(event, ensure_ascii=False)
    return text[: draw(st.integers(0, len(text) - 1))].encode()


def not_an_object(draw, event, max_bytes):
    value = draw(
        st.one_of(st.just([event]), st.just(json.dumps(event)), JSON_VALUE.filter(lambda v: not isinstance(v, dict)))
    )
    return dumps(value)


def missing_field(draw, event, max_bytes):
    drop = draw(st.sets(st.sampled_from(REQUIRED), min_size=1))
    return dumps({k: v for k, v in event.items() if k not in drop})


def wrong_type(draw, event, max_bytes):
    not_a_number = st.one_of(
        st.text(max_size=10).map(lambda s: "x" + s),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    )
    wrong = {
        "event_id": NOT_A_STRING | st.none(),
        "user_id": NOT_A_STRING | st.none(),
        "item_id": NOT_A_STRING | st.none(),
        "type": NOT_A_STRING | st.none(),
        "text": NOT_A_STRING,
        "session_id": NOT_A_STRING,
        "ts": not_a_number | st.none() | st.floats(0, 1e13).filter(lambda f: not f.is_integer()),
        "value": not_a_number,
    }
    field = draw(st.sampled_from(sorted(wrong)))
    return dumps({**event, field: draw(wrong[field])})


def lone_surrogate(draw, event, max_bytes):  # valid JSON escape, but no Unicode character
    field = draw(st.sampled_from(["event_id", "user_id", "item_id", "text", "session_id"]))
    return dumps({**event, field: str(event.get(field, "")) + "\ud800"}, ascii_only=True)


def unknown_type(draw, event, max_bytes):
    kind = draw(
        st.one_of(
            st.text(max_size=15),
            st.sampled_from(EVENT_TYPES).map(str.upper),
            st.sampled_from(EVENT_TYPES).map(lambda t: t + " "),
        ).filter(lambda t: t not in EVENT_TYPES)
    )
    return dumps({**event, "type": kind})


def non_finite(draw, event, max_bytes):
    field = draw(st.sampled_from(["ts", "value", "a field of a later schema"]))
    literals = ["NaN", "Infinity", "-Infinity"] + (["1e309", "-1e309"] if field in ("ts", "value") else [])
    return with_field(event, field, draw(st.sampled_from(literals)))


def out_of_range(draw, event, max_bytes):
    too_long = st.integers(MAX_ID + 1, MAX_ID + 50)
    field, value = draw(
        st.one_of(
            st.tuples(
                st.just("ts"),
                st.integers(max_value=-1)
                | st.integers(min_value=MAX_TS + 1)
                | st.sampled_from([2**63, 2**64, 2**200, -(2**64)]),
            ),
            st.tuples(
                st.just("value"),
                st.floats(min_value=MAX_VALUE, exclude_min=True, allow_infinity=False)
                | st.floats(max_value=-MAX_VALUE, exclude_max=True, allow_infinity=False)
                | st.sampled_from([10**9 + 1, 2**64, -(2**70)]),
            ),
            st.tuples(st.sampled_from(["event_id", "item_id", "type"]), st.just("")),
            st.tuples(st.just("user_id"), st.just("") | too_long.map(lambda n: event["user_id"].ljust(n, "u"))),
            st.tuples(st.just("event_id"), too_long.map(lambda n: "e" * n)),
            st.tuples(st.just("session_id"), too_long.map(lambda n: "s" * n)),
            st.tuples(st.just("text"), st.integers(MAX_TEXT + 1, MAX_TEXT + 100).map(lambda n: "t" * n)),
        )
    )
    return dumps({**event, field: value})


def huge_number(draw, event, max_bytes):  # more digits than Python's int() takes (4300)
    digits = draw(st.integers(4_301, max_bytes // 2))
    return with_field(event, draw(st.sampled_from(["ts", "value"])), "9" * digits)


def oversize(draw, event, max_bytes):
    how = draw(st.sampled_from(["padded", "repeated", "escaped"]))
    if how == "padded":  # a valid event, a few bytes too large
        event = {**event, "pad": ""}
        return dumps({**event, "pad": "x" * (max_bytes - len(dumps(event)) + draw(st.integers(1, 2_000)))})
    if how == "repeated":  # any bytes at all, up to past what the dead letter keeps
        pattern = draw(st.binary(min_size=1, max_size=16))
        size = draw(st.integers(max_bytes + 1, DLQ_RAW_BYTES + 50_000))
        return (pattern * (size // len(pattern) + 1))[:size]
    # within the schema's 10,000 characters, but \\u-escaped astral characters take 12 bytes each
    return dumps({**event, "text": "\U0001f600" * MAX_TEXT}, ascii_only=True)


def invalid_utf8(draw, event, max_bytes):
    payload = dumps(event)
    if draw(st.booleans()):
        return payload.decode().encode("utf-16")  # starts with the BOM ff fe
    never_in_utf8 = draw(st.sampled_from([b"\xff", b"\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]))
    at = draw(st.integers(0, len(payload)))
    return payload[:at] + never_in_utf8 + payload[at:]


def blank(draw, event, max_bytes):
    return draw(st.sampled_from([b"", b" ", b"\n\t", b"\x00"]))


def null_value(draw, event, max_bytes):  # a record without a value (a tombstone on events)
    return None


def deep_nesting(draw, event, max_bytes):
    depth = draw(st.integers(1_000, max_bytes // 8))
    opener, leaf, closer = draw(st.sampled_from([("[", "", "]"), ('{"a":', "1", "}")]))
    nested = opener * depth + leaf + closer * depth
    if draw(st.booleans()):
        return nested.encode()
    return with_field(event, draw(st.sampled_from(REQUIRED)), nested)


def byte_order_mark(draw, event, max_bytes):  # RFC 8259: networked JSON must not start with one
    return b"\xef\xbb\xbf" + dumps(event)


BAD = {  # how to break a valid event -> the reasons its dead letter may give
    truncated_json: {"bad_json"},
    not_an_object: {"invalid_schema"},
    missing_field: {"invalid_schema"},
    wrong_type: {"invalid_schema"},
    lone_surrogate: {"invalid_schema"},
    unknown_type: {"invalid_schema"},
    non_finite: {"invalid_schema"},
    out_of_range: {"invalid_schema"},
    huge_number: {"bad_json", "invalid_schema"},
    oversize: {"oversize"},
    invalid_utf8: {"bad_encoding"},
    blank: {"bad_json"},
    null_value: {"empty"},
    deep_nesting: {"bad_json", "invalid_schema"},
    byte_order_mark: {"bad_json"},
}
REASONS = {breaker.__name__: reasons for breaker, reasons in BAD.items()}


@st.composite
def batches(draw, max_bytes: int) -> list[Record]:
    """20-60 records: a few users' good events, and bad records of every kind in between, in one
    random order."""
    run = uuid.uuid4().hex[:8]  # fresh ids each time, also when hypothesis replays an example
    users = [user_id(draw, f"{USER_MARK}-{run}-{n}-") for n in range(draw(st.integers(3, 8)))]
    records = [
        good_record(draw, user, f"{run}-e{n}.{m}-" + draw(st.text(max_size=8)), max_bytes)
        for n, user in enumerate(users)
        for m in range(draw(st.integers(1, 3)))
    ]
    extra = draw(st.integers(max(0, 20 - len(BAD) - len(records)), 60 - len(BAD) - len(records)))
    breakers = list(BAD) + draw(st.lists(st.sampled_from(list(BAD)), min_size=extra, max_size=extra))
    for n, breaker in enumerate(breakers):  # each way of breaking an event at least once
        template = good_event(draw, draw(st.sampled_from(users)), f"{run}-bad{n}", long_text=False)
        payload = breaker(draw, template, max_bytes)
        keys = [u.encode() for u in users] + [b"\xff\xfe not a user"] + ([None] if payload is not None else [])
        records.append(Record(breaker.__name__, draw(st.sampled_from(keys)), payload))
    return draw(st.permutations(records))


# -- reading what the broker holds ---------------------------------------------------------
def end_offsets(settings: Settings, name: str) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    topic = topic_name(settings, name)
    consumer = KafkaConsumer(**settings.kafka_python_config())
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def read_since(settings: Settings, name: str, since: dict[int, int], until, timeout_s: float = 60.0) -> list:
    """Records (kafka-python ConsumerRecords) of a topic from offsets ``since`` until ``until(records)``."""
    from kafka import KafkaConsumer, TopicPartition

    topic = topic_name(settings, name)
    consumer = KafkaConsumer(**settings.kafka_python_config(), group_id=None, enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in since]
    consumer.assign(partitions)
    for tp in partitions:
        consumer.seek(tp, since[tp.partition])
    records: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while not until(records):
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}: condition not met after {timeout_s}s; got {len(records)} records")
            for messages in consumer.poll(timeout_ms=200).values():
                records.extend(messages)
        return records
    finally:
        consumer.close()


def expected_raw(payload: bytes | None) -> str:
    """What a dead letter carries of a payload: its text, undecodable bytes escaped as \\xNN,
    cut after DLQ_RAW_BYTES bytes."""
    return "" if payload is None else payload[:DLQ_RAW_BYTES].decode("utf-8", errors="backslashreplace")


def send_and_check(settings: Settings, producer: EventProducer, worker, records: list[Record]) -> None:
    events_since, dlq_since = end_offsets(settings, "events"), end_offsets(settings, "events.dlq")
    for record in records:
        producer.send_raw(record.payload, key=record.key)
    producer.flush()

    # Where each record landed: good payloads are unique; equal bad ones are interchangeable.
    unplaced: dict[bytes | None, list[Record]] = defaultdict(list)
    for record in records:
        unplaced[record.payload].append(record)
    placed = read_since(settings, "events", events_since, lambda got: len(got) >= len(records))
    at: dict[tuple[int, int], Record] = {}
    for message in placed:
        assert unplaced[message.value], f"the broker holds a record that was not sent: {message.value[:100]!r}"
        at[(message.partition, message.offset)] = unplaced[message.value].pop()
    bad_at = {where: record for where, record in at.items() if record.kind != "good"}

    # Every bad record is in the DLQ with a reason, its source and its raw bytes.
    def all_dead_lettered(got) -> bool:
        return set(bad_at) <= {(letter["partition"], letter["offset"]) for letter in map(decoded, got)}

    letters = [decoded(m) for m in read_since(settings, "events.dlq", dlq_since, all_dead_lettered)]
    events_topic = topic_name(settings, "events")
    for letter in letters:
        where = (letter["partition"], letter["offset"])
        assert where in bad_at, f"a good event went to the DLQ: {at.get(where)!r} -> {letter['error']}"
        record = bad_at[where]
        assert letter["reason"] in REASONS[record.kind], (record, letter["reason"], letter["error"])
        assert letter["error"] and letter["topic"] == events_topic and letter["ts"] > 0, letter
        assert letter["raw"] == expected_raw(record.payload), record

    # The good events around them are served: each user's list names their last good event.
    last: dict[str, str] = {}
    for record in records:
        if record.kind == "good":
            last[record.event["user_id"]] = record.event["event_id"]
    wanted = set(last.values())
    recs = read_topic(
        settings, "recommendations", lambda got: wanted <= {r["trigger_event_id"] for r in got if r is not None}
    )
    for user, event_id in last.items():
        served = [r for r in recs if r is not None and r["user_id"] == user and r["trigger_event_id"] == event_id]
        assert served, f"no list for {user!r} after {event_id!r}"
        items = served[-1]["items"]
        assert items and all(
            i["item_id"] in ITEMS and isinstance(i["score"], (int, float)) and math.isfinite(i["score"]) for i in items
        ), served[-1]
    assert worker.alive(), f"the worker died; see {worker.log_path}"


def decoded(message) -> dict:
    return json.loads(message.value)


def test_hostile_records_go_to_the_dlq_and_the_good_events_around_them_are_served(settings, start_worker):
    settings.log_level = "info"  # user ids must not appear even at INFO
    with EventProducer(settings) as producer:
        publish_catalogue(producer)
        worker = start_worker(items=len(ITEMS))

        # One worker for all examples (starting one takes seconds); each example has its own ids.
        # No shrinking: an example takes seconds, and a failure names the records at fault.
        @hypothesis_settings(
            max_examples=10,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(records=batches(settings.max_event_bytes))
        def hostile_batch(records: list[Record]) -> None:
            send_and_check(settings, producer, worker, records)

        hostile_batch()
        assert worker.alive()
    # User ids never appear in logs (the mark is in every user id of this test, raw or escaped).
    log = worker.log_path.read_text(errors="replace")
    assert USER_MARK not in log, [line for line in log.splitlines() if USER_MARK in line][:5]


@pytest.mark.parametrize(("field", "wrong"), [("ts", "1700000000000"), ("ts", True), ("value", "4"), ("value", False)])
def test_numbers_sent_as_strings_or_booleans_are_refused(field, wrong):
    event = {
        "event_id": "e1",
        "user_id": "u1",
        "item_id": "s1",
        "type": "rating",
        "ts": 1_700_000_000_000,
        field: wrong,
    }
    with pytest.raises(InvalidEvent):
        parse_event(dumps(event))
