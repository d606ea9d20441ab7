"""Versioned, checksummed model snapshots in a directory or any fsspec URI (s3://, gs://, ...).

Layout: ``<root>/<version>/<file>`` for each artefact and ``<root>/<version>/manifest.json``
with the sha256 of every artefact, written last: a version without a manifest is incomplete.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, field

import fsspec


class SnapshotError(RuntimeError):
    """A version that cannot be used; ``reason`` is a short label (missing, corrupt)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass
class Manifest:
    version: str
    created_ts: int
    files: dict[str, str]  # name -> sha256
    metrics: dict = field(default_factory=dict)
    kind: str = "global"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ModelStore:
    """Save and load model versions.

    >>> import tempfile
    >>> store = ModelStore(tempfile.mkdtemp())
    >>> manifest = store.save({"weights.bin": b"abc"}, metrics={"events": 3})
    >>> store.load(manifest.version)["weights.bin"], store.versions() == [manifest.version]
    (b'abc', True)
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.fs, self.root = fsspec.core.url_to_fs(uri)
        self.fs.makedirs(self.root, exist_ok=True)

    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def new_version(self) -> str:
        """Sortable, unique enough for one learner: milliseconds since epoch, zero-padded."""
        version = f"{int(time.time() * 1000):015d}"
        while self.fs.exists(self._path(version)):
            version = f"{int(version) + 1:015d}"
        return version

    def save(self, files: dict[str, bytes], metrics: dict | None = None, kind: str = "global") -> Manifest:
        version = self.new_version()
        self.fs.makedirs(self._path(version), exist_ok=True)
        for name, data in files.items():
            with self.fs.open(self._path(version, name), "wb") as f:
                f.write(data)
        manifest = Manifest(
            version, int(time.time() * 1000), {n: sha256(d) for n, d in files.items()}, metrics or {}, kind
        )
        # The manifest last, whole or not at all (a rename; one PUT on object stores): a reader never
        # sees a half-written one, and a version without it does not exist.
        with self.fs.open(self._path(version, "manifest.json.partial"), "wb") as f:
            f.write(manifest.to_json())
        self.fs.mv(self._path(version, "manifest.json.partial"), self._path(version, "manifest.json"))
        return manifest

    def manifest(self, version: str) -> Manifest:
        try:
            with self.fs.open(self._path(version, "manifest.json"), "rb") as f:
                return Manifest(**json.loads(f.read()))
        except FileNotFoundError:
            raise SnapshotError("missing", f"version {version} has no manifest in {self.uri}") from None
        except (ValueError, TypeError) as exc:
            raise SnapshotError("corrupt", f"manifest of {version} unreadable: {exc}") from None

    def manifest_sha256(self, version: str) -> str:
        with self.fs.open(self._path(version, "manifest.json"), "rb") as f:
            return sha256(f.read())

    def load(self, version: str) -> dict[str, bytes]:
        """Every artefact of ``version``, each checked against its manifest sha256."""
        manifest = self.manifest(version)
        out = {}
        for name, expected in manifest.files.items():
            try:
                with self.fs.open(self._path(version, name), "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                raise SnapshotError("missing", f"{version}/{name} is missing") from None
            if sha256(data) != expected:
                raise SnapshotError("corrupt", f"{version}/{name}: sha256 mismatch")
            out[name] = data
        return out

    def prune(self, keep: int, protect: Collection[str] = frozenset(), kind: str | None = None) -> list[str]:
        """Delete all but the newest ``keep`` versions of each kind (global snapshots, adapters,
        learner checkpoints; only ``kind`` when given), sparing those in ``protect``; returns the
        deleted ones."""
        by_kind: dict[str, list[str]] = {}
        for version in self.versions():
            try:
                found = self.manifest(version).kind
            except SnapshotError:
                found = "unreadable"
            if kind is None or found == kind:
                by_kind.setdefault(found, []).append(version)
        doomed = [
            v for versions in by_kind.values() for v in (versions[:-keep] if keep > 0 else []) if v not in protect
        ]
        for version in doomed:
            self.fs.rm(self._path(version), recursive=True)
        return doomed

    def versions(self) -> list[str]:
        """Complete versions (with a manifest), oldest first."""
        if not self.fs.exists(self.root):
            return []
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False)]
        return sorted(n for n in names if self.fs.exists(self._path(n, "manifest.json")))
