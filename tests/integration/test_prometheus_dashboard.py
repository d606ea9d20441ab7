"""Every query of the Grafana dashboard returns data from a real Prometheus (the Debian binary,
installed on first use) scraping a running worker, learner and API, and every alert rule
evaluates without error against their metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import yaml

from serving.sdk import EventProducer
from stream.broker import free_port
from stream.config import Settings
from tests.conftest import read_topic
from tests.integration.test_worker import has_trigger, publish_catalogue
from tests.ops.test_ops import PROMETHEUS_DIR, dashboard_exprs, require_tool

pytestmark = pytest.mark.integration

RATE_INTERVAL = "1m"  # what Grafana's $__rate_interval becomes here (scrapes every second)
READ_KEY = "dashboard-test-read-key"


def get_json(url: str, timeout_s: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.loads(response.read())


def http_status(url: str, headers: dict | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def wait_until(condition, timeout_s: float, pause_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(pause_s)
    return condition()


def process_env(settings: Settings, **extra: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    env.update({f"STREAMREC_{k.upper()}": str(v) for k, v in settings.model_dump().items() if v is not None})
    return env


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    return require_tool("prometheus", "prometheus")


@pytest.fixture
def api(settings, tmp_path):
    """`streamrec api` on a free loopback port; yields (port, log path, process)."""
    port = free_port()
    log_path = tmp_path / "api.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving.cli", "api"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=process_env(
                settings, STREAMREC_API_HOST="127.0.0.1", STREAMREC_API_PORT=str(port), STREAMREC_API_READ_KEYS=READ_KEY
            ),
        )
    yield port, log_path, process
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def prometheus(prometheus_binary, settings, api, tmp_path):
    """The Debian prometheus on a free loopback port, scraping worker, learner and API every second,
    with the alert rules of ops/; yields its base URL."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(PROMETHEUS_DIR / "alerts.yml")],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
            for job, port in [
                ("streamrec-worker", settings.metrics_port),
                ("streamrec-learner", settings.learner_metrics_port),
                ("streamrec-api", api[0]),
            ]
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "prometheus.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [
                prometheus_binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def ready() -> bool:
        try:
            return http_status(f"{url}/-/ready") == 200
        except OSError:
            return False

    try:
        assert wait_until(ready, 60), f"prometheus not ready; see {log_path}:\n{log_path.read_text()[-2000:]}"
        yield url
    finally:
        process.terminate()
        process.wait(20)


def instant_query(url: str, expr: str) -> list:
    query = urllib.parse.urlencode({"query": expr.replace("$__rate_interval", RATE_INTERVAL)})
    body = get_json(f"{url}/api/v1/query?{query}")
    assert body["status"] == "success", f"{expr}: {body}"
    return body["data"]["result"]


def target_health(url: str) -> dict[str, str]:
    return {
        t["labels"]["job"]: t["health"] + (f" ({t['lastError']})" if t["lastError"] else "")
        for t in get_json(f"{url}/api/v1/targets")["data"]["activeTargets"]
    }


def test_every_dashboard_query_returns_data_from_a_running_system(
    prometheus_binary, settings, start_worker, start_learner, api, prometheus
):
    assert all("$" not in expr.replace("$__rate_interval", "") for _, expr in dashboard_exprs())
    with EventProducer(settings) as producer:
        publish_catalogue(producer)
        start_worker(items=12)
        start_learner()
        api_port, api_log, api_process = api
        # First lists for three shoppers, then more events of theirs (online hit checks), a
        # redelivered event (duplicate) and a malformed one (DLQ).
        for wave, items in enumerate([("s1", "k1", "s4"), ("s2", "k2", "s5")]):
            for u, item in enumerate(items):
                producer.send(event_id=f"w{wave}-u{u}", user_id=f"shopper{u}", item_id=item, type="click")
            producer.flush()
            read_topic(settings, "recommendations", has_trigger(f"w{wave}-u2"))
        producer.send(event_id="w1-u2", user_id="shopper2", item_id="s5", type="click")
        producer.send_raw(b'{"event_id": "broken", "user_', key=b"shopper0")
        producer.flush()

    api_url = f"http://127.0.0.1:{api_port}"
    api_up = wait_until(lambda: api_process.poll() is None and http_status(f"{api_url}/healthz") == 200, 60)
    if api_up:
        for user in ("shopper0", "nobody"):
            http_status(f"{api_url}/v1/users/{user}/recommendations", {"Authorization": f"Bearer {READ_KEY}"})

    wait_until(lambda: all(h == "up" for h in target_health(prometheus).values()), 60)
    exprs = dashboard_exprs()
    empty: list[tuple[str, str]] = []

    def all_have_data() -> bool:
        empty[:] = [(title, expr) for title, expr in exprs if not instant_query(prometheus, expr)]
        return not empty

    wait_until(all_have_data, 60, pause_s=2)
    rules = [r for g in get_json(f"{prometheus}/api/v1/rules")["data"]["groups"] for r in g["rules"]]
    assert len(rules) >= 8, rules
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
    health = target_health(prometheus)
    api_note = "" if api_up else f"\nthe API never answered /healthz; its log:\n{api_log.read_text()[-1500:]}"
    assert not empty, (
        f"{len(empty)} of {len(exprs)} dashboard queries returned no data:\n"
        + "\n".join(f"  [{title}] {expr}" for title, expr in empty)
        + f"\nscrape targets: {health}{api_note}"
    )
