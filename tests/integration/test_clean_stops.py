"""Every streamrec process stops itself and every process it started on SIGTERM (what systemd,
supervisord and Docker send), and on SIGINT sent to its pid alone, also when it was started as a
shell's background job (which starts with SIGINT ignored)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from model.wheel_cache import cache_dir
from stream.broker import EmbeddedBroker, broker_answers, free_port
from stream.metrics import scrape
from stream.process import http_get

pytestmark = pytest.mark.integration

SIGNALS = [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGINT, id="SIGINT")]
STREAMREC = [sys.executable, "-m", "serving.cli"]


def descendants(pid: int) -> set[int]:
    """Every living process below ``pid``."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start_in_background(
    command: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    """As `command &` in a shell script starts it: SIGINT ignored."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )


def wait_for(condition, what: str, process: subprocess.Popen, log_path: Path, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, f"{what}: exited with {process.returncode}\n{log_path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:.0f} s\n{log_path.read_text()[-3000:]}"
        time.sleep(0.2)


def assert_stops_with_its_children(process: subprocess.Popen, sig: signal.Signals, log_path: Path) -> None:
    children = descendants(process.pid)
    process.send_signal(sig)  # to its pid alone, not its process group
    try:
        process.wait(timeout=40)
    except subprocess.TimeoutExpired:
        for pid in [process.pid, *children]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        pytest.fail(f"still running 40 s after {sig.name}\n{log_path.read_text()[-3000:]}")
    deadline = time.monotonic() + 10
    while (left := {pid for pid in children if alive(pid)}) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"{sig.name} left {len(left)} of its {len(children)} children running"


def answers(url: str) -> bool:
    try:
        return http_get(url, timeout_s=1)[0] == 200
    except OSError:
        return False


@pytest.mark.parametrize("sig", SIGNALS)
def test_the_broker_stops_its_broker_process_and_frees_port_and_data(sig, tmp_path):
    port, data_dir, log_path = free_port(), tmp_path / "broker", tmp_path / "broker.log"
    broker = start_in_background([*STREAMREC, "broker", "--port", str(port), "--data-dir", str(data_dir)], log_path)
    wait_for(lambda: broker_answers(f"127.0.0.1:{port}"), "broker", broker, log_path, timeout_s=60)
    assert descendants(broker.pid), "the embedded broker runs as a child process"
    assert_stops_with_its_children(broker, sig, log_path)
    with EmbeddedBroker(port=port, data_dir=data_dir) as again:  # the port and the data directory are free
        assert broker_answers(again.bootstrap)


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("module", ["stream.worker", "stream.learner"])
def test_a_worker_and_the_learner_stop(module, sig, settings, tmp_path):
    log_path = tmp_path / f"{module}.log"
    process = start_in_background([sys.executable, "-m", module], log_path, settings.env())
    port = settings.learner_metrics_port if module == "stream.learner" else settings.metrics_port

    def serving_metrics() -> bool:
        try:
            return bool(scrape(port))
        except OSError:
            return False

    wait_for(serving_metrics, module, process, log_path)
    time.sleep(2)  # consuming
    assert_stops_with_its_children(process, sig, log_path)


@pytest.mark.parametrize("sig", SIGNALS)
def test_the_api_stops(sig, settings, tmp_path):
    port, log_path = free_port(), tmp_path / "api.log"
    env = {**settings.env(), "STREAMREC_API_READ_KEYS": "clean-stop-read-key"}
    api = start_in_background([*STREAMREC, "api", "--port", str(port)], log_path, env)
    wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), "api", api, log_path)
    assert_stops_with_its_children(api, sig, log_path)


@pytest.mark.parametrize("sig", SIGNALS)
def test_the_demo_stops_the_broker_and_worker_it_started(sig, tmp_path):
    log_path = tmp_path / "demo.log"
    command = [*STREAMREC, "demo", "--events", "3000", "--no-api", "--no-learner"]
    env = {"STREAMREC_CACHE_DIR": str(cache_dir())}  # MovieLens from this checkout's cache
    demo = start_in_background(command, log_path, env, cwd=tmp_path)  # its work directory: ./.streamrec/demo

    def worker_started() -> bool:
        commands = []
        for pid in descendants(demo.pid):
            try:
                commands.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue
        return any("noida-db" in c for c in commands) and any("stream.worker" in c for c in commands)

    wait_for(worker_started, "demo", demo, log_path, timeout_s=180)
    assert_stops_with_its_children(demo, sig, log_path)
