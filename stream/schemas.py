"""Wire schemas (JSON, UTF-8) of the topics: ``events``, ``items``, ``recommendations`` and
``events.dlq`` (docs/ARCHITECTURE.md). Unknown fields are ignored."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from model.embedding.item_text import render_item_text

SCHEMA_VERSION = 1

EventType = Literal[
    "view", "click", "add_to_cart", "remove_from_cart", "purchase", "rating", "review", "dislike", "forget_user"
]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]

Id = Field(min_length=1, max_length=256)


def now_ms() -> int:
    return int(time.time() * 1000)


class Event(BaseModel):
    """A user's action on an item; ``forget_user`` needs no item."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: str = Id
    user_id: str = Id
    item_id: str | None = Field(None, min_length=1, max_length=256)
    type: EventType
    ts: int = Field(ge=0, le=10**14, strict=True, description="event time, ms since epoch")
    value: float | None = Field(None, allow_inf_nan=False, ge=-1e9, le=1e9, strict=True)
    text: str | None = Field(None, max_length=10_000)
    session_id: str | None = Field(None, max_length=256)

    @model_validator(mode="after")
    def _item_needed(self) -> Event:
        if self.type != "forget_user" and self.item_id is None:
            raise ValueError(f"item_id is required for type {self.type!r}")
        return self


class Item(BaseModel):
    """A catalogue entry (``items`` topic, compacted, key = item_id)."""

    model_config = ConfigDict(extra="ignore")

    item_id: str = Id
    title: str = Field(min_length=1, max_length=1000)
    description: str | None = Field(None, max_length=20_000)
    category: str | None = Field(None, max_length=256)
    price: float | None = Field(None, allow_inf_nan=False, ge=0)
    tags: list[str] = Field(default_factory=list, max_length=100)
    available: bool = True
    deleted: bool = False

    @property
    def text(self) -> str:
        """What the encoder embeds: "title. category. description. tags"."""
        return render_item_text(self.title, self.category, self.description, self.tags)


@dataclass(frozen=True)
class ItemChange:
    """What one ``items`` record says of ``item_id``: its new version, or None when it is
    removed (a tombstone, or ``"deleted": true``)."""

    item_id: str
    item: Item | None


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    reasons: list[str] = Field(default_factory=list)


class Recommendation(BaseModel):
    """A refreshed top-K list (``recommendations`` topic, compacted, key = user_id)."""

    model_config = ConfigDict(extra="ignore")

    user_id: str
    items: list[RecommendedItem]
    model_version: str
    trigger_event_id: str
    event_ts: int
    published_ts: int
    k: int


def encode_recommendation(
    user_id: str,
    items: list[tuple[str, float, list[str]]],
    model_version: str,
    trigger_event_id: str,
    event_ts: int,
    published_ts: int,
    k: int,
) -> bytes:
    """The bytes of ``Recommendation(...).model_dump_json()`` from values the worker made itself
    ((item_id, score, reasons) per item), without a model's validation: the worker's hot path.

    >>> raw = encode_recommendation("u1", [("i1", 0.5, ["trending now"])], "content:m", "e1", 1, 2, 10)
    >>> Recommendation.model_validate_json(raw).items[0].reasons
    ['trending now']
    """
    return json.dumps(
        {
            "user_id": user_id,
            "items": [{"item_id": i, "score": score, "reasons": reasons} for i, score, reasons in items],
            "model_version": model_version,
            "trigger_event_id": trigger_event_id,
            "event_ts": event_ts,
            "published_ts": published_ts,
            "k": k,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


class DeadLetter(BaseModel):
    """A record that could not be processed (``events.dlq``), with why and where it came from."""

    error: str
    reason: str
    raw: str
    topic: str
    partition: int
    offset: int
    ts: int


class InvalidEvent(ValueError):
    """A record that fails validation; ``reason`` is a short, bounded label, ``detail`` says more."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _decode_json(raw: bytes | None, max_bytes: int) -> object:
    if raw is None:
        raise InvalidEvent("empty", "record has no value")
    if len(raw) > max_bytes:
        raise InvalidEvent("oversize", f"{len(raw)} bytes > limit {max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent("bad_encoding", f"not UTF-8: {exc}") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except InvalidEvent:
        raise
    except (ValueError, RecursionError) as exc:  # ValueError: also integers of > 4,300 digits
        raise InvalidEvent("bad_json", str(exc)[:300]) from None


def _reject_constant(name: str) -> float:
    raise InvalidEvent("invalid_schema", f"non-finite number {name} is not allowed")


def _validate(model: type[BaseModel], raw: bytes | None, max_bytes: int):
    data = _decode_json(raw, max_bytes)
    if not isinstance(data, dict):
        raise InvalidEvent("invalid_schema", f"expected a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        raise InvalidEvent("invalid_schema", f"{where}: {first['msg']}") from None


def parse_event(raw: bytes | None, max_bytes: int = 64 * 1024) -> Event:
    """Validate one ``events`` record; raise :class:`InvalidEvent` with a reason on any defect."""
    return _validate(Event, raw, max_bytes)


def parse_item(raw: bytes, max_bytes: int = 256 * 1024) -> Item:
    """Validate one ``items`` record; raise :class:`InvalidEvent` with a reason on any defect."""
    return _validate(Item, raw, max_bytes)


def parse_json_object(raw: bytes | None) -> dict | None:
    """A record's JSON object (a model announcement, a drift signal), or None: a tombstone, or
    not a JSON object.

    >>> parse_json_object(b'{"version": "v1", "kind": "adapter"}'), parse_json_object(b"[1]")
    ({'version': 'v1', 'kind': 'adapter'}, None)
    """
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def read_item_record(key: bytes | None, value: bytes | None, max_bytes: int = 256 * 1024) -> ItemChange | None:
    """The one reader of ``items`` records (worker, learner, API). None for a tombstone without
    a key; raises :class:`InvalidEvent` for a malformed record.

    >>> read_item_record(b"sku-1", None), read_item_record(b"sku-2", b'{"item_id": "sku-2", "deleted": true, "title": "x"}')
    (ItemChange(item_id='sku-1', item=None), ItemChange(item_id='sku-2', item=None))
    >>> read_item_record(None, b'{"item_id": "sku-3", "title": "Red shoes"}').item.text
    'Red shoes'
    """
    if value is None:
        return None if key is None else ItemChange(key.decode("utf-8", errors="replace"), None)
    item = parse_item(value, max_bytes)
    return ItemChange(item.item_id, None if item.deleted else item)


def dead_letter(raw: bytes | None, error: InvalidEvent, topic: str, partition: int, offset: int) -> DeadLetter:
    text = "" if raw is None else raw[:100_000].decode("utf-8", errors="backslashreplace")
    return DeadLetter(
        error=str(error), reason=error.reason, raw=text, topic=topic, partition=partition, offset=offset, ts=now_ms()
    )
