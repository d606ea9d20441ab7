"""What a replica holds in memory: the newest list of every user (``recommendations``), the
servable items (``items``), the trending fallback (``model-updates``), all filled by one
:class:`~stream.kafka.follow.TopicFollower`, and the producer of HTTP events."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError

from model.scoring.snapshot import GlobalSnapshot
from serving.api.settings import ApiSettings
from serving.api.wire import ApiError
from stream.config import Settings, topic_name
from stream.kafka.fetch_backoff import install_fetch_backoff
from stream.kafka.follow import TopicFollower
from stream.model_store import SnapshotError
from stream.model_updates import ModelUpdates, VerifiedVersion
from stream.schemas import Event, InvalidEvent, Recommendation, RecommendedItem, read_item_record

log = logging.getLogger(__name__)


class RecommendationView:
    """The newest list of every user on ``recommendations``, kept as the JSON the worker
    published (validated on arrival, about 1 KB per user); a tombstone deletes the user."""

    def __init__(self) -> None:
        self._lists: dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self._lists)

    def get(self, user_id: str) -> Recommendation | None:
        raw = self._lists.get(user_id)
        return None if raw is None else Recommendation.model_validate_json(raw)

    async def apply(self, records) -> None:
        for r in records:
            if r.value is None:
                if r.key is not None:
                    self._lists.pop(r.key.decode("utf-8", errors="replace"), None)
                continue
            try:
                rec = Recommendation.model_validate_json(r.value)
            except ValidationError as exc:
                log.warning(
                    "skipping an unreadable list at %s[%d]@%d: %s",
                    r.topic,
                    r.partition,
                    r.offset,
                    exc.errors()[0]["msg"],
                )
                continue
            user_id = r.key.decode("utf-8", errors="replace") if r.key is not None else rec.user_id
            self._lists[user_id] = r.value

    async def caught_up(self) -> None:
        log.info("view: %d users loaded", len(self._lists))


class ServableItems:
    """item_id -> category of every available item of the ``items`` catalogue (the fallback
    serves only these), and the ids deleted or made unavailable since (never served)."""

    def __init__(self) -> None:
        self.categories: dict[str, str | None] = {}
        self.withdrawn: set[str] = set()

    async def apply(self, records) -> None:
        for r in records:
            try:
                change = read_item_record(r.key, r.value)
            except InvalidEvent as err:  # the workers dead-letter it; the API just skips it
                log.warning("skipping an invalid item at %s[%d]@%d: %s", r.topic, r.partition, r.offset, err.reason)
                continue
            if change is None:
                continue
            if change.item is None or not change.item.available:
                self.categories.pop(change.item_id, None)
                self.withdrawn.add(change.item_id)
            else:
                self.categories[change.item_id] = change.item.category
                self.withdrawn.discard(change.item_id)

    async def caught_up(self) -> None:
        log.info("catalogue: %d servable items", len(self.categories))


@dataclass(frozen=True)
class TrendingRanking:
    """Items of a global snapshot by trending count, highest first (zero counts left out).

    >>> from model.scoring.cooccurrence import ItemNeighbours
    >>> none = ItemNeighbours(np.zeros(4, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32))
    >>> snap = GlobalSnapshot(["a", "b", "c"], none, np.array([1.0, 0, 3.0]))
    >>> ranking = TrendingRanking.of("v1", snap)
    >>> ranking.item_ids, [i.item_id for i in ranking.top(5, {"a": "shoes", "b": None})]
    (['c', 'a'], ['a'])
    """

    version: str
    item_ids: list[str]
    scores: list[float]

    @classmethod
    def of(cls, version: str, snapshot: GlobalSnapshot) -> TrendingRanking:
        order = np.argsort(-snapshot.trending, kind="stable")
        order = order[snapshot.trending[order] > 0]
        return cls(version, [snapshot.item_ids[i] for i in order], snapshot.trending[order].tolist())

    def top(self, k: int, servable: dict[str, str | None]) -> list[RecommendedItem]:
        """The ``k`` most trending items that are in ``servable`` (item_id -> category)."""
        out = []
        for item_id, score in zip(self.item_ids, self.scores, strict=True):
            if item_id in servable:  # ranked over the whole shop: trending now, not in a category
                out.append(RecommendedItem(item_id=item_id, score=score, reasons=["trending now"]))
                if len(out) == k:
                    break
        return out


class TrendingFallback:
    """The trending ranking of the newest usable ``global`` announcement on ``model-updates``,
    followed as the workers follow it (:class:`~stream.model_updates.ModelUpdates`); a missing or
    corrupt version is logged and skipped, the previous ranking stays."""

    def __init__(self) -> None:
        self.ranking: TrendingRanking | None = None
        self.updates = ModelUpdates({"global": (self._prepare, self._use)}, ignore=("adapter",))

    @staticmethod
    def _prepare(verified: VerifiedVersion) -> TrendingRanking:
        try:
            return TrendingRanking.of(verified.version, GlobalSnapshot.from_bytes(verified.files["global.npz"]))
        except (KeyError, ValueError, OSError) as exc:
            raise SnapshotError("corrupt", f"version {verified.version}: unreadable global snapshot ({exc})") from None

    def _use(self, ranking: TrendingRanking) -> None:
        self.ranking = ranking


class ServingState:
    """Everything a replica holds: the view, the catalogue, the trending fallback, the
    follower that fills them and the producer of HTTP events."""

    def __init__(self, settings: Settings, api: ApiSettings) -> None:
        self.settings = settings
        self.api = api
        self.client_config = settings.aiokafka_config()
        self.events_topic = topic_name(settings, "events")
        self.view = RecommendationView()
        self.catalogue = ServableItems()
        self.trending = TrendingFallback()
        self.follower = TopicFollower(
            self.client_config,
            {
                topic_name(settings, "recommendations"): self.view,
                topic_name(settings, "items"): self.catalogue,
                topic_name(settings, "model-updates"): self.trending.updates,
            },
            api.probe_interval_s,
            client_id="streamrec-api-view",
        )
        self.producer = None
        self._tasks: list[asyncio.Task] = []

    @property
    def ready(self) -> bool:
        return self.follower.caught_up and self.follower.broker_reachable and self.producer is not None

    async def start(self) -> None:
        install_fetch_backoff(self.api.empty_fetch_backoff_s)
        self._tasks = [asyncio.create_task(self.follower.run()), asyncio.create_task(self._connect_producer())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.producer is not None:
            await self.producer.stop()

    async def _connect_producer(self) -> None:
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        while True:
            producer = AIOKafkaProducer(**self.client_config, acks="all", client_id="streamrec-api")
            try:
                await producer.start()
            except (KafkaError, OSError) as exc:
                await producer.stop()
                log.warning("Kafka producer cannot connect (%s); retrying in 1 s", type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            self.producer = producer
            return

    async def produce(self, events: list[Event]) -> None:
        """Send ``events`` to ``events`` keyed by user_id; return once Kafka acknowledged all."""
        from aiokafka.errors import KafkaError

        if self.producer is None:
            raise ApiError(503, "broker_unavailable", "not connected to Kafka yet; retry shortly", {"Retry-After": "1"})

        async def send_all() -> None:
            futures = [
                await self.producer.send(
                    self.events_topic, key=e.user_id.encode(), value=e.model_dump_json(exclude_none=True).encode()
                )
                for e in events
            ]
            await asyncio.gather(*futures)

        try:
            await asyncio.wait_for(send_all(), timeout=self.api.produce_timeout_s)
        except (TimeoutError, KafkaError) as exc:
            raise ApiError(
                503,
                "broker_unavailable",
                f"Kafka did not acknowledge the events ({type(exc).__name__}); some may have been "
                "written: retrying with the same event_ids is safe",
                {"Retry-After": "1"},
            ) from None
