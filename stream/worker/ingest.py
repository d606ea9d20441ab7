"""The ingest step of a worker: validate -> dedupe -> update user state -> top-K -> publish.

Plain glue over model/: it takes a batch of Kafka records and a table-like mapping, and
hands records to publish to async sinks. The Faust agent in :mod:`stream.worker.app` only feeds it.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import cast

import numpy as np
from aiokafka.partitioner import murmur2

from model.drift import CentroidShift, Detection, DriftMonitor, ScoreDrift
from model.embedding.item_index import ItemIndex
from model.scoring.hybrid import HybridScorer
from model.scoring.snapshot import GlobalSnapshot
from model.user.review import ReadReview, ReviewReader
from model.user.state import UserState
from stream import metrics
from stream.config import Settings
from stream.model_store import SnapshotError
from stream.model_updates import VerifiedVersion
from stream.schemas import (
    Event,
    InvalidEvent,
    encode_recommendation,
    now_ms,
    parse_event,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceRecord:
    """Where a record came from, for the DLQ."""

    raw: bytes | None
    topic: str
    partition: int
    offset: int


Publish = Callable[[bytes, bytes | None], Awaitable[None]]  # key, value (None: tombstone)
SignalDrift = Callable[[Detection], Awaitable[None]]
DeadLetter = Callable[[bytes | None, InvalidEvent, str, int, int], Awaitable[None]]
Forward = Callable[[bytes, bytes, int], Awaitable[None]]  # key, value, the partition that owns the key


def owning_partition(user_id: str | bytes, partitions: int) -> int:
    """The partition of ``events`` (and of the user-state table) that owns ``user_id``: murmur2
    of its UTF-8 bytes, as Kafka's Java client, kafka-python and aiokafka partition a key.

    >>> owning_partition("alice", 4), owning_partition(b"bob", 4), owning_partition("bob", 1)
    (1, 2, 0)
    """
    key = user_id.encode() if isinstance(user_id, str) else user_id
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class IngestProcessor:
    """Turns events into refreshed recommendation lists, one batch at a time.

    All users who changed in a batch are scored with one matrix product. Decoded user states
    are kept in an LRU cache and trusted only while the table holds the very bytes we wrote
    (a recovery or rebalance replaces them, and the state is decoded afresh).
    """

    def __init__(
        self,
        settings: Settings,
        index: ItemIndex,
        table: MutableMapping[bytes, bytes],
        publish: Publish,
        dead_letter: DeadLetter,
        encoder_name: str,
        signal_drift: SignalDrift | None = None,
        reviews: ReviewReader | None = None,
        forward: Forward | None = None,
    ) -> None:
        self.settings = settings
        self.index = index
        self.table = table
        self.publish = publish
        self.dead_letter = dead_letter
        self.encoder_name = encoder_name
        self.global_version: str | None = None  # the learner's CF + trending snapshot in use
        self.space = "base"  # the adapter version the item vectors come from ("base": none)
        self.weights = settings.hybrid_weights()
        # Until the learner's first snapshot arrives there is no CF nor trending: content only.
        self.recommender = self._scorer(index, None, None)
        self.waiting_users: dict[str, set[bytes]] = defaultdict(set)  # item_id -> users with pending events
        self._unscanned: set[bytes] = set()  # owned users whose parked events are not in waiting_users yet
        self._started = False  # set by the first batch, i.e. after the table was recovered
        self._cache: OrderedDict[bytes, tuple[bytes, UserState]] = OrderedDict()
        self.last_active: OrderedDict[bytes, float] = OrderedDict()  # user key -> last save, oldest first
        self.drift = DriftMonitor()
        self.signal_drift = signal_drift
        self._detections: list[Detection] = []
        self.cache_size = 100_000
        self.reviews = reviews  # reads a review's text into the user's vector; None: text ignored
        self._read: dict[str, ReadReview] = {}  # event_id -> its text read, for this batch
        # An event on another partition than its user's (a producer with another partitioner)
        # is sent on to that partition before it touches any state; None: trusted partitioning.
        self.forward = forward

    @property
    def model_version(self) -> str:
        """What served a list: ``hybrid:<global version>`` (or ``content:<encoder>`` before the
        first snapshot), plus ``+adapter:<version>`` once a fine-tuned adapter is in use."""
        served = f"hybrid:{self.global_version}" if self.global_version else f"content:{self.encoder_name}"
        return served if self.space == "base" else f"{served}+adapter:{self.space}"

    # -- state ---------------------------------------------------------------------------
    def _new_state(self) -> UserState:
        state = UserState.new(self.index.dim, self.settings.half_life_s, self.settings.history_size)
        state.space = self.space
        return state

    def _load(self, key: bytes) -> UserState:
        """The user's state; decoded objects are cached while the table still holds our bytes.
        A state from another embedding space is rebuilt in this one from its history."""
        raw = self.table.get(key)
        if raw is None:
            return self._new_state()
        cached = self._cache.get(key)
        if cached is not None and cached[0] is raw:
            self._cache.move_to_end(key)
            state = cached[1]
        else:
            state = UserState.from_bytes(raw)
        if state.space != self.space:
            state.rebuild(self.space, self.index.vector_of)
        return state

    def discard_cached_states(self) -> None:
        """Forget decoded states (after a failed batch): the table's bytes are the truth."""
        self._cache.clear()

    def _save(self, key: bytes, state: UserState) -> None:
        raw = state.to_bytes()
        self.table[key] = raw
        self.last_active[key] = time.monotonic()
        self.last_active.move_to_end(key)
        self._cache[key] = (raw, state)
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    # -- batches -------------------------------------------------------------------------
    async def process(self, records: list[SourceRecord]) -> None:
        """Apply a batch; each user who changed gets one refreshed list reflecting all their events.

        A user's events are applied in order. When a user has several events in one poll, the
        list is computed once, after the last of them (its ``trigger_event_id``), so the work
        per poll scales with users, not events; every event's latency is still measured.
        """
        self._started = True
        metrics.BATCH_SIZE.observe(len(records))
        per_user: dict[str, list[tuple[Event, SourceRecord]]] = defaultdict(list)
        for rec in records:
            try:
                event = parse_event(rec.raw, self.settings.max_event_bytes)
            except InvalidEvent as err:
                metrics.EVENTS.labels("unknown", "dlq").inc()
                await self.dead_letter(rec.raw, err, rec.topic, rec.partition, rec.offset)
                continue
            if self.forward is not None and rec.raw is not None:
                owner = owning_partition(event.user_id, self.settings.partitions)
                if owner != rec.partition:
                    await self.forward(event.user_id.encode(), rec.raw, owner)
                    metrics.EVENTS_REPARTITIONED.inc()
                    continue
            per_user[event.user_id].append((event, rec))
        self._read.clear()  # what a duplicate or parked review left of the last batch
        self._read_reviews([event for events in per_user.values() for event, _ in events])

        to_score: list[tuple[str, UserState, list[Event]]] = []
        for user, events in per_user.items():
            key = user.encode()
            state = self._load(key)
            applied: list[Event] = []
            changed = False
            for event, source in events:
                if event.type == "forget_user":
                    if applied:  # publish what came before the erasure, then forget it
                        await self._publish_lists([(user, state, applied)])
                    await self._forget(key, event)
                    state = self._new_state()
                    applied, changed = [], False
                    continue
                outcome = await self._apply(user, state, event, source)
                if outcome is not None:
                    applied.extend(outcome)
                    changed = True
            if applied:
                to_score.append((user, state, applied))
            elif changed:  # parked events only: persist them now
                self._save(key, state)
        await self._publish_lists(to_score)
        for user, state, _ in to_score:
            self._save(user.encode(), state)
        await self._report_drift()

    async def process_isolating_failures(self, records: list[SourceRecord]) -> None:
        """:meth:`process`, never raising: when a batch fails, its records are retried one by one
        and only those that fail alone go to the DLQ (``processing_error``); the others are
        served (events saved before the failure are duplicates the second time)."""
        try:
            await self.process(records)
            return
        except Exception:
            log.exception("batch of %d events failed; retrying its records one by one", len(records))
        self.discard_cached_states()  # they may hold half-applied events
        for rec in records:
            try:
                await self.process([rec])
            except Exception as exc:
                log.error(
                    "event at %s[%d]@%d failed alone: %s", rec.topic, rec.partition, rec.offset, type(exc).__name__
                )
                metrics.EVENTS.labels("unknown", "dlq").inc()
                error = InvalidEvent("processing_error", f"{type(exc).__name__}: {str(exc)[:200]}")
                await self.dead_letter(rec.raw, error, rec.topic, rec.partition, rec.offset)

    async def _apply(self, user: str, state: UserState, event: Event, source: SourceRecord) -> list[Event] | None:
        """Update ``state`` with ``event``. Returns the events applied (parked ones whose item
        arrived, then this one), ``[]`` when the event was parked, None when nothing changed."""
        if state.has_seen(event.event_id) or any(p["event_id"] == event.event_id for p in state.pending):
            metrics.EVENTS.labels(event.type, "duplicate").inc()
            return None
        assert event.item_id is not None  # Event requires it of every type but forget_user, handled by the caller
        vector = self.index.vector_of(event.item_id)
        if vector is None:
            if state.park(event.model_dump(exclude_none=True)):
                self.waiting_users[event.item_id].add(user.encode())
                metrics.PENDING_EVENTS.inc()
                metrics.EVENTS.labels(event.type, "pending_item").inc()
                return []
            else:  # kept in the DLQ rather than silently dropped
                metrics.EVENTS.labels(event.type, "dlq").inc()
                error = InvalidEvent(
                    "pending_overflow",
                    f"item {event.item_id!r} unknown and the user's "
                    f"pending buffer is full ({state.pending_limit} events)",
                )
                await self.dead_letter(source.raw, error, source.topic, source.partition, source.offset)
            return None
        applied = self._apply_pending(state)
        if state.last_recommended:
            self._check_hit(event.item_id in state.last_recommended)
        self._learn(state, event, vector)
        self._drifted(self.drift.observe_item(vector))
        metrics.EVENTS.labels(event.type, "processed").inc()
        return [*applied, event]

    def _read_reviews(self, events: list[Event]) -> None:
        """Embed the texts of the reviews among ``events`` (one encoder call), for :meth:`_learn`."""
        reviews = [e for e in events if e.type == "review" and e.text and e.event_id not in self._read]
        if self.reviews is None or not reviews:
            return
        read = self.reviews.read([cast(str, e.text) for e in reviews], [e.value for e in reviews])
        self._read.update(zip((e.event_id for e in reviews), read, strict=True))

    def _learn(self, state: UserState, event: Event, vector: np.ndarray) -> None:
        """One event into the state; a review's text moves the vector too, by its stars or by
        the stars its text reads as."""
        assert event.item_id is not None  # every type but forget_user names an item
        read = self._read.pop(event.event_id, None)
        value = event.value if read is None else read.stars
        text_vector = None if read is None else read.vector
        state.learn(event.event_id, event.item_id, event.type, value, event.ts, vector, text_vector)

    def _check_hit(self, hit: bool) -> None:
        """Was the user's item in the list last served to them? Counted, and a rolling rate."""
        metrics.ONLINE_HIT_CHECKS.labels(str(hit).lower()).inc()
        self._drifted(self.drift.observe_hit(hit))

    def _drifted(self, detection: Detection | None) -> None:
        if detection is not None:
            metrics.DRIFT_DETECTED.labels(detection.detector).inc()
            self._detections.append(detection)

    async def _report_drift(self) -> None:
        """After a batch: the rolling hit rate and drift statistics to the gauges (once per batch,
        not per event), detections to the learner."""
        hit_rate = self.drift.online_hit_rate
        if hit_rate == hit_rate:  # NaN before the first hit check
            metrics.ONLINE_HIT_RATE.labels(str(self.settings.k)).set(hit_rate)
        for detector, value in self.drift.statistics().items():
            if value == value:  # NaN until the detector has seen data
                metrics.DRIFT_STATISTIC.labels(detector).set(value)
        detections, self._detections = self._detections, []
        for detection in detections:
            log.warning(
                "drift detected by %s after %d observations (statistic %.4f)",
                detection.detector,
                detection.n,
                detection.statistic,
            )
            if self.signal_drift is not None:
                await self.signal_drift(detection)

    def _apply_pending(self, state: UserState) -> list[Event]:
        """Apply parked events whose items are now known; return them."""
        applied = []
        still = []
        for parked in state.pending:
            vector = self.index.vector_of(parked["item_id"])
            if vector is None:
                still.append(parked)
                continue
            event = Event.model_validate(parked)
            self._read_reviews([event])
            self._learn(state, event, vector)
            metrics.PENDING_EVENTS.dec()
            metrics.EVENTS.labels(event.type, "processed").inc()
            applied.append(event)
        state.pending = still
        return applied

    async def _publish_lists(self, to_score: list[tuple[str, UserState, list[Event]]]) -> None:
        if not to_score:
            return
        lists = self.recommender.recommend([state for _, state, _ in to_score], self.settings.k)
        for (user, state, applied), scored in zip(to_score, lists, strict=True):
            state.last_recommended = [s.item_id for s in scored]
            if scored:
                self._drifted(self.drift.observe_scores([s.score for s in scored]))
            trigger = applied[-1]
            published = now_ms()
            rec = encode_recommendation(
                user,
                [(s.item_id, round(s.score, 6), list(s.reasons)) for s in scored],
                self.model_version,
                trigger.event_id,
                trigger.ts,
                published,
                self.settings.k,
            )
            await self.publish(user.encode(), rec)
            metrics.RECOMMENDATIONS_PUBLISHED.inc()
            for event in applied:
                metrics.EVENT_TO_RECOMMENDATION.observe(max(0.0, (published - event.ts) / 1000.0))

    def own(self, owned: Iterable[bytes], now: float | None = None) -> None:
        """After a rebalance: ``owned`` are the users of this worker's partitions now. Newly owned
        users start their idle clock now and their parked events wait for their items again;
        users who moved to another worker are forgotten here (their state lives on there)."""
        now = time.monotonic() if now is None else now
        owned = set(owned)
        for key in [k for k in self.last_active if k not in owned]:
            del self.last_active[key]
            self._cache.pop(key, None)
        new = owned.difference(self.last_active)
        for key in new:
            self.last_active[key] = now
            self.last_active.move_to_end(key, last=False)
        metrics.USERS_IN_STATE.set(len(self.last_active))
        self._unscanned = (self._unscanned & owned) | new
        for item_id, users in list(self.waiting_users.items()):
            users &= owned
            if not users:
                del self.waiting_users[item_id]

    def expire_idle(self, now: float | None = None) -> int:
        """Drop users idle for longer than ``settings.user_ttl_s`` from the table (its changelog
        gets a tombstone, so memory stays bounded by the active users); returns how many.
        Only owned users expire: those this worker saved or was given by :meth:`own`."""
        ttl = self.settings.user_ttl_s
        if not ttl:
            return 0
        now = time.monotonic() if now is None else now
        idle = []
        for key, seen in self.last_active.items():  # oldest first: stop at the first active user
            if now - seen <= ttl:
                break
            idle.append(key)
        for key in idle:
            del self.last_active[key]
            self._cache.pop(key, None)
            if key in self.table:
                del self.table[key]
        if idle:
            metrics.USERS_EXPIRED.inc(len(idle))
            metrics.USERS_IN_STATE.set(len(self.last_active))
        return len(idle)

    async def _forget(self, key: bytes, event: Event) -> None:
        self.last_active.pop(key, None)
        self._cache.pop(key, None)
        if key in self.table:
            del self.table[key]
        await self.publish(key, None)  # tombstone: the compacted topic forgets the list too
        metrics.EVENTS.labels(event.type, "forgotten").inc()

    def _scorer(self, index: ItemIndex, cf, trending, buy_again=None) -> HybridScorer:
        return HybridScorer(
            index,
            cf,
            trending,
            self.weights,
            policy=self.settings.serving_policy(),
            sizes=self.settings.candidate_sizes(),
            buy_again=buy_again,
        )

    def prepare_global_models(self, verified: VerifiedVersion) -> tuple[str, int, HybridScorer]:
        """Lay a snapshot out in this worker's item rows (CPU work: run it off the event loop)."""
        try:
            snapshot = GlobalSnapshot.from_bytes(verified.files["global.npz"])
        except (KeyError, ValueError, OSError) as exc:
            raise SnapshotError("corrupt", f"{verified.version}: unreadable snapshot ({exc})") from None
        ids = [info.item_id for info in self.index.infos]
        categories = [info.category for info in self.index.infos]
        cf, trending = snapshot.for_items(ids, categories)
        buy_again = snapshot.buy_again_for(ids, categories)
        recommender = self._scorer(self.index, cf, trending, buy_again)
        return verified.version, verified.manifest.created_ts, recommender

    def use_global_models(self, prepared: tuple[str, int, HybridScorer]) -> None:
        """Swap to prepared global models: one assignment, between two batches."""
        self.global_version, _, recommender = prepared
        recommender.index = self.index  # an adapter may have been promoted meanwhile: same rows
        self.recommender = recommender
        self.drift.scores = ScoreDrift()  # new scores, new scale: not a drift of the users

    def use_space(self, version: str, index: ItemIndex) -> None:
        """Serve from ``index`` (the catalogue embedded by adapter ``version``, same rows): each
        user's vector is rebuilt from their history in the new space when next loaded."""
        self.index = index
        old = self.recommender
        self.recommender = self._scorer(index, old.cf, old.trending, old.buy_again)
        self.space = version
        self._cache.clear()
        self.drift.scores, self.drift.centroid = ScoreDrift(), CentroidShift()  # a new space is no drift

    # -- late items ----------------------------------------------------------------------
    async def on_new_items(self, item_ids: list[str]) -> None:
        """Apply events that were waiting for these items and refresh those users' lists."""
        if not self._started:  # the first batch applies what it can; the table may still recover
            return
        for key in self._unscanned:  # users recovered from the changelog: find their parked events
            stored = self.table.get(key)
            for parked in [] if stored is None else UserState.from_bytes(stored).pending:
                self.waiting_users[parked["item_id"]].add(key)
        self._unscanned.clear()
        users = set()
        for item_id in item_ids:
            users |= self.waiting_users.pop(item_id, set())
        to_score = []
        for key in users:
            raw = self.table.get(key)
            if raw is None:
                continue
            state = self._load(key)
            applied = self._apply_pending(state)
            if applied:
                to_score.append((key.decode(), state, applied))
        await self._publish_lists(to_score)
        for user, state, _ in to_score:
            self._save(user.encode(), state)
