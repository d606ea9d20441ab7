"""Wire schemas: what is accepted, and the reason given for what is not."""

import json

import pytest

from stream.schemas import (
    InvalidEvent,
    Recommendation,
    RecommendedItem,
    dead_letter,
    encode_recommendation,
    parse_event,
    parse_item,
)

GOOD = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "type": "click", "ts": 1_700_000_000_000}


def raw(**changes):
    event = {**GOOD, **changes}
    return json.dumps({k: v for k, v in event.items() if v is not None}).encode()


def test_a_valid_event_parses_and_unknown_fields_are_ignored():
    event = parse_event(raw(value=2, future_field="x"))
    assert (event.user_id, event.item_id, event.type, event.value) == ("u1", "i1", "click", 2.0)


def test_forget_user_needs_no_item():
    assert parse_event(raw(type="forget_user", item_id=None)).item_id is None


@pytest.mark.parametrize(
    ("payload", "reason", "says"),
    [
        (b'{"event_id": "e1", "user_', "bad_json", ""),
        (raw(type="teleport"), "invalid_schema", "type"),
        (raw(user_id=None), "invalid_schema", "user_id"),
        (raw(item_id=None), "invalid_schema", "item_id is required"),
        (raw().replace(b'"ts": 1700000000000', b'"ts": 1700000000000, "value": NaN'), "invalid_schema", "NaN"),
        (raw(value=1e300), "invalid_schema", "value"),
        (raw(ts=-5), "invalid_schema", "ts"),
        (b"[1, 2]", "invalid_schema", "JSON object"),
        (b"\xff\xfe\x00garbage", "bad_encoding", "UTF-8"),
        (raw(text="x" * 70_000), "oversize", "limit"),
        (None, "empty", ""),
    ],
)
def test_bad_events_get_a_reason(payload, reason, says):
    with pytest.raises(InvalidEvent) as err:
        parse_event(payload)
    assert err.value.reason == reason
    assert says in str(err.value)


def test_dead_letter_keeps_the_source_and_the_raw_bytes():
    payload = b"\xff not json"
    with pytest.raises(InvalidEvent) as err:
        parse_event(payload)
    record = dead_letter(payload, err.value, "events", 3, 42)
    assert (record.topic, record.partition, record.offset, record.reason) == ("events", 3, 42, "bad_encoding")
    assert record.raw.endswith("not json") and "\\xff" in record.raw


def test_items_default_to_available_and_accept_deletion():
    item = parse_item(b'{"item_id": "i1", "title": "Red shoes", "tags": ["running"]}')
    assert item.available and not item.deleted
    assert parse_item(b'{"item_id": "i1", "title": "x", "deleted": true}').deleted


def test_the_worker_encoding_of_a_list_is_the_contract_s_recommendation():
    items = [("sku-é", -1.25e-07, ['similar to Café "Noir"', "trending now"]), ("sku-2", 3.5, [])]
    raw = encode_recommendation(
        "user ü", items, "hybrid:v1+adapter:a2", "e-9", 1_700_000_000_000, 1_700_000_000_123, 10
    )
    expected = Recommendation(
        user_id="user ü",
        items=[RecommendedItem(item_id=i, score=s, reasons=r) for i, s, r in items],
        model_version="hybrid:v1+adapter:a2",
        trigger_event_id="e-9",
        event_ts=1_700_000_000_000,
        published_ts=1_700_000_000_123,
        k=10,
    )
    assert Recommendation.model_validate_json(raw) == expected
    assert json.loads(raw) == json.loads(expected.model_dump_json())
