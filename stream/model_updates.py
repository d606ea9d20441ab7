"""Workers follow ``model-updates`` and swap to each announced global-model version."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from model.global_snapshot import GlobalSnapshot
from stream import metrics
from stream.model_store import ModelStore, SnapshotError
from stream.topic_reader import open_from_start

log = logging.getLogger(__name__)


def load_announced(announcement: dict) -> tuple[str, GlobalSnapshot]:
    """Fetch and verify an announced snapshot: the manifest's sha256 must match the
    announcement, every artefact its manifest entry. Raises :class:`SnapshotError`."""
    try:
        root, version = announcement["uri"].rstrip("/").rsplit("/", 1)
        expected = announcement["sha256"]
    except (KeyError, ValueError, AttributeError):
        raise SnapshotError("corrupt", f"announcement lacks uri / sha256: {announcement!r:.200}") from None
    store = ModelStore(root)
    manifest_sha = store.manifest_sha256(version) if store.fs.exists(f"{store.root}/{version}/manifest.json") else None
    if manifest_sha is None:
        raise SnapshotError("missing", f"{announcement['uri']} has no manifest")
    if manifest_sha != expected:
        raise SnapshotError("corrupt", f"{announcement['uri']}: manifest sha256 differs from the announcement")
    files = store.load(version)
    try:
        return version, GlobalSnapshot.from_bytes(files["global.npz"])
    except (KeyError, ValueError, OSError) as exc:
        raise SnapshotError("corrupt", f"{announcement['uri']}: unreadable snapshot ({exc})") from None


class ModelFollower:
    """Reads ``model-updates`` from the start: of the announcements made before the worker
    started, the newest usable one is applied; after that each new one is tried. Each verified
    snapshot goes through ``prepare`` (off the event loop) and then ``apply`` (on it). A
    missing or corrupt version is counted and skipped: the worker keeps serving what it has."""

    def __init__(self, bootstrap: str, topic: str, prepare: Callable[[str, GlobalSnapshot], object],
                 apply: Callable[[object], None]) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.prepare = prepare
        self.apply = apply

    async def run(self) -> None:
        consumer, tps = await open_from_start(self.bootstrap, self.topic, retry_s=1.0)
        try:
            end = await consumer.end_offsets(tps)
            backlog = []  # announcements made before this worker started: newest usable wins
            while any([await consumer.position(tp) < end[tp] for tp in tps]):
                batch = await consumer.getmany(timeout_ms=1000)
                backlog += [r.value for rs in batch.values() for r in rs]
            for raw in reversed(backlog):
                if await self._swap(raw):
                    break
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                records = [r for rs in batch.values() for r in rs]
                if records:
                    await self._swap(records[-1].value)
                else:
                    await asyncio.sleep(0.2)
        finally:
            await consumer.stop()

    async def _swap(self, raw: bytes) -> bool:
        loop = asyncio.get_running_loop()
        try:
            announcement = json.loads(raw)
            version, snapshot = await loop.run_in_executor(None, load_announced, announcement)
            prepared = await loop.run_in_executor(None, self.prepare, version, snapshot)
        except SnapshotError as err:
            metrics.MODEL_SWAPS.labels(err.reason).inc()
            log.error("model update refused, still serving the previous model: %s", err)
            return False
        except (ValueError, TypeError) as err:
            metrics.MODEL_SWAPS.labels("corrupt").inc()
            log.error("unreadable model announcement, still serving the previous model: %s", err)
            return False
        self.apply(prepared)
        metrics.MODEL_SWAPS.labels("ok").inc()
        log.info("now serving global models %s", version)
        return True
