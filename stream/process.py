"""Stream services (worker, learner) as child processes, for the demo, tests and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from stream.config import Settings
from stream.metrics import Samples, metric_sum, scrape


class StreamProcess:
    """``python -m <module>`` (stream.worker.app: a worker; stream.learner.service: the learner) as a child
    process, configured through STREAMREC_* variables."""

    def __init__(self, settings: Settings, log_path: Path, module: str = "stream.worker") -> None:
        self.settings = settings
        self.log_path = log_path
        self.module = module
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = dict(os.environ)
        env.update(self.settings.env())
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("PYTHONUNBUFFERED", "1")  # the log survives a kill -9
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", self.module], env=env, stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def peak_rss_mb(self) -> float | None:
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except (OSError, AttributeError):
            return None
        return None

    def wait_ready(self, items: int, timeout_s: float = 180.0) -> None:
        """Block until the metrics endpoint reports ``items`` servable items."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"worker exited with {self.process.returncode}; see {self.log_path}")
            try:
                if metric_sum(scrape(self.settings.metrics_port), "streamrec_items_indexed") >= items:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready with {items} items after {timeout_s:.0f}s; see {self.log_path}")

    def metrics(self) -> Samples:
        """This process's /metrics (the learner serves on ``learner_metrics_port``)."""
        learner = self.module == "stream.learner"
        return scrape(self.settings.learner_metrics_port if learner else self.settings.metrics_port)

    def kill(self) -> None:
        """SIGKILL: a crash, no clean shutdown."""
        if self.alive():
            self.process.kill()
            self.process.wait()

    def stop(self, timeout_s: float = 20.0) -> None:
        if not self.alive():
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
