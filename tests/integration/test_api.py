"""The HTTP API on a real broker: uvicorn on a loopback port, a view read from the real topics."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time

import httpx
import pytest
import uvicorn
from kafka import KafkaProducer
from typer.testing import CliRunner

from serving.api import ApiSettings, create_api
from serving.cli import app as cli
from serving.sdk import EventProducer
from stream.broker import free_port
from stream.config import Settings, topic_name
from stream.metrics import metric_sum
from stream.model_store import ModelStore
from tests.conftest import read_topic
from tests.integration.test_worker import KITCHEN, SHOES, publish_catalogue

pytestmark = pytest.mark.integration

READ, WRITE, BOTH = "read-key-7f3a", "write-key-91c2", "admin-key-c0de"
KEYS = ApiSettings(read_keys=f"{READ},{BOTH}", write_keys=f"{WRITE},{BOTH}")


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def start_api():
    """Start a replica (uvicorn, in a thread) on a free loopback port; returns an httpx client."""
    running: list[tuple[uvicorn.Server, threading.Thread, httpx.Client]] = []

    def start(settings: Settings, api: ApiSettings = KEYS, wait_ready: bool = True) -> httpx.Client:
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_api(settings, api), host="127.0.0.1", port=port, access_log=False, log_config=None)
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        running.append((server, thread, client))
        wait_until(lambda: server.started, "uvicorn did not start")
        if wait_ready:
            wait_until(lambda: client.get("/readyz").status_code == 200, "the API did not become ready")
        return client

    yield start
    for server, thread, client in running:
        client.close()
        server.should_exit = True
        thread.join(timeout=15)


def wait_until(condition, what: str, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def recommendations(client: httpx.Client, user: str, **params) -> dict:
    response = client.get(f"/v1/users/{user}/recommendations", params=params, headers=auth(READ))
    assert response.status_code == 200, response.text
    return response.json()


def metrics(client: httpx.Client) -> list:
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").text
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def rec_record(user: str, items: list[str], trigger: str) -> bytes:
    return json.dumps(
        {
            "user_id": user,
            "items": [{"item_id": i, "score": 1.0 / (n + 1), "reasons": ["r"]} for n, i in enumerate(items)],
            "model_version": "test",
            "trigger_event_id": trigger,
            "event_ts": 1,
            "published_ts": 2,
            "k": len(items),
        }
    ).encode()


def test_a_posted_event_reaches_the_view_through_the_worker_until_the_user_is_forgotten(
    settings, start_worker, start_api, caplog
):
    caplog.set_level(logging.INFO)
    with EventProducer(settings) as producer:
        publish_catalogue(producer)
    start_worker(items=12)
    client = start_api(settings)

    sent = client.post("/v1/events", json={"user_id": "alice", "item_id": "s1", "type": "click"}, headers=auth(WRITE))
    assert sent.status_code == 202, sent.text
    first_id = sent.json()["event_id"]
    served = wait_until(
        lambda: (r := recommendations(client, "alice"))["trigger_event_id"] == first_id and r,
        "the worker's list for alice did not reach the view",
    )
    assert served["fallback"] is False and served["model_version"].startswith("content:")
    assert len(served["items"]) == settings.k and {i["item_id"] for i in served["items"][:5]} <= set(SHOES)
    # The view holds exactly what the worker published, cut to k.
    published = [
        r
        for r in read_topic(
            settings, "recommendations", lambda v: any(x and x["trigger_event_id"] == first_id for x in v)
        )
        if r and r["user_id"] == "alice"
    ][-1]
    assert served["items"] == published["items"]
    assert recommendations(client, "alice", k=3)["items"] == published["items"][:3]

    batch = client.post(
        "/v1/events:batch",
        headers=auth(BOTH),
        json={
            "events": [
                {"event_id": "b1", "user_id": "alice", "item_id": "s2", "type": "purchase"},
                {"event_id": "b2", "user_id": "alice", "item_id": "s3", "type": "view"},
                {"event_id": "b3", "user_id": "bob", "item_id": "k1", "type": "click"},
            ]
        },
    )
    assert batch.status_code == 202 and batch.json() == {"accepted": 3, "event_ids": ["b1", "b2", "b3"]}
    alice = wait_until(
        lambda: (r := recommendations(client, "alice"))["trigger_event_id"] == "b2" and r,
        "alice's list does not reflect the batch",
    )
    bob = wait_until(
        lambda: (r := recommendations(client, "bob"))["trigger_event_id"] == "b3" and r,
        "bob's list does not reflect the batch",
    )
    assert "s2" not in [i["item_id"] for i in alice["items"]]  # she bought it
    assert bob["items"][0]["item_id"] in KITCHEN
    with EventProducer(settings) as producer:  # an item deleted since the list was made is not served
        producer.delete_item(bob["items"][0]["item_id"])
    wait_until(
        lambda: recommendations(client, "bob")["items"] == bob["items"][1:], "a deleted item stayed in bob's list"
    )

    forget = client.post("/v1/events", json={"user_id": "alice", "type": "forget_user"}, headers=auth(WRITE))
    assert forget.status_code == 202
    gone = wait_until(
        lambda: (r := recommendations(client, "alice"))["fallback"] and r,
        "the tombstone did not remove alice from the view",
    )
    assert gone["trigger_event_id"] is None
    assert metric_sum(metrics(client), "streamrec_api_view_users") == 1  # bob
    samples = metrics(client)
    assert (
        metric_sum(
            samples,
            "streamrec_api_request_duration_seconds_count",
            method="POST",
            route="/v1/events:batch",
            status="202",
        )
        == 1
    )
    assert (
        metric_sum(
            samples,
            "streamrec_api_request_duration_seconds_count",
            route="/v1/users/{user_id}/recommendations",
            status="200",
        )
        >= 6
    )
    assert "alice" not in client.get("/metrics").text
    # Neither user ids nor keys reach the API's logs (the test's HTTP client logs its own URLs).
    api_logs = [r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert api_logs and not [m for m in api_logs if "alice" in m or "bob" in m or "key-" in m]


def test_an_unknown_user_gets_a_labelled_fallback_from_the_newest_verified_snapshot(settings, start_learner, start_api):
    with EventProducer(settings) as producer:
        publish_catalogue(producer)
        client = start_api(settings)
        empty = recommendations(client, "nobody")
        assert empty == {
            "user_id": "nobody",
            "items": [],
            "fallback": True,
            "model_version": None,
            "trigger_event_id": None,
            "event_ts": None,
            "published_ts": None,
        }

        learner = start_learner()
        for item, buyers in (("k4", 5), ("s1", 3), ("k1", 1)):
            for u in range(buyers):
                producer.send(event_id=f"{item}-{u}", user_id=f"buyer{u}", item_id=item, type="purchase")
        producer.flush()
        trending = wait_until(
            lambda: len((r := recommendations(client, "nobody"))["items"]) == 3 and r,
            "no trending fallback after the learner's snapshots",
        )
        assert trending["fallback"] is True
        assert [i["item_id"] for i in trending["items"]] == ["k4", "s1", "k1"]
        assert [i["reasons"] for i in trending["items"]] == [["trending now"]] * 3
        assert recommendations(client, "nobody", k=1)["items"] == trending["items"][:1]
        learner.stop()
        store = ModelStore(settings.model_store)
        good = store.versions()[-1]
        wait_until(
            lambda: recommendations(client, "nobody")["model_version"] == f"trending:{good}",
            "the API did not load the learner's last snapshot",
        )

        producer.delete_item("k4")  # a deleted item is never served, trending or not
        producer.flush()
        wait_until(
            lambda: [i["item_id"] for i in recommendations(client, "nobody")["items"]] == ["s1", "k1"],
            "the deleted item stayed in the fallback",
        )

        # The newest announcement is a tampered copy: a replica started now refuses it and
        # falls back to the newest version whose checksums hold, as workers do.
        tampered = f"{good}-tampered"
        shutil.copytree(f"{settings.model_store}/{good}", f"{settings.model_store}/{tampered}")
        with open(f"{settings.model_store}/{tampered}/global.npz", "r+b") as f:
            f.seek(100)
            f.write(b"\x00corrupted\x00")
        announcement = {
            "version": tampered,
            "kind": "global",
            "uri": f"{settings.model_store}/{tampered}",
            "sha256": store.manifest_sha256(tampered),
            "created_ts": 0,
            "metrics": {},
        }
        producer._producer.send(
            topic_name(settings, "model-updates"), key=b"global", value=json.dumps(announcement).encode()
        )
        producer.flush()
    second = start_api(settings)
    assert second.get("/readyz").json()["trending_version"] == good
    assert recommendations(second, "nobody")["items"] == recommendations(client, "nobody")["items"]


def test_the_view_is_built_from_the_whole_topic_and_follows_tombstones(settings, start_api):
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap)
    topic = topic_name(settings, "recommendations")
    for u in range(50):
        producer.send(topic, key=f"u{u}".encode(), value=rec_record(f"u{u}", ["a", "b", "c"], f"e{u}"))
    producer.send(topic, key=b"u7", value=rec_record("u7", ["z", "y"], "newer"))  # a later list replaces
    producer.send(topic, key=b"u8", value=None)  # a tombstone removes
    producer.send(topic, key=b"u9", value=b"{not json")  # an unreadable list is skipped: u9 keeps hers
    producer.flush()

    client = start_api(settings)
    assert client.get("/readyz").json()["view_users"] == 49
    assert metric_sum(metrics(client), "streamrec_api_view_users") == 49
    assert recommendations(client, "u7")["items"] == [
        {"item_id": "z", "score": 1.0, "reasons": ["r"]},
        {"item_id": "y", "score": 0.5, "reasons": ["r"]},
    ]
    assert recommendations(client, "u7")["trigger_event_id"] == "newer"
    assert recommendations(client, "u8")["fallback"] is True
    assert recommendations(client, "u9")["trigger_event_id"] == "e9"
    assert recommendations(client, "u42", k=2)["items"][1]["item_id"] == "b"

    producer.send(topic, key=b"u42", value=None)
    producer.flush()
    producer.close()
    wait_until(lambda: recommendations(client, "u42")["fallback"], "a live tombstone did not remove u42")
    assert client.get("/readyz").json()["view_users"] == 48


def test_requests_are_authenticated_and_validated_before_anything_reaches_kafka(settings, start_api):
    client = start_api(
        settings,
        ApiSettings(read_keys=f"{READ},{BOTH}", write_keys=f"{WRITE},{BOTH}", max_batch=3, max_body_bytes=4096),
    )
    path = "/v1/users/carol/recommendations"
    click = {"event_id": "ok1", "user_id": "carol", "item_id": "s1", "type": "click"}

    missing = client.get(path)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"] == "unauthorized" and "Bearer" in missing.json()["message"]
    assert client.get(path, headers=auth("guess")).status_code == 401
    assert client.get(path, headers={"Authorization": READ}).status_code == 401  # no "Bearer" scheme
    wrong = client.get(path, headers=auth(WRITE))
    assert wrong.status_code == 403 and "read scope" in wrong.json()["message"]
    assert client.post("/v1/events", json=click, headers=auth(READ)).status_code == 403
    assert client.post("/v1/events", json=click, headers=auth("guess")).status_code == 401
    assert client.get(path, headers=auth(BOTH)).status_code == 200

    for k in (0, 201, "ten"):
        bad_k = client.get(path, params={"k": k}, headers=auth(READ))
        assert bad_k.status_code == 422 and bad_k.json()["message"].startswith("query.k: "), bad_k.text
    teleport = client.post("/v1/events", json={**click, "type": "teleport"}, headers=auth(WRITE))
    assert teleport.status_code == 422 and "body.type: Input should be 'view'" in teleport.json()["message"]
    no_item = client.post("/v1/events", json={"user_id": "carol", "type": "click"}, headers=auth(WRITE))
    assert no_item.status_code == 422 and "item_id is required for type 'click'" in no_item.json()["message"]
    not_json = client.post("/v1/events", content=b"{oops", headers={**auth(WRITE), "content-type": "application/json"})
    assert not_json.status_code == 422 and not_json.json()["error"] == "invalid_request"

    huge = client.post("/v1/events", json={**click, "type": "review", "text": "y" * 70_000}, headers=auth(WRITE))
    assert huge.status_code == 413 and "65536" in huge.json()["message"], huge.text
    big_batch = client.post(
        "/v1/events:batch", json={"events": [{**click, "text": "y" * 2000}] * 3}, headers=auth(WRITE)
    )
    assert big_batch.status_code == 413 and "4096" in big_batch.json()["message"]
    too_many = client.post("/v1/events:batch", json={"events": [click] * 4}, headers=auth(WRITE))
    assert too_many.status_code == 422 and "at most 3" in too_many.json()["message"]
    one_bad = client.post(
        "/v1/events:batch",
        headers=auth(WRITE),
        json={"events": [{**click, "event_id": "x1"}, {**click, "event_id": "x2", "ts": -5}]},
    )
    assert one_bad.status_code == 422 and one_bad.json()["detail"][0]["loc"] == ["body", "events", 1, "ts"]

    assert client.post("/v1/events", json=click, headers=auth(BOTH)).status_code == 202
    assert client.post("/v1/events", json={**click, "event_id": "last"}, headers=auth(WRITE)).status_code == 202
    produced = read_topic(settings, "events", lambda v: any(e["event_id"] == "last" for e in v))
    assert sorted(e["event_id"] for e in produced) == ["last", "ok1"]  # nothing rejected was produced

    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["ready"] is True
    samples = metrics(client)
    by_status = {
        s: metric_sum(
            samples,
            "streamrec_api_request_duration_seconds_count",
            route="/v1/users/{user_id}/recommendations",
            status=s,
        )
        for s in ("401", "403", "422")
    }
    assert by_status == {"401": 3, "403": 1, "422": 3}
    assert metric_sum(samples, "streamrec_api_request_duration_seconds_count", route="/v1/events", status="413") == 1
    openapi = client.get("/openapi.json").json()
    assert {"/v1/users/{user_id}/recommendations", "/v1/events", "/v1/events:batch", "/readyz"} <= set(openapi["paths"])
    assert openapi["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert openapi["components"]["schemas"]["EventBatch"]["properties"]["events"]["maxItems"] == 3


def test_without_a_reachable_broker_the_api_is_live_but_not_ready_and_refuses_writes(start_api):
    settings = Settings(bootstrap=f"127.0.0.1:{free_port()}", topic_prefix="nowhere.")  # nothing listens there
    client = start_api(settings, wait_ready=False)
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["broker_reachable"] is False
    write = client.post("/v1/events", json={"user_id": "u", "item_id": "i", "type": "click"}, headers=auth(WRITE))
    assert write.status_code == 503 and write.json()["error"] == "broker_unavailable"
    read = client.get("/v1/users/u/recommendations", headers=auth(READ))
    assert read.status_code == 503 and read.headers["retry-after"] == "1"


def test_configuration_keys_scopes_and_kafka_security(monkeypatch):
    monkeypatch.setenv("STREAMREC_SECURITY_PROTOCOL", "SASL_SSL")  # deployment-wide, as for every process
    monkeypatch.setenv("STREAMREC_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("STREAMREC_SASL_USERNAME", "shared-user")
    monkeypatch.setenv("STREAMREC_SASL_PASSWORD", "pa55word")
    monkeypatch.setenv("STREAMREC_API_READ_KEYS", " r1 , r2,")
    api, settings = ApiSettings(), Settings()
    state = create_api(settings, api).state.serving  # the client config every Kafka client of the API uses
    config = state.client_config
    assert config["security_protocol"] == "SASL_SSL" and config["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (config["sasl_plain_username"], config["sasl_plain_password"]) == ("shared-user", "pa55word")
    assert config["ssl_context"].verify_mode.name == "CERT_REQUIRED"
    assert "pa55word" not in repr(settings) and "r2" not in repr(api)

    monkeypatch.delenv("STREAMREC_SASL_USERNAME")
    with pytest.raises(ValueError, match="needs STREAMREC_SASL_USERNAME and STREAMREC_SASL_PASSWORD") as err:
        Settings()
    assert "pa55word" not in str(err.value)  # inputs (secrets) are hidden from the error

    monkeypatch.delenv("STREAMREC_API_READ_KEYS")
    monkeypatch.setenv("STREAMREC_SECURITY_PROTOCOL", "PLAINTEXT")
    with pytest.raises(ValueError, match="no API keys configured"):
        create_api(Settings(), ApiSettings())
    runner = CliRunner()
    refused = runner.invoke(cli, ["api"])
    assert refused.exit_code == 2 and "STREAMREC_API_READ_KEYS" in refused.output
    helped = runner.invoke(cli, ["api", "--help"], env={"COLUMNS": "200"})
    assert helped.exit_code == 0 and "write scope" in helped.output and "STREAMREC_SASL_PASSWORD" in helped.output
