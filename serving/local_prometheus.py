"""A local Prometheus (the Debian binary) configured from ops/prometheus/ against this
machine's ports, for the demo and the dashboard test."""

from __future__ import annotations

import json
import math
import shutil
import time
import urllib.parse
from pathlib import Path

import yaml
from rich.console import Console

from stream.broker import free_port
from stream.process import ChildProcess, http_get

OPS_PROMETHEUS = Path(__file__).resolve().parent.parent / "ops" / "prometheus"


def prometheus_config(ops_config: dict, ports: dict[str, int], rules_dir: Path, interval: str = "1s") -> dict:
    """ops/prometheus/prometheus.yml pointed at this machine's processes: job ``name`` scrapes
    127.0.0.1:``ports[name]`` (a job without a port is left out), rule files are found in
    ``rules_dir``, and scrapes and rules run every ``interval`` (a demo lasts minutes).

    >>> ops = {"global": {"scrape_interval": "5s"}, "rule_files": ["alerts.yml"], "scrape_configs": [
    ...     {"job_name": "streamrec-worker", "static_configs": [{"targets": ["127.0.0.1:9108"]}]},
    ...     {"job_name": "streamrec-api", "static_configs": [{"targets": ["127.0.0.1:8000"]}]}]}
    >>> config = prometheus_config(ops, {"streamrec-worker": 41234}, Path("/repo/ops/prometheus"))
    >>> config["rule_files"], config["global"]["scrape_interval"]
    (['/repo/ops/prometheus/alerts.yml'], '1s')
    >>> config["scrape_configs"]
    [{'job_name': 'streamrec-worker', 'static_configs': [{'targets': ['127.0.0.1:41234']}]}]
    """
    return {
        **ops_config,
        "global": {**ops_config.get("global", {}), "scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(rules_dir / name) for name in ops_config.get("rule_files", [])],
        "scrape_configs": [
            {**job, "static_configs": [{"targets": [f"127.0.0.1:{ports[job['job_name']]}"]}]}
            for job in ops_config["scrape_configs"]
            if job["job_name"] in ports
        ],
    }


class LocalPrometheus:
    """The ``prometheus`` binary on a free loopback port, with the jobs and alert rules of
    ops/prometheus/ pointed at ``ports`` (job name -> metrics port); data and log in ``work_dir``."""

    def __init__(self, binary: str, work_dir: Path, ports: dict[str, int]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        work_dir.mkdir(parents=True, exist_ok=True)
        ops_config = yaml.safe_load((OPS_PROMETHEUS / "prometheus.yml").read_text())
        config_path = work_dir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(prometheus_config(ops_config, ports, OPS_PROMETHEUS), sort_keys=False))
        self.child = ChildProcess(
            "prometheus",
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={work_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            work_dir / "prometheus.log",
        )

    def start(self, timeout_s: float = 60.0) -> None:
        self.child.start()
        self.child.wait_ok(f"{self.url}/-/ready", timeout_s)

    def stop(self) -> None:
        self.child.stop()

    def api(self, path: str, **params: str):
        status, body = http_get(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}")
        answer = json.loads(body)
        if status != 200:
            raise RuntimeError(f"prometheus {path} {params}: {answer.get('error', status)}")
        return answer["data"]

    def value(self, expr: str) -> float | None:
        """The value of an instant query that yields one series (None: no series, or NaN)."""
        result = self.api("query", query=expr)["result"]
        value = float(result[0]["value"][1]) if result else math.nan
        return None if math.isnan(value) else value

    def readings(self, window_s: float, events: int, timeout_s: float = 30.0) -> dict:
        """Key series over the last ``window_s`` seconds (the replay), once a scrape has seen all
        ``events``: events/s the workers took in (``streamrec_batch_events_sum``, a series that
        exists from the worker's start, so a short replay is counted from its first event), p99
        event-to-recommendation latency, the worker's online hit rate over its last 1,000 checks,
        and the alert rules with the alerts pending or firing."""
        deadline = time.monotonic() + timeout_s
        while (self.value("sum(streamrec_batch_events_sum)") or 0) < events and time.monotonic() < deadline:
            time.sleep(0.5)
        window = f"{max(math.ceil(window_s), 5)}s"
        events_per_s = self.value(f"sum(rate(streamrec_batch_events_sum[{window}]))")
        p99 = self.value(
            f"histogram_quantile(0.99, sum by (le) (rate(streamrec_event_to_recommendation_seconds_bucket[{window}])))"
        )
        hit_rate = self.value("avg(streamrec_online_hit_rate)")
        rules = [r for g in self.api("rules")["groups"] for r in g["rules"] if r["type"] == "alerting"]
        return {
            "window": window,
            "events_per_s": None if events_per_s is None else round(events_per_s, 1),
            "latency_p99_ms": None if p99 is None else round(p99 * 1000, 1),
            "online_hit_rate_at_10": None if hit_rate is None else round(hit_rate, 4),
            "alert_rules": len(rules),
            "alerts": {a["labels"]["alertname"]: a["state"] for a in self.api("alerts")["alerts"]},
        }


def start_prometheus(console: Console, work_dir: Path, ports: dict[str, int]) -> LocalPrometheus | None:
    """A started :class:`LocalPrometheus`, or None (said why) when it cannot run here."""
    binary = shutil.which("prometheus")
    if binary is None:
        console.print(
            "[yellow]--prometheus: no `prometheus` binary on PATH. Install it with `make ops-tools` or "
            "`apt-get install prometheus`; the demo goes on without it.[/]"
        )
        return None
    if not (OPS_PROMETHEUS / "prometheus.yml").is_file():
        console.print(
            f"[yellow]--prometheus: {OPS_PROMETHEUS / 'prometheus.yml'} is missing (run the demo from a "
            "checkout of the repository); the demo goes on without Prometheus.[/]"
        )
        return None
    prometheus = LocalPrometheus(binary, work_dir, ports)
    try:
        with console.status("starting Prometheus"):
            prometheus.start()
    except (RuntimeError, TimeoutError) as err:
        prometheus.stop()
        console.print(f"[yellow]--prometheus: {err}; the demo goes on without it.[/]")
        return None
    return prometheus
