"""Following ``model-updates``: every process that serves or trains swaps to the newest usable
announced model version of each kind.

Two kinds of versions are announced (the manifest's ``kind``): ``global`` (the learner's CF
and trending snapshot) and ``adapter`` (a fine-tuned LoRA adapter with the catalogue embedded
by it). A version is used only after :func:`load_announced` verified its checksums and its
kind's ``prepare`` accepted it; :func:`newest_usable` walks back from the newest announcement
until one is. :class:`ModelUpdates` does that for a :class:`~stream.kafka.follow.TopicFollower`
(the worker, the API); the learner calls :func:`newest_usable` on its own reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from stream import metrics
from stream.model_store import Manifest, ModelStore, SnapshotError
from stream.schemas import parse_json_object

log = logging.getLogger(__name__)


@dataclass
class VerifiedVersion:
    """An announced version whose manifest and files passed their checksums."""

    version: str
    kind: str
    manifest: Manifest
    files: dict[str, bytes]


def load_announced(announcement: dict) -> VerifiedVersion:
    """Fetch and verify an announced version: the manifest's sha256 must match the
    announcement, every artefact its manifest entry. Raises :class:`SnapshotError`."""
    try:
        root, version = announcement["uri"].rstrip("/").rsplit("/", 1)
        expected = announcement["sha256"]
    except (KeyError, ValueError, AttributeError, TypeError):
        raise SnapshotError("corrupt", f"announcement lacks uri / sha256: {announcement!r:.200}") from None
    store = ModelStore(root)
    manifest_sha = store.manifest_sha256(version) if store.fs.exists(f"{store.root}/{version}/manifest.json") else None
    if manifest_sha is None:
        raise SnapshotError("missing", f"{announcement['uri']} has no manifest")
    if manifest_sha != expected:
        raise SnapshotError("corrupt", f"{announcement['uri']}: manifest sha256 differs from the announcement")
    manifest = store.manifest(version)
    return VerifiedVersion(version, manifest.kind, manifest, store.load(version))


def announcement_kind(announcement: dict) -> str:
    """The kind an announcement claims (older announcements carry none: global)."""
    return str(announcement.get("kind", "global"))


def newest_usable(
    announcements: Sequence[dict], prepare: Callable[[VerifiedVersion], Any]
) -> tuple[VerifiedVersion, Any] | None:
    """The newest announcement (last in ``announcements``) that verifies and that ``prepare``
    accepts, with what ``prepare`` made of it; each refused one is counted in
    ``streamrec_model_swaps_total{outcome}`` and logged: the caller keeps what it serves."""
    for announcement in reversed(announcements):
        try:
            verified = load_announced(announcement)
            return verified, prepare(verified)
        except SnapshotError as err:
            metrics.MODEL_SWAPS.labels(err.reason).inc()
            log.error("model update refused, still serving the previous model: %s", err)
        except (ValueError, TypeError, KeyError, OSError) as err:
            metrics.MODEL_SWAPS.labels("corrupt").inc()
            log.error("unreadable model update, still serving the previous model: %s", err)
    return None


#: kind -> (prepare: VerifiedVersion -> prepared, off the event loop, may raise SnapshotError;
#: apply: prepared -> None, on it)
Handlers = dict[str, tuple[Callable[[VerifiedVersion], Any], Callable[[Any], None]]]


class ModelUpdates:
    """The :class:`~stream.kafka.follow.TopicHandler` of ``model-updates``: of the announcements
    made before the follower caught up, the newest usable one of each kind is applied; after
    that, the newest usable one of each kind in every batch. Kinds in ``ignore`` are skipped
    (the API serves no adapter); any other kind without a handler is refused as incompatible."""

    def __init__(self, handlers: Handlers, ignore: Sequence[str] = ()) -> None:
        self.handlers = handlers
        self.ignore = set(ignore)
        self._backlog: dict[str, list[dict]] = {}
        self._live = False

    async def apply(self, records) -> None:
        by_kind: dict[str, list[dict]] = {}
        for record in records:
            announcement = parse_json_object(record.value)
            if announcement is None:
                metrics.MODEL_SWAPS.labels("corrupt").inc()
                log.error(
                    "unreadable model announcement at %s[%d]@%d skipped", record.topic, record.partition, record.offset
                )
            elif announcement_kind(announcement) not in self.ignore:
                by_kind.setdefault(announcement_kind(announcement), []).append(announcement)
        for kind, announcements in by_kind.items():
            if self._live:
                await self._swap(kind, announcements)
            else:
                self._backlog.setdefault(kind, []).extend(announcements)

    async def caught_up(self) -> None:
        self._live = True
        backlog, self._backlog = self._backlog, {}
        for kind, announcements in backlog.items():
            await self._swap(kind, announcements)

    async def _swap(self, kind: str, announcements: list[dict]) -> None:
        if kind not in self.handlers:
            metrics.MODEL_SWAPS.labels("incompatible").inc(len(announcements))
            log.error("model update refused: %d version(s) of unknown kind %r", len(announcements), kind)
            return
        prepare, apply = self.handlers[kind]
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(None, newest_usable, announcements, prepare)
        if found is None:
            return
        verified, prepared = found
        apply(prepared)
        metrics.MODEL_SWAPS.labels("ok").inc()
        metrics.record_model_version(verified.kind, verified.version, verified.manifest.created_ts)
        log.info("now serving %s model %s", verified.kind, verified.version)
