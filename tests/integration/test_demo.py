"""`streamrec demo` end to end on a short replay: its own broker, worker, learner and HTTP API (and
a local Prometheus when the binary is installed), with what it prints and summarises."""

from __future__ import annotations

import io
import json
import shutil
import socket
import urllib.parse

import pytest
import yaml
from rich.console import Console

from model.evaluation.datasets import load_ratings
from serving.demo import run_demo
from serving.local_prometheus import OPS_PROMETHEUS, start_prometheus

pytestmark = pytest.mark.integration

EVENTS = 300


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One demo run of the first 300 ratings, paced at 100 events/s so that Prometheus (when
    installed) scrapes the replay a few times; yields (summary, printed output, JSON file)."""
    tmp = tmp_path_factory.mktemp("demo")
    out = io.StringIO()
    summary = run_demo(
        events=EVENTS,
        rate=100,
        json_summary=tmp / "summary.json",
        work_dir=tmp / "run",
        with_prometheus=True,
        console=Console(file=out, width=240),
    )
    return summary, out.getvalue(), tmp / "summary.json"


def listening(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    with socket.socket() as s:
        return s.connect_ex((parts.hostname, parts.port)) == 0


def test_demo_replays_the_ratings_and_serves_a_real_users_list_through_the_api(demo):
    summary, output, json_path = demo
    assert summary["events_sent"] == EVENTS
    assert summary["events_processed"] == EVENTS
    assert summary["dlq"] == 0 and summary["duplicates"] == 0
    assert summary["recommendations_published"] > 0
    assert summary["recommendations_received"] == summary["recommendations_published"]
    assert summary["items_indexed"] == 1682

    check = summary["api_check"]
    assert summary["api_url"].startswith("http://127.0.0.1:")
    assert check["user_id"] in {r.user_id for r in load_ratings()[:EVENTS]}
    assert check["http_status"] == 200 and check["fallback"] is False
    assert len(check["items"]) == summary["k"] == 10
    assert check["same_as_topic"], "the API's list differs from the last one the worker published"
    assert f"GET /v1/users/{check['user_id']}/recommendations" in output
    assert json.loads(json_path.read_text()) == summary


def test_demo_prints_where_the_metrics_are_and_stops_every_process(demo):
    summary, output, _ = demo
    urls = summary["metrics_urls"]
    assert set(urls) == {"worker", "learner", "api"}
    assert urls["api"] == summary["api_url"] + "/metrics"
    startup = output.split("replaying ratings")[0]
    assert all(url in startup for url in urls.values()), startup
    assert "read key" in startup
    servers = [*urls.values(), *([summary["prometheus_url"]] if summary.get("prometheus_url") else [])]
    assert not any(listening(url) for url in servers), "a process of the demo is still listening"


def test_demo_with_prometheus_reads_the_key_series_back(demo):
    if shutil.which("prometheus") is None:
        pytest.skip(
            "the `prometheus` binary is not installed (`make ops-tools` or `apt-get install prometheus`); "
            "the demo ran without it"
        )
    summary, output, _ = demo
    readings = summary["prometheus"]
    assert readings is not None, output
    assert summary["prometheus_url"] in output
    assert readings["events_per_s"] > 0
    assert readings["latency_p99_ms"] > 0
    assert 0 <= readings["online_hit_rate_at_10"] <= 1
    rules = yaml.safe_load((OPS_PROMETHEUS / "alerts.yml").read_text())
    assert readings["alert_rules"] == sum(len(g["rules"]) for g in rules["groups"])


def test_prometheus_missing_says_how_to_install_it_and_the_demo_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no prometheus binary here
    out = io.StringIO()
    assert start_prometheus(Console(file=out, width=240), tmp_path / "prometheus", {"streamrec-worker": 1}) is None
    message = out.getvalue()
    assert "make ops-tools" in message and "apt-get install prometheus" in message
    assert "goes on without it" in message
