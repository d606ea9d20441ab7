"""The HTTP API (FastAPI): recommendation lists from a materialised view, events in, health,
readiness and Prometheus metrics.

Each replica reads the compacted ``recommendations`` topic from its start, without a consumer
group (every replica holds every user), into memory, and with it the ``items`` catalogue and
the learner's announcements on ``model-updates`` (for the trending fallback). A GET is a dict
lookup, never a Kafka round trip. Run it with ``streamrec api``.

Authentication: bearer API keys in two scopes. ``STREAMREC_API_READ_KEYS`` may read
recommendations, ``STREAMREC_API_WRITE_KEYS`` may send events (comma separated lists). A key has
the scopes of the lists it appears in and no others: a write key cannot read users' lists unless
it is also a read key. /healthz, /readyz, /metrics and the OpenAPI pages need no key.
"""

# No ``from __future__ import annotations``: FastAPI resolves the endpoints' annotations at
# runtime, and the batch model is built per app from its configured limit.

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from fastapi import Depends, FastAPI, Path, Query, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.exceptions import HTTPException

from model.global_snapshot import GlobalSnapshot
from stream.config import Settings, topic_name
from stream.fetch_backoff import install_fetch_backoff
from stream.model_store import SnapshotError
from stream.model_updates import announcement_kind, load_announced
from stream.schemas import (
    Event,
    InvalidEvent,
    Recommendation,
    RecommendedItem,
    now_ms,
    parse_item,
)

log = logging.getLogger(__name__)

MAX_K = 200
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def _kafka_env(name: str) -> AliasChoices:
    """A Kafka client setting reads STREAMREC_API_<NAME>, else the deployment-wide STREAMREC_<NAME>."""
    return AliasChoices(f"STREAMREC_API_{name.upper()}", f"STREAMREC_{name.upper()}")


class ApiSettings(BaseSettings):
    """Settings of the HTTP API from ``STREAMREC_API_*`` variables; the Kafka address, topic
    prefix and K come from :class:`stream.config.Settings` (``STREAMREC_*``).

    The Kafka security fields read ``STREAMREC_API_<FIELD>`` and fall back to
    ``STREAMREC_<FIELD>`` (e.g. ``STREAMREC_SECURITY_PROTOCOL=SASL_SSL``), so one set of
    variables can serve every process of a deployment.

    >>> api = ApiSettings(read_keys="r1, r2", write_keys="w1")
    >>> sorted(KeyRing.of(api).scopes("r2")), api.read_keys
    (['read'], SecretStr('**********'))
    """

    model_config = SettingsConfigDict(env_prefix="STREAMREC_API_", extra="ignore", populate_by_name=True,
                                      hide_input_in_errors=True)  # inputs hold keys and passwords

    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0: every interface)")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on")
    read_keys: SecretStr = Field(SecretStr(""), description="API keys of the read scope, comma separated")
    write_keys: SecretStr = Field(SecretStr(""), description="API keys of the write scope, comma separated")
    allow_anonymous: bool = Field(False, description="no authentication at all (local development only)")
    max_batch: int = Field(500, ge=1, le=10_000, description="most events in one POST /v1/events:batch")
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="largest body of a batch; a single event's "
                                "body is limited by STREAMREC_MAX_EVENT_BYTES, as the workers limit it")
    produce_timeout_s: float = Field(10.0, gt=0, description="longest wait for Kafka to acknowledge events")
    probe_interval_s: float = Field(2.0, gt=0, description="how often the broker's reachability is checked")
    empty_fetch_backoff_s: float = Field(0.01, ge=0, description="pause after an empty fetch (see stream.fetch_backoff)")
    security_protocol: SecurityProtocol = Field("PLAINTEXT", validation_alias=_kafka_env("security_protocol"))
    sasl_mechanism: SaslMechanism = Field("PLAIN", validation_alias=_kafka_env("sasl_mechanism"))
    sasl_username: str | None = Field(None, validation_alias=_kafka_env("sasl_username"))
    sasl_password: SecretStr | None = Field(None, validation_alias=_kafka_env("sasl_password"))
    ssl_cafile: str | None = Field(None, validation_alias=_kafka_env("ssl_cafile"),
                                   description="CA bundle (PEM) to verify the brokers; default: the system's")
    ssl_certfile: str | None = Field(None, validation_alias=_kafka_env("ssl_certfile"),
                                     description="client certificate (PEM) for mutual TLS")
    ssl_keyfile: str | None = Field(None, validation_alias=_kafka_env("ssl_keyfile"),
                                    description="private key (PEM) of the client certificate")
    ssl_keyfile_password: SecretStr | None = Field(None, validation_alias=_kafka_env("ssl_keyfile_password"))

    @model_validator(mode="after")
    def _consistent(self) -> "ApiSettings":
        if self.security_protocol.startswith("SASL_") and not (self.sasl_username and self.sasl_password):
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_username and sasl_password "
                             "(STREAMREC_SASL_USERNAME / STREAMREC_SASL_PASSWORD)")
        return self

    def kafka_client_config(self, bootstrap: str) -> dict:
        """Keyword arguments of every aiokafka client of the API: address and security.

        >>> cfg = ApiSettings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
        ...                   sasl_username="api", sasl_password="s3cret").kafka_client_config("k1:9093,k2:9093")
        >>> cfg["bootstrap_servers"], cfg["sasl_mechanism"], cfg["sasl_plain_password"], type(cfg["ssl_context"]).__name__
        (['k1:9093', 'k2:9093'], 'SCRAM-SHA-512', 's3cret', 'SSLContext')
        """
        config: dict = {"bootstrap_servers": bootstrap.split(","), "security_protocol": self.security_protocol}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            password = self.ssl_keyfile_password.get_secret_value() if self.ssl_keyfile_password else None
            config["ssl_context"] = create_ssl_context(cafile=self.ssl_cafile, certfile=self.ssl_certfile,
                                                       keyfile=self.ssl_keyfile, password=password)
        if self.security_protocol.startswith("SASL_"):
            config.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                          sasl_plain_password=self.sasl_password.get_secret_value())
        return config


class KeyRing:
    """API keys by scope. A presented key is compared with every configured key in constant
    time (sha256 digests, so neither content nor length leaks through timing).

    >>> ring = KeyRing(read="r1, both", write="w1,both")
    >>> sorted(ring.scopes("both")), sorted(ring.scopes("w1")), sorted(ring.scopes("nope"))
    (['read', 'write'], ['write'], [])
    """

    def __init__(self, read: str, write: str) -> None:
        self._digests = {scope: [_digest(k) for k in keys.split(",") if k.strip()]
                         for scope, keys in (("read", read), ("write", write))}

    @classmethod
    def of(cls, api: ApiSettings) -> "KeyRing":
        return cls(api.read_keys.get_secret_value(), api.write_keys.get_secret_value())

    def __bool__(self) -> bool:
        return any(self._digests.values())

    def scopes(self, presented: str) -> set[str]:
        token = _digest(presented)
        granted = set()
        for scope, digests in self._digests.items():
            match = False
            for digest in digests:  # no early exit: the time does not depend on which key matched
                match |= hmac.compare_digest(token, digest)
            if match:
                granted.add(scope)
        return granted


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.strip().encode()).digest()


# --- wire models of the HTTP API -------------------------------------------------------------

class EventIn(Event):
    """An event as sent over HTTP: the ``events`` schema, where ``event_id`` and ``ts`` may be
    left out. Set ``event_id`` to retry safely: workers apply an event_id once."""

    event_id: str | None = Field(None, min_length=1, max_length=256,
                                 description="unique id; default: a random one (then a retry counts twice)")
    ts: int | None = Field(None, ge=0, le=10**14, strict=True, description="event time, ms since epoch; default: arrival")

    def complete(self) -> Event:
        fields = self.model_dump()
        fields["event_id"] = self.event_id or uuid.uuid4().hex
        fields["ts"] = now_ms() if self.ts is None else self.ts
        return Event(**fields)


class RecommendationsOut(BaseModel):
    user_id: str
    items: list[RecommendedItem] = Field(description="best first, at most k")
    fallback: bool = Field(description="true when the user has no list of their own (unknown, or forgotten): "
                           "items are then the trending items of the learner's newest usable snapshot, "
                           "or none before its first one")
    model_version: str | None = Field(description="model of the list; trending:<version> for a fallback")
    trigger_event_id: str | None = Field(None, description="the last event reflected in the list")
    event_ts: int | None = Field(None, description="time of that event, ms since epoch")
    published_ts: int | None = Field(None, description="when the worker published the list, ms since epoch")


class Accepted(BaseModel):
    event_id: str = Field(description="id of the accepted event (the one sent, or the one given to it)")


class BatchAccepted(BaseModel):
    accepted: int
    event_ids: list[str] = Field(description="ids of the accepted events, in the order sent")


class ApiErrorOut(BaseModel):
    error: str = Field(description="short code: unauthorized, forbidden, invalid_request, body_too_large, ...")
    message: str = Field(description="what went wrong, for people")
    detail: list[dict] | None = Field(None, description="validation errors: loc, msg, type of each")


class ApiError(HTTPException):
    def __init__(self, status: int, error: str, message: str, headers: dict | None = None) -> None:
        super().__init__(status, message, headers)
        self.error = error


_ERROR_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 413: "body_too_large", 422: "invalid_request", 503: "unavailable"}
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


# --- the materialised state -------------------------------------------------------------------

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
                log.warning("skipping an unreadable list at %s[%d]@%d: %s", r.topic, r.partition, r.offset,
                            exc.errors()[0]["msg"])
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
            if r.value is None:
                if r.key is not None:
                    item_id = r.key.decode("utf-8", errors="replace")
                    self.categories.pop(item_id, None)
                    self.withdrawn.add(item_id)
                continue
            try:
                item = parse_item(r.value)
            except InvalidEvent as err:  # the workers dead-letter it; the API just skips it
                log.warning("skipping an invalid item at %s[%d]@%d: %s", r.topic, r.partition, r.offset, err.reason)
                continue
            if item.deleted or not item.available:
                self.categories.pop(item.item_id, None)
                self.withdrawn.add(item.item_id)
            else:
                self.categories[item.item_id] = item.category
                self.withdrawn.discard(item.item_id)

    async def caught_up(self) -> None:
        log.info("catalogue: %d servable items", len(self.categories))


@dataclass(frozen=True)
class TrendingRanking:
    """Items of a global snapshot by trending count, highest first (zero counts left out).

    >>> snap = GlobalSnapshot(["a", "b", "c"], np.zeros((3, 3), np.float32), np.zeros(3), np.array([1.0, 0, 3.0]))
    >>> ranking = TrendingRanking.of("v1", snap)
    >>> ranking.item_ids, [i.item_id for i in ranking.top(5, {"a": "shoes", "b": None})]
    (['c', 'a'], ['a'])
    """

    version: str
    item_ids: list[str]
    scores: list[float]

    @classmethod
    def of(cls, version: str, snapshot: GlobalSnapshot) -> "TrendingRanking":
        order = np.argsort(-snapshot.trending, kind="stable")
        order = order[snapshot.trending[order] > 0]
        return cls(version, [snapshot.item_ids[i] for i in order], snapshot.trending[order].tolist())

    def top(self, k: int, servable: dict[str, str | None]) -> list[RecommendedItem]:
        """The ``k`` most trending items that are in ``servable`` (item_id -> category)."""
        out = []
        for item_id, score in zip(self.item_ids, self.scores):
            if item_id in servable:
                category = servable[item_id]
                out.append(RecommendedItem(item_id=item_id, score=score,
                                           reasons=[f"trending in {category}" if category else "trending now"]))
                if len(out) == k:
                    break
        return out


class TrendingFollower:
    """Follows the ``global`` announcements on ``model-updates`` like the workers do: of those
    made before the API started, the newest usable one is loaded; after that each new one is
    tried. A snapshot is used only after :func:`stream.model_updates.load_announced` verified
    its checksums; a missing or corrupt one is logged and skipped, the previous ranking stays."""

    def __init__(self) -> None:
        self.ranking: TrendingRanking | None = None
        self._backlog: list[dict] = []
        self._live = False

    async def apply(self, records) -> None:
        announcements = []
        for r in records:
            try:
                announcement = json.loads(r.value) if r.value is not None else None
            except ValueError:
                log.error("unreadable model announcement at %s@%d skipped", r.topic, r.offset)
                continue
            if isinstance(announcement, dict) and announcement_kind(announcement) == "global":
                announcements.append(announcement)
        if self._live:
            await self._load_newest_usable(announcements)
        else:
            self._backlog += announcements

    async def caught_up(self) -> None:
        self._live = True
        backlog, self._backlog = self._backlog, []
        await self._load_newest_usable(backlog)

    async def _load_newest_usable(self, announcements: list[dict]) -> None:
        loop = asyncio.get_running_loop()
        for announcement in reversed(announcements):
            try:
                self.ranking = await loop.run_in_executor(None, _verified_ranking, announcement)
            except (SnapshotError, ValueError, TypeError, KeyError, OSError) as err:
                log.error("model update refused, trending fallback unchanged: %s", err)
                continue
            log.info("trending fallback from global models %s", self.ranking.version)
            return


def _verified_ranking(announcement: dict) -> TrendingRanking:
    verified = load_announced(announcement)
    try:
        return TrendingRanking.of(verified.version, GlobalSnapshot.from_bytes(verified.files["global.npz"]))
    except (KeyError, ValueError, OSError) as exc:
        raise SnapshotError("corrupt", f"version {verified.version}: unreadable global snapshot ({exc})") from None


class TopicFollower:
    """One consumer, no group, reading whole topics from their start and handing each batch of
    records to its topic's handler (``apply``; ``caught_up`` once the topic has been read up to
    the end offsets seen at the first start). Reconnects after errors from where it was, and
    checks every ``probe_interval_s`` that the broker answers."""

    def __init__(self, client_config: dict, handlers: dict, probe_interval_s: float) -> None:
        self.client_config = client_config
        self.handlers = handlers
        self.probe_interval_s = probe_interval_s
        self.positions: dict = {}
        self.end_offsets: dict | None = None
        self.pending_topics = set(handlers)
        self.broker_seen_at = float("-inf")

    @property
    def caught_up(self) -> bool:
        return not self.pending_topics

    @property
    def broker_reachable(self) -> bool:
        return time.monotonic() - self.broker_seen_at < 3 * self.probe_interval_s

    async def run(self) -> None:
        while True:
            try:
                await self._follow()
            except Exception:  # broker gone at start, authorisation, ...: log, then resume
                log.exception("reading %s failed; retrying in 1 s", ", ".join(self.handlers))
                await asyncio.sleep(1.0)

    async def _follow(self) -> None:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(**self.client_config, group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest", client_id="streamrec-api-view")
        try:
            await consumer.start()
            tps = await self._partitions(consumer)
            consumer.assign(tps)
            for tp in tps:
                if tp in self.positions:
                    consumer.seek(tp, self.positions[tp])
                else:
                    await consumer.seek_to_beginning(tp)
            if self.end_offsets is None:
                self.end_offsets = await consumer.end_offsets(tps)
            self.broker_seen_at = time.monotonic()
            probe = asyncio.create_task(self._probe(consumer, tps))
            try:
                await self._check_caught_up(consumer, tps)
                while True:
                    batch = await consumer.getmany(timeout_ms=500, max_records=2000)
                    for tp, records in batch.items():
                        await self.handlers[tp.topic].apply(records)
                        self.positions[tp] = records[-1].offset + 1
                    if self.pending_topics:
                        await self._check_caught_up(consumer, tps)
            finally:
                probe.cancel()
        finally:
            await consumer.stop()

    async def _partitions(self, consumer) -> list:
        from aiokafka import TopicPartition

        waited = 0.0
        while True:
            found = {t: consumer.partitions_for_topic(t) for t in self.handlers}
            missing = [t for t, parts in found.items() if not parts]
            if not missing:
                return [TopicPartition(t, p) for t, parts in found.items() for p in sorted(parts)]
            if waited % 10 == 0:
                log.warning("waiting for topics %s (create them with `streamrec topics create`)", ", ".join(missing))
            await consumer._client.force_metadata_update()  # as stream.topic_reader does
            await asyncio.sleep(0.5)
            waited += 0.5

    async def _check_caught_up(self, consumer, tps) -> None:
        for topic in sorted(self.pending_topics):
            mine = [tp for tp in tps if tp.topic == topic]
            if all([await consumer.position(tp) >= self.end_offsets[tp] for tp in mine]):
                self.pending_topics.discard(topic)
                await self.handlers[topic].caught_up()

    async def _probe(self, consumer, tps) -> None:
        while True:
            await asyncio.sleep(self.probe_interval_s)
            try:
                await asyncio.wait_for(consumer.end_offsets(tps), timeout=self.probe_interval_s)
                self.broker_seen_at = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - any failure means "not reachable now"
                log.warning("broker probe failed: %s", type(exc).__name__)


class ServingState:
    """Everything a replica holds: the view, the catalogue, the trending fallback, the
    follower that fills them and the producer of HTTP events."""

    def __init__(self, settings: Settings, api: ApiSettings) -> None:
        self.settings = settings
        self.api = api
        self.client_config = api.kafka_client_config(settings.bootstrap)
        self.events_topic = topic_name(settings, "events")
        self.view = RecommendationView()
        self.catalogue = ServableItems()
        self.trending = TrendingFollower()
        self.follower = TopicFollower(self.client_config, {
            topic_name(settings, "recommendations"): self.view,
            topic_name(settings, "items"): self.catalogue,
            topic_name(settings, "model-updates"): self.trending,
        }, api.probe_interval_s)
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
            raise ApiError(503, "broker_unavailable", "not connected to Kafka yet; retry shortly",
                           {"Retry-After": "1"})

        async def send_all() -> None:
            futures = [await self.producer.send(self.events_topic, key=e.user_id.encode(),
                                                value=e.model_dump_json(exclude_none=True).encode()) for e in events]
            await asyncio.gather(*futures)

        try:
            await asyncio.wait_for(send_all(), timeout=self.api.produce_timeout_s)
        except (TimeoutError, KafkaError) as exc:
            raise ApiError(503, "broker_unavailable",
                           f"Kafka did not acknowledge the events ({type(exc).__name__}); some may have been "
                           "written: retrying with the same event_ids is safe", {"Retry-After": "1"}) from None


# --- the app ----------------------------------------------------------------------------------

DESCRIPTION = """
Recommendation lists of a streamrec deployment, and events in over HTTP.

* **Lists** come from an in-memory view of the compacted `recommendations` topic that this
  replica reads from its start: a user's list is the last one a worker published for them.
  A user without one (unknown, or forgotten) gets the trending items of the learner's newest
  verified snapshot, marked `"fallback": true`.
* **Events** are validated with the `events` schema and produced to Kafka keyed by `user_id`;
  `202 Accepted` means Kafka acknowledged them. Set `event_id` to make retries safe.
* **Auth**: `Authorization: Bearer <key>`. Read keys (`STREAMREC_API_READ_KEYS`) may read lists,
  write keys (`STREAMREC_API_WRITE_KEYS`) may send events; a key has only the scopes of the lists
  it is in. No key or an unknown key: 401; a key without the route's scope: 403.
* **Errors** are JSON: `{"error": code, "message": text}` (+ `detail` for validation errors).
"""


def _error_responses(*statuses: int) -> dict:
    return {s: {"model": ApiErrorOut} for s in statuses}


def create_api(settings: Settings | None = None, api: ApiSettings | None = None) -> FastAPI:
    """The FastAPI app of one replica; the view fills in the background once it starts."""
    settings = settings or Settings()
    api = api or ApiSettings()
    keys = KeyRing.of(api)
    if api.allow_anonymous and keys:
        raise ValueError("API keys are configured and allow_anonymous is on: choose one")
    if not api.allow_anonymous and not keys:
        raise ValueError("no API keys configured: set STREAMREC_API_READ_KEYS and/or STREAMREC_API_WRITE_KEYS "
                         "(comma separated), or STREAMREC_API_ALLOW_ANONYMOUS=true for local development")
    state = ServingState(settings, api)

    registry = CollectorRegistry()
    durations = Histogram(
        "streamrec_api_request_duration_seconds", "Time to answer an HTTP request, by route template, method "
        "and status", ["route", "method", "status"], registry=registry,
        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    )
    Gauge("streamrec_api_view_users", "Users with a list in this replica's view",
          registry=registry).set_function(lambda: len(state.view))

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(title="streamrec API", version="1", description=DESCRIPTION, lifespan=lifespan,
                  openapi_tags=[{"name": "recommendations", "description": "read scope"},
                                {"name": "events", "description": "write scope"},
                                {"name": "operations", "description": "no key needed"}])
    app.state.serving = state
    app.add_middleware(BodyLimit, limits={"/v1/events": settings.max_event_bytes}, default=api.max_body_bytes)
    app.add_middleware(RequestMetrics, histogram=durations)

    bearer = HTTPBearer(auto_error=False, description="an API key of the route's scope")

    def require(scope: str):
        async def check(credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> None:
            if api.allow_anonymous:
                return
            if credentials is None:
                raise ApiError(401, "unauthorized", "missing API key: send 'Authorization: Bearer <key>'",
                               {"WWW-Authenticate": "Bearer"})
            granted = keys.scopes(credentials.credentials)
            if not granted:
                raise ApiError(401, "unauthorized", "unknown API key", {"WWW-Authenticate": "Bearer"})
            if scope not in granted:
                raise ApiError(403, "forbidden", f"this API key does not have the {scope} scope")
        return Depends(check)

    @app.exception_handler(HTTPException)
    async def http_error(_request, exc: HTTPException) -> JSONResponse:
        error = getattr(exc, "error", None) or _ERROR_CODES.get(exc.status_code, "error")
        return JSONResponse({"error": error, "message": exc.detail}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
        return JSONResponse({"error": "invalid_request", "message": message, "detail": errors}, 422)

    @app.get("/v1/users/{user_id:path}/recommendations", response_model=RecommendationsOut,
             tags=["recommendations"], dependencies=[require("read")],
             responses=_error_responses(401, 403, 422, 503),
             summary="A user's current recommendation list")
    async def recommendations(
        user_id: Annotated[str, Path(min_length=1, max_length=256, description="the user's id")],
        k: Annotated[int, Query(ge=1, le=MAX_K, description=f"list length, 1..{MAX_K}; lists hold as many "
                                "items as the workers publish (STREAMREC_K)")] = settings.k,
    ) -> RecommendationsOut:
        """The last list a worker published for the user, without items deleted or made
        unavailable since, cut to `k` items. A user without a list gets the trending items
        instead, with `"fallback": true`. 503 while this replica is still loading the view."""
        if not state.follower.caught_up:
            raise ApiError(503, "not_ready", "this replica is still loading the recommendation view; retry shortly",
                           {"Retry-After": "1"})
        rec = state.view.get(user_id)
        if rec is not None:
            withdrawn = state.catalogue.withdrawn
            items = [item for item in rec.items if item.item_id not in withdrawn][:k]
            return RecommendationsOut(user_id=user_id, items=items, fallback=False,
                                      model_version=rec.model_version, trigger_event_id=rec.trigger_event_id,
                                      event_ts=rec.event_ts, published_ts=rec.published_ts)
        ranking = state.trending.ranking
        if ranking is None:
            return RecommendationsOut(user_id=user_id, items=[], fallback=True, model_version=None)
        return RecommendationsOut(user_id=user_id, items=ranking.top(k, state.catalogue.categories), fallback=True,
                                  model_version=f"trending:{ranking.version}")

    def checked(events: list[EventIn], batch: bool) -> list[Event]:
        """The events with id and time filled in; each must fit the workers' size limit."""
        out = []
        for i, event in enumerate(events):
            complete = event.complete()
            size = len(complete.model_dump_json(exclude_none=True).encode())
            if size > settings.max_event_bytes:
                raise RequestValidationError([{
                    "loc": ["body", "events", i] if batch else ["body"], "type": "too_large",
                    "msg": f"event is {size} bytes as JSON, more than the limit of {settings.max_event_bytes}"}])
            out.append(complete)
        return out

    @app.post("/v1/events", status_code=202, response_model=Accepted, tags=["events"],
              dependencies=[require("write")], responses=_error_responses(401, 403, 413, 422, 503),
              summary="Send one event")
    async def post_event(event: EventIn) -> Accepted:
        """Validate the event and produce it to `events`, keyed by `user_id`. 202 once Kafka
        acknowledged it; the worker then refreshes the user's list (readable with GET)."""
        [complete] = checked([event], batch=False)
        await state.produce([complete])
        return Accepted(event_id=complete.event_id)

    EventBatch = create_model(
        "EventBatch", __doc__="Events sent together; all are validated before any is produced.",
        events=(list[EventIn], Field(min_length=1, max_length=api.max_batch,
                                     description=f"1..{api.max_batch} events")),
    )

    @app.post("/v1/events:batch", status_code=202, response_model=BatchAccepted, tags=["events"],
              dependencies=[require("write")], responses=_error_responses(401, 403, 413, 422, 503),
              summary="Send a batch of events")
    async def post_events(batch: EventBatch) -> BatchAccepted:  # type: ignore[valid-type]
        """All or nothing: one invalid event rejects the whole batch (422, with its index in
        `loc`) and nothing is produced. 202 once Kafka acknowledged every event."""
        events = checked(batch.events, batch=True)
        await state.produce(events)
        return BatchAccepted(accepted=len(events), event_ids=[e.event_id for e in events])

    @app.get("/healthz", tags=["operations"], summary="Liveness")
    async def healthz() -> dict:
        """200 while the process serves requests."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Readiness", responses={503: {"description": "not ready"}})
    async def readyz() -> JSONResponse:
        """200 once the view has been read up to the end offsets seen at start, the broker
        answers (checked every STREAMREC_API_PROBE_INTERVAL_S) and the event producer is
        connected; 503 otherwise. The body says which condition holds."""
        body = {"ready": state.ready, "view_caught_up": state.follower.caught_up,
                "broker_reachable": state.follower.broker_reachable, "producer_connected": state.producer is not None,
                "view_users": len(state.view),
                "trending_version": state.trending.ranking.version if state.trending.ranking else None}
        return JSONResponse(body, 200 if body["ready"] else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics() -> Response:
        """streamrec_api_request_duration_seconds{route,method,status}, streamrec_api_view_users."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


class RequestMetrics:
    """ASGI middleware timing every request; labelled by route template (never the raw path,
    which holds user ids), method and status."""

    def __init__(self, app, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_with_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.histogram.labels(getattr(route, "path_format", "unmatched"), method,
                                  str(status)).observe(time.perf_counter() - start)


class BodyLimit:
    """ASGI middleware: a request body larger than its route's limit (``limits``, by route
    template; else ``default``) gets 413, judged by Content-Length and, for chunked bodies,
    by the bytes read so far. The check runs when the endpoint reads the body, after routing,
    so the 413 is rendered like every other error."""

    def __init__(self, app, limits: dict[str, int], default: int) -> None:
        self.app = app
        self.limits = limits
        self.default = default

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0

        async def limited_receive():
            nonlocal received
            limit = self.limits.get(getattr(scope.get("route"), "path_format", None), self.default)
            declared = dict(scope["headers"]).get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise ApiError(413, "body_too_large", f"request body is {int(declared)} bytes, over the limit of "
                               f"{limit} bytes of this route")
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise ApiError(413, "body_too_large", f"request body is over the limit of {limit} bytes of this route")
            return message

        await self.app(scope, limited_receive, send)


def serve(settings: Settings, api: ApiSettings, log_level: str = "info") -> None:
    """Run one replica with uvicorn until interrupted. No access log: paths hold user ids."""
    import uvicorn

    uvicorn.run(create_api(settings, api), host=api.host, port=api.port, access_log=False,
                log_level=log_level, server_header=False)
