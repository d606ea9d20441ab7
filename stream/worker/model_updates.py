"""Workers follow ``model-updates`` and swap to each announced model version.

Two kinds of versions are announced (the manifest's ``kind``): ``global`` (the learner's CF
and trending snapshot) and ``adapter`` (a fine-tuned LoRA adapter with the catalogue embedded
by it). Each kind is followed on its own: the newest usable version of each wins.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from stream import metrics
from stream.kafka.follow import open_from_start
from stream.model_store import Manifest, ModelStore, SnapshotError

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
    return str(announcement.get("kind", "global")) if isinstance(announcement, dict) else "global"


#: kind -> (prepare: VerifiedVersion -> prepared, off the event loop; apply: prepared -> None, on it)
Handlers = dict[str, tuple[Callable[[VerifiedVersion], object], Callable[[object], None]]]


class ModelFollower:
    """Reads ``model-updates`` from the start: of the announcements made before the worker
    started, the newest usable one of each kind is applied; after that each new one is tried.
    Each verified version goes through its kind's ``prepare`` (off the event loop, may raise
    :class:`SnapshotError`) and then ``apply`` (on it). A missing, corrupt or incompatible
    version is counted and skipped: the worker keeps serving what it has."""

    def __init__(self, client_config: dict, topic: str, handlers: Handlers) -> None:
        self.client_config = client_config
        self.topic = topic
        self.handlers = handlers

    async def run(self) -> None:
        consumer, tps = await open_from_start(self.client_config, self.topic, retry_s=1.0)
        try:
            end = await consumer.end_offsets(tps)
            backlog: dict[str, list[bytes]] = {}  # made before this worker started: newest usable wins
            while any([await consumer.position(tp) < end[tp] for tp in tps]):
                batch = await consumer.getmany(timeout_ms=1000)
                for record in (r for rs in batch.values() for r in rs):
                    backlog.setdefault(_kind_of(record.value), []).append(record.value)
            for raws in backlog.values():
                for raw in reversed(raws):
                    if await self._swap(raw):
                        break
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                records = [r for rs in batch.values() for r in rs]
                latest = {_kind_of(r.value): r.value for r in records}
                for raw in latest.values():
                    await self._swap(raw)
                if not records:
                    await asyncio.sleep(0.2)
        finally:
            await consumer.stop()

    async def _swap(self, raw: bytes) -> bool:
        loop = asyncio.get_running_loop()
        try:
            announcement = json.loads(raw)
            verified = await loop.run_in_executor(None, load_announced, announcement)
            if verified.kind not in self.handlers:
                raise SnapshotError("incompatible", f"version {verified.version} is of unknown kind {verified.kind!r}")
            prepare, apply = self.handlers[verified.kind]
            prepared = await loop.run_in_executor(None, prepare, verified)
        except SnapshotError as err:
            metrics.MODEL_SWAPS.labels(err.reason).inc()
            log.error("model update refused, still serving the previous model: %s", err)
            return False
        except (ValueError, TypeError, KeyError) as err:
            metrics.MODEL_SWAPS.labels("corrupt").inc()
            log.error("unreadable model update, still serving the previous model: %s", err)
            return False
        apply(prepared)
        metrics.MODEL_SWAPS.labels("ok").inc()
        metrics.record_model_version(verified.kind, verified.version, verified.manifest.created_ts)
        log.info("now serving %s model %s", verified.kind, verified.version)
        return True


def _kind_of(raw: bytes) -> str:
    try:
        return announcement_kind(json.loads(raw))
    except (ValueError, TypeError):
        return "global"
