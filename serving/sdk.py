"""Client SDK over kafka-python: send events and items, read recommendation lists."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

from stream.config import Settings, topic_name
from stream.schemas import Event, Item, Recommendation, now_ms


class EventProducer:
    """Validate events and send them to ``events`` keyed by user_id, batched by the client.

    Example::

        with EventProducer(Settings(bootstrap="127.0.0.1:9092")) as producer:
            producer.send(user_id="u1", item_id="sku-42", type="click")
            producer.send_item(Item(item_id="sku-42", title="Red running shoes", category="shoes"))
    """

    def __init__(self, settings: Settings | None = None, linger_ms: int = 5, **kafka_config) -> None:
        from kafka import KafkaProducer

        self.settings = settings or Settings()
        self.events_topic = topic_name(self.settings, "events")
        self.items_topic = topic_name(self.settings, "items")
        self._producer = KafkaProducer(
            **{**self.settings.kafka_python_config(), **kafka_config},
            linger_ms=linger_ms,
            batch_size=256 * 1024,
            acks=1,
        )

    def send(self, event: Event | None = None, **fields) -> Event:
        """Send one event; pass an :class:`Event` or its fields (event_id and ts get defaults)."""
        if event is None:
            fields.setdefault("event_id", uuid.uuid4().hex)
            fields.setdefault("ts", now_ms())
            event = Event(**fields)
        self._producer.send(
            self.events_topic,
            key=event.user_id.encode(),
            value=event.model_dump_json(exclude_none=True).encode(),
        )
        return event

    def send_raw(self, value: bytes, key: bytes | None = None) -> None:
        """Send bytes as they are (no validation): for tests of the dead-letter path."""
        self._producer.send(self.events_topic, key=key, value=value)

    def send_item(self, item: Item) -> None:
        """Add or update a catalogue item (``items`` is compacted, keyed by item_id)."""
        self._producer.send(self.items_topic, key=item.item_id.encode(), value=item.model_dump_json().encode())

    def delete_item(self, item_id: str) -> None:
        """Remove an item from the catalogue (tombstone)."""
        self._producer.send(self.items_topic, key=item_id.encode(), value=None)

    def flush(self, timeout_s: float | None = None) -> None:
        self._producer.flush(timeout=timeout_s)

    def close(self) -> None:
        self._producer.flush()
        self._producer.close()

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RecommendationConsumer:
    """Iterate over typed recommendation lists from ``recommendations``.

    Tombstones (a forgotten user) come as ``(user_id, None)`` when ``tombstones=True``.
    By default a new consumer without a group reads the topic from the beginning; iteration
    stops after ``idle_timeout_s`` without a record (never, by default).

    Example::

        for rec in RecommendationConsumer(Settings(bootstrap="127.0.0.1:9092")):
            print(rec.user_id, [i.item_id for i in rec.items])
    """

    #: pause after an empty poll: some brokers (noida-db) answer fetches at once instead of
    #: holding them, and a tight poll loop would burn a core.
    empty_poll_pause_s = 0.01

    def __init__(
        self,
        settings: Settings | None = None,
        group_id: str | None = None,
        from_beginning: bool = True,
        idle_timeout_s: float | None = None,
        tombstones: bool = False,
        **kafka_config,
    ) -> None:
        from kafka import KafkaConsumer

        self.settings = settings or Settings()
        self.tombstones = tombstones
        self.idle_timeout_s = idle_timeout_s
        self._consumer = KafkaConsumer(
            topic_name(self.settings, "recommendations"),
            **{**self.settings.kafka_python_config(), **kafka_config},
            group_id=group_id,
            auto_offset_reset="earliest" if from_beginning else "latest",
            enable_auto_commit=group_id is not None,
        )

    def __iter__(self) -> Iterator[Recommendation | tuple[str, None]]:
        last = time.monotonic()
        while True:
            batch = self.poll(timeout_s=0)
            if batch:
                last = time.monotonic()
                yield from batch
                continue
            if self.idle_timeout_s is not None and time.monotonic() - last > self.idle_timeout_s:
                return
            time.sleep(self.empty_poll_pause_s)

    def poll(self, timeout_s: float = 0.5, max_records: int = 1000) -> list[Recommendation | tuple[str, None]]:
        """Whatever arrived within ``timeout_s`` (an empty list when nothing did)."""
        out: list[Recommendation | tuple[str, None]] = []
        deadline = time.monotonic() + timeout_s
        while True:
            for messages in self._consumer.poll(timeout_ms=0, max_records=max_records).values():
                for message in messages:
                    if message.value is None:
                        if self.tombstones:
                            out.append((message.key.decode(), None))
                        continue
                    out.append(Recommendation.model_validate(json.loads(message.value)))
            if out or time.monotonic() >= deadline:
                return out
            time.sleep(self.empty_poll_pause_s)

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> RecommendationConsumer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
