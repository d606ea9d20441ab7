"""ops/ and docker-compose.yml: the deployment validates, the alert rules pass their promtool unit
tests, and every dashboard panel and alert queries metrics of the contract (stream/metrics.py).

promtool (Debian package `prometheus`) and docker-compose (Debian package `docker-compose`) are
installed with apt-get on first use; a test is skipped, saying why, only if that fails.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "ops" / "prometheus"
DASHBOARD = ROOT / "ops" / "grafana" / "dashboards" / "streamrec.json"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_GPU = ROOT / "ops" / "docker-compose.gpu.yml"

# The metric contract: name as exposed on /metrics -> (type, labels). Histograms also expose
# <name>_bucket (with le), <name>_sum and <name>_count.
CONTRACT: dict[str, tuple[str, frozenset[str]]] = {
    name: (kind, frozenset(labels))
    for name, kind, labels in [
        # worker
        ("streamrec_events_total", "counter", {"type", "outcome"}),
        ("streamrec_dlq_total", "counter", {"reason"}),
        ("streamrec_event_to_recommendation_seconds", "histogram", set()),
        ("streamrec_event_processing_seconds", "histogram", set()),
        ("streamrec_batch_processing_seconds", "histogram", set()),
        ("streamrec_batch_events", "histogram", set()),
        ("streamrec_recommendations_published_total", "counter", set()),
        ("streamrec_items_indexed", "gauge", set()),
        ("streamrec_pending_events", "gauge", set()),
        ("streamrec_users_in_state", "gauge", set()),
        ("streamrec_online_hit_checks_total", "counter", {"hit"}),
        ("streamrec_online_hit_rate", "gauge", {"k"}),
        ("streamrec_consumer_lag_records", "gauge", {"topic", "partition"}),
        ("streamrec_model_swaps_total", "counter", {"outcome"}),
        ("streamrec_model_version_info", "info", {"kind", "version"}),
        ("streamrec_model_created_timestamp_seconds", "gauge", {"kind"}),
        # learner
        ("streamrec_learner_events_total", "counter", set()),
        ("streamrec_learner_snapshots_total", "counter", set()),
        ("streamrec_finetune_seconds", "histogram", set()),
        ("streamrec_finetune_loss", "gauge", set()),
        ("streamrec_finetune_examples_total", "counter", set()),
        ("streamrec_finetune_cycles_total", "counter", {"outcome"}),
        ("streamrec_drift_detected_total", "counter", {"detector"}),
        ("streamrec_drift_statistic", "gauge", {"detector"}),
        # api
        ("streamrec_api_request_duration_seconds", "histogram", {"route", "method", "status"}),
        ("streamrec_api_view_users", "gauge", set()),
    ]
}
TARGET_LABELS = frozenset({"job", "instance"})  # added by Prometheus to every scraped series
JOBS = {"streamrec-worker", "streamrec-learner", "streamrec-api"}
REQUIRED_ALERTS = {
    "StreamrecConsumerLagGrowing",
    "StreamrecLatencyP99AboveSLO",
    "StreamrecDLQRateHigh",
    "StreamrecNoRecommendationsPublished",
    "StreamrecDriftDetected",
    "StreamrecFineTuneFailing",
    "StreamrecModelTooOld",
}


# -- tools -----------------------------------------------------------------------------------------
@functools.cache
def _apt_install(package: str) -> str:
    """Install a Debian package; '' on success, else why not."""
    if not shutil.which("apt-get"):
        return "apt-get is not available"
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if prefix and not shutil.which("sudo"):
        return "not root and no sudo"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = [*prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    for attempt in (install, [*prefix, "apt-get", "update", "-q"], install):
        done = subprocess.run(attempt, check=False, env=env, capture_output=True, text=True, timeout=900)
        if attempt is install and done.returncode == 0:
            return ""
    return f"`{' '.join(install)}` failed: {done.stderr.strip()[-500:]}"


def require_tool(binary: str, package: str) -> str:
    """Path of ``binary``; installs Debian ``package`` with apt-get once if it is missing, and skips
    the test (saying why) only if that cannot be done."""
    if not shutil.which(binary):
        why = _apt_install(package)
        if not shutil.which(binary):
            pytest.skip(
                f"{binary} (Debian package {package}) is missing and could not be installed: "
                f"{why or 'installed, but not on PATH'}"
            )
    return shutil.which(binary)


def run(cmd: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, check=False, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


# -- PromQL: which metrics and labels an expression uses ----------------------------------------------
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_SERIES = re.compile(r"\bstreamrec_[a-z0-9_]+\b")
_MATCHERS = re.compile(r"\{([^{}]*)\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")


def contract_name(series: str) -> str | None:
    """The contract metric a series name belongs to (histogram parts map to the histogram).

    >>> contract_name("streamrec_finetune_seconds_bucket"), contract_name("streamrec_nope_total")
    ('streamrec_finetune_seconds', None)
    """
    if series in CONTRACT:
        return series
    for suffix in ("_bucket", "_sum", "_count"):
        base = series.removesuffix(suffix)
        if base != series and CONTRACT.get(base, ("",))[0] == "histogram":
            return base
    return None


def series_names(expr: str) -> set[str]:
    return set(_SERIES.findall(_STRING.sub('""', expr)))


def label_names(expr: str) -> set[str]:
    """Label names an expression matches on or groups by ('$__rate_interval' etc. are ignored)."""
    bare = _STRING.sub('""', expr)
    names = {m.group(1) for block in _MATCHERS.findall(bare) for m in re.finditer(r"(\w+)\s*(?:=~|!~|!=|=)", block)}
    names |= {n.strip() for group in _GROUPING.findall(bare) for n in group.split(",") if n.strip()}
    return names


def contract_problems(expr: str) -> list[str]:
    """What in ``expr`` is not in the contract: unknown metrics, or labels none of its metrics has."""
    problems, allowed = [], set(TARGET_LABELS)
    for series in series_names(expr):
        base = contract_name(series)
        if base is None:
            problems.append(f"unknown metric {series}")
            continue
        allowed |= CONTRACT[base][1] | ({"le"} if series.endswith("_bucket") else set())
    problems += [f"label {label!r} is on none of its metrics" for label in sorted(label_names(expr) - allowed)]
    return problems


def dashboard_panels() -> list[dict]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of the dashboard."""
    return [(p["title"], t["expr"]) for p in dashboard_panels() for t in p.get("targets", [])]


def alert_rules() -> list[dict]:
    return [r for g in yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"] for r in g["rules"]]


# -- promtool -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def promtool() -> str:
    return require_tool("promtool", "prometheus")


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.compose.yml"])
def test_prometheus_configs_are_valid_and_scrape_every_streamrec_process(promtool, config):
    run([promtool, "check", "config", config], cwd=PROMETHEUS_DIR)
    parsed = yaml.safe_load((PROMETHEUS_DIR / config).read_text())
    assert {job["job_name"] for job in parsed["scrape_configs"]} == JOBS
    assert parsed["rule_files"] == ["alerts.yml"]


def test_compose_prometheus_finds_every_worker_replica_by_dns():
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.compose.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for job, name, port in [("streamrec-worker", "worker", 9108), ("streamrec-api", "api", 8000)]:
        assert jobs[job]["dns_sd_configs"][0] | {"refresh_interval": None} == {
            "names": [name],
            "type": "A",
            "port": port,
            "refresh_interval": None,
        }


def test_alert_rules_are_valid_and_pass_their_unit_tests(promtool):
    run([promtool, "check", "rules", "alerts.yml"], cwd=PROMETHEUS_DIR)
    out = run([promtool, "test", "rules", "alerts.test.yml"], cwd=PROMETHEUS_DIR)
    assert "SUCCESS" in out.stdout + out.stderr


def test_every_alert_is_labelled_annotated_and_shown_firing_and_silent_in_its_tests():
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= REQUIRED_ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
    cases = [
        case
        for test in yaml.safe_load((PROMETHEUS_DIR / "alerts.test.yml").read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    firing = {c["alertname"] for c in cases if c["exp_alerts"]}
    silent = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert {r["alert"] for r in rules} <= firing, "an alert without a test that shows it firing"
    assert {r["alert"] for r in rules} <= silent, "an alert without a test where it stays silent"


def test_every_alert_queries_only_contract_metrics_and_labels():
    problems = {r["alert"]: contract_problems(r["expr"]) for r in alert_rules()}
    assert not {a: p for a, p in problems.items() if p}
    assert all(series_names(r["expr"]) or "up{" in r["expr"] for r in alert_rules())


# -- Grafana ----------------------------------------------------------------------------------------
def test_dashboard_panels_each_query_contract_metrics_with_contract_labels():
    panels = dashboard_panels()
    titles = " | ".join(p["title"] for p in panels).lower()
    for topic in (
        "throughput",
        "latency",
        "lag",
        "dead-letter",
        "drift detections",
        "drift statistics",
        "hit rate",
        "model versions",
        "model age",
        "fine-tune loss",
        "fine-tune time",
        "fine-tune cycles",
        "api latency",
    ):
        assert topic in titles, f"no panel about {topic}"
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        assert panel["datasource"]["uid"] == "prometheus", panel["title"]
    problems = {f"{title}: {expr}": contract_problems(expr) for title, expr in dashboard_exprs()}
    assert not {e: p for e, p in problems.items() if p}
    assert all(series_names(expr) for _, expr in dashboard_exprs())


def test_dashboard_queries_are_valid_promql(promtool, tmp_path):
    """promtool parses each query as the expression of a recording rule."""
    rules = [
        {"record": f"dashboard:query_{i}:check", "expr": expr.replace("$__rate_interval", "1m")}
        for i, (_, expr) in enumerate(dashboard_exprs())
    ]
    (tmp_path / "dashboard-queries.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = run([promtool, "check", "rules", "dashboard-queries.yml"], cwd=tmp_path)
    assert f"SUCCESS: {len(rules)} rules found" in out.stdout


def test_grafana_provisioning_points_at_the_compose_prometheus_and_the_dashboard_folder():
    prov = ROOT / "ops" / "grafana" / "provisioning"
    source = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert (source["uid"], source["type"], source["url"]) == ("prometheus", "prometheus", "http://prometheus:9090")
    provider = yaml.safe_load((prov / "dashboards" / "streamrec.yml").read_text())["providers"][0]
    assert provider["options"]["path"] == "/etc/grafana/dashboards"


def test_the_contract_check_catches_a_typo():
    assert contract_problems("sum by (reasons) (rate(streamrec_dlq_total[5m]))") == [
        "label 'reasons' is on none of its metrics"
    ]
    assert contract_problems("rate(streamrec_event_total[5m])") == ["unknown metric streamrec_event_total"]
    assert contract_problems("histogram_quantile(0.9, sum by (le) (rate(streamrec_finetune_seconds_bucket[1h])))") == []


# -- docker-compose ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose(tmp_path_factory):
    """Runs docker-compose on docker-compose.yml in a clean STREAMREC_* environment (no .env file),
    where the API read key is set unless the call's ``env`` says otherwise."""
    binary = require_tool("docker-compose", "docker-compose")
    no_env_file = tmp_path_factory.mktemp("compose") / "empty.env"
    no_env_file.write_text("")

    def run_compose(*args: str, **env: str) -> subprocess.CompletedProcess:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
        full_env.update({"STREAMREC_API_READ_KEYS": "test-read-key"}, **env)
        return subprocess.run(
            [binary, "--env-file", str(no_env_file), "-f", str(COMPOSE), *args],
            cwd=ROOT,
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
            env={k: v for k, v in full_env.items() if v},
        )

    return run_compose


@pytest.fixture(scope="module")
def compose_config(compose) -> dict:
    """`docker-compose config` of docker-compose.yml: validated and resolved."""
    done = compose("config")
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_compose_refuses_to_start_an_api_without_read_keys(compose):
    done = compose("config", STREAMREC_API_READ_KEYS="")
    assert done.returncode != 0 and "set STREAMREC_API_READ_KEYS" in done.stderr


STREAMREC_SERVICES = ("topic-init", "worker", "learner", "api")


def test_compose_file_validates_with_every_service(compose_config):
    services = compose_config["services"]
    assert set(services) == {"kafka", "topic-init", "worker", "learner", "api", "prometheus", "grafana"}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["topic-init"]["command"] == ["topics", "create"]
    for name in STREAMREC_SERVICES:
        env = services[name]["environment"]
        assert env["STREAMREC_BOOTSTRAP"] == "kafka:9092" and env["STREAMREC_METRICS_HOST"] == "0.0.0.0", name
        assert services[name]["image"] == "streamrec:latest" and Path(services[name]["build"]["context"]) == ROOT
    assert services["api"]["environment"]["STREAMREC_API_HOST"] == "0.0.0.0"
    for name in ("worker", "learner", "api"):
        assert services[name]["depends_on"]["topic-init"]["condition"] == "service_completed_successfully"


def test_workers_scale_no_container_name_no_fixed_host_port(compose_config):
    worker = compose_config["services"]["worker"]
    assert "container_name" not in worker, "--scale worker=3 needs compose to name the replicas"
    assert not worker.get("ports"), "--scale worker=3: replicas cannot share a host port"
    assert "deploy" not in worker or "replicas" not in worker["deploy"]


def mounts(service: dict) -> set[tuple[str, str, bool]]:
    """(source, target, read-only) of a resolved service's volumes, from the short form
    (docker-compose 1.x) or the long form (Compose 2.x)."""
    found = set()
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            found.add((source, target, mode == ["ro"]))
        else:
            found.add((volume["source"], volume["target"], bool(volume.get("read_only"))))
    return found


def test_learner_and_workers_share_the_model_store_and_prometheus_grafana_come_from_ops(compose_config):
    services = compose_config["services"]
    assert ("model-store", "/models", False) in mounts(services["learner"])
    assert ("model-store", "/models", True) in mounts(services["worker"])
    assert "model-store" in compose_config["volumes"]
    assert (f"{ROOT}/ops/prometheus", "/etc/prometheus", True) in mounts(services["prometheus"])
    assert "--config.file=/etc/prometheus/prometheus.compose.yml" in services["prometheus"]["command"]
    assert {
        (f"{ROOT}/ops/grafana/provisioning", "/etc/grafana/provisioning", True),
        (f"{ROOT}/ops/grafana/dashboards", "/etc/grafana/dashboards", True),
    } <= mounts(services["grafana"])


def test_gpu_override_reserves_a_gpu_for_the_learner_only(compose, compose_config):
    done = compose("-f", str(COMPOSE_GPU), "config")
    assert done.returncode == 0, done.stderr
    merged = yaml.safe_load(done.stdout)["services"]
    devices = merged["learner"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert merged["learner"]["build"]["args"]["TORCH_INDEX_URL"] == "https://pypi.org/simple"
    assert "deploy" not in compose_config["services"]["learner"]  # the default stays CPU-only
    assert merged["worker"] == compose_config["services"]["worker"]


def test_dockerfile_pins_torch_to_the_project_pin_and_the_image_holds_the_packages():
    dockerfile = (ROOT / "Dockerfile").read_text()
    pin = re.search(r'"(torch==[^"]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert f'"{pin}"' in dockerfile and "FROM python:3.11-slim" in dockerfile
    assert "STREAMREC_METRICS_HOST=0.0.0.0" in dockerfile
    for package in ("model", "stream", "serving"):
        assert f"COPY {package} {package}" in dockerfile
        assert f"!{package}/" in (ROOT / ".dockerignore").read_text()
