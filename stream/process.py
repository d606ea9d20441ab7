"""Child processes for the demo, tests and benchmarks: :class:`ChildProcess` runs any command
with its output in a log file; :class:`StreamProcess` is a worker or the learner
(``python -m stream.worker`` / ``python -m stream.learner``) configured by ``Settings``;
:func:`stop_on_signals` makes a process stop itself and its children on SIGTERM or SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import cast

from stream.config import Settings
from stream.metrics import Samples, metric_sum, scrape


def http_get(url: str, headers: dict | None = None, timeout_s: float = 5.0) -> tuple[int, bytes]:
    """Status and body of a GET (an HTTP error status is an answer too; no answer raises OSError)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout_s) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def stop_on_signals() -> None:
    """SIGTERM (what systemd, supervisord and Docker send) and SIGINT raise KeyboardInterrupt in
    the main thread, so the ``finally`` blocks that stop this process's children run. Installed
    explicitly because a shell starts a background job with SIGINT ignored, and Python keeps an
    ignored SIGINT ignored. Later signals are ignored while the process cleans up (each of its
    stops is bounded, ending in SIGKILL)."""

    def interrupt(signum: int, frame) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, interrupt)


class ChildProcess:
    """``command`` as a child process with its output appended to ``log_path``; stopped with
    SIGTERM, then SIGKILL."""

    def __init__(self, name: str, command: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.command = command
        self.log_path = log_path
        self.env = env
        self.process: subprocess.Popen | None = None

    def start(self) -> ChildProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def peak_rss_mb(self) -> float | None:
        """The process's peak resident memory (VmHWM), None once it is gone."""
        if self.process is None:  # never started
            return None
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except (OSError, AttributeError):
            return None
        return None

    def wait_ok(self, url: str, timeout_s: float) -> None:
        """Block until GET ``url`` answers 200."""
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.alive():
                # the process was started (None would fail here as before: AttributeError)
                raise RuntimeError(
                    f"{self.name} exited with {cast(subprocess.Popen, self.process).returncode}; see {self.log_path}"
                )
            try:
                if http_get(url, timeout_s=2)[0] == 200:
                    return
            except OSError:  # not listening yet
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: {url} not 200 after {timeout_s:.0f}s; see {self.log_path}")
            time.sleep(0.25)

    def kill(self) -> None:
        """SIGKILL: a crash, no clean shutdown."""
        if self.alive():
            assert self.process is not None  # alive() implies started
            self.process.kill()
            self.process.wait()

    def stop(self, timeout_s: float = 20.0) -> None:
        if not self.alive():
            return
        assert self.process is not None  # alive() implies started
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class StreamProcess(ChildProcess):
    """``python -m <module>`` (``stream.worker``: a worker; ``stream.learner``: the learner) as a
    child process, configured through the STREAMREC_* variables of ``settings``."""

    def __init__(self, settings: Settings, log_path: Path, module: str = "stream.worker") -> None:
        env = {**os.environ, **settings.env()}
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("PYTHONUNBUFFERED", "1")  # the log survives a kill -9
        super().__init__(module.removeprefix("stream."), [sys.executable, "-m", module], log_path, env)
        self.settings = settings
        self.module = module

    @property
    def metrics_port(self) -> int:
        return self.settings.learner_metrics_port if self.module == "stream.learner" else self.settings.metrics_port

    def wait_ready(self, items: int, timeout_s: float = 180.0) -> None:
        """Block until the metrics endpoint reports ``items`` servable items."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                # the process was started (None would fail here as before: AttributeError)
                raise RuntimeError(
                    f"worker exited with {cast(subprocess.Popen, self.process).returncode}; see {self.log_path}"
                )
            try:
                if metric_sum(scrape(self.metrics_port), "streamrec_items_indexed") >= items:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready with {items} items after {timeout_s:.0f}s; see {self.log_path}")

    def metrics(self) -> Samples:
        """This process's /metrics (the learner serves on ``learner_metrics_port``)."""
        return scrape(self.metrics_port)
